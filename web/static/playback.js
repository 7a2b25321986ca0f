// One recording's playback: the composite or any original track, the transcript beside it
// (the line being said highlighted; a click seeks; the visit's judge or an archivist may
// correct a line, kept beside the machine text), notes, the timeline, integrity check,
// certified export (archivists, admins) and sealing (admins). Opening and playing are audited.
"use strict";
(async () => {
  const SOURCES = { camera: "摄像头", microphone: "麦克风", evidence: "证据", screen: "屏幕" };
  const EXPORTERS = new Set(["archivist", "admin"]);

  const $ = (id) => document.getElementById(id);
  const visitId = location.pathname.split("/").pop();
  const base = `/api/v1/recordings/${visitId}`;
  const pageMsg = $("page-msg");
  const summaryMsg = $("summary-msg");
  const player = $("player");

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds || 0));
    const mm = String(Math.floor(s / 60) % 60).padStart(2, "0");
    const ss = String(s % 60).padStart(2, "0");
    return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
  }
  function size(bytes) {
    if (bytes >= 1 << 30) return (bytes / (1 << 30)).toFixed(2) + " GB";
    if (bytes >= 1 << 20) return (bytes / (1 << 20)).toFixed(1) + " MB";
    if (bytes >= 1 << 10) return (bytes / (1 << 10)).toFixed(0) + " KB";
    return bytes + " B";
  }
  function span(text, className) {
    const el = document.createElement("span");
    el.textContent = text;
    if (className) el.className = className;
    return el;
  }
  function fileUrl(name) { return `${base}/files/${name.split("/").map(encodeURIComponent).join("/")}`; }

  let me;
  let detail;
  try {
    me = await VR.start("录像回放");
    detail = await VR.api("GET", `/recordings/${visitId}`);
  } catch (err) {
    VR.say(pageMsg, VR.describe(err), "error");
    for (const el of document.querySelectorAll(".playback-grid, .playback-lower, #summary")) el.classList.add("hidden");
    document.body.dataset.ready = "1";
    return;
  }
  const back = document.referrer && new URL(document.referrer).pathname === "/archive" ? document.referrer : "/archive";
  $("back").href = back;

  // ---------------------------------------------------------------- header
  let item = detail.item;
  function showHeader() {
    document.title = `${item.petition_number || "录像"} · 录像回放`;
    $("title").textContent = `${item.petition_number || "录像"}　${item.petition_category || ""}`;
    $("court").textContent = item.court_name;
    $("receiving-court").textContent = item.receiving_court_name;
    $("judge").textContent = item.judge_name || "—";
    $("petitioner").textContent = detail.petitioner_name + (item.petitioner_id ? `（${item.petitioner_id}）` : "");
    $("category").textContent = item.petition_category || "—";
    $("started").textContent = VR.time(item.started_at) || "—";
    $("duration").textContent = item.duration_seconds == null ? "—" : clock(item.duration_seconds);
    $("summary-text").textContent = detail.petition_summary || "";
    showIntegrity(item.integrity, detail.integrity_detail);
    const badges = $("badges");
    badges.replaceChildren();
    if (item.state !== "ready") badges.append(span(VR.label("recording_state", item.state), "badge warn"));
    if (item.interrupted) badges.append(span("录制中断", "badge warn"));
    if (item.sealed) badges.append(span("已封存", "badge sealed"));
    if (item.legal_hold) badges.append(span("诉讼保全", "badge hold"));
    const reason = $("seal-reason");
    reason.textContent = item.sealed && detail.seal_reason ? "封存原因：" + detail.seal_reason : "";
    reason.classList.toggle("hidden", !reason.textContent);
    $("seal").textContent = item.sealed ? "解除封存" : "封存";
  }
  // a finding in Chinese alone: the reasons' English gloss is for the command line
  function chinese(text) { return (text || "").replace(/ \([\x20-\x7e]*\)/g, ""); }
  function showIntegrity(integrity, why) {
    const el = $("integrity");
    el.textContent = VR.label("integrity", integrity);
    el.className = "integrity " + integrity;
    el.title = chinese(why);
  }
  showHeader();

  $("verify").addEventListener("click", async () => {
    VR.say(summaryMsg, "正在核验……");
    try {
      const r = await VR.api("POST", `/recordings/${visitId}/verify`);
      item.integrity = r.integrity;
      showIntegrity(r.integrity, r.detail);
      if (r.integrity === "verified") VR.say(summaryMsg, `核验通过：${r.checked} 个文件与签名清单一致`, "ok");
      else VR.say(summaryMsg, "发现不一致：" + Object.entries(r.failed).map(([k, v]) => `${k}（${chinese(v)}）`).join("；"), "error");
    } catch (err) { VR.say(summaryMsg, VR.describe(err), "error"); }
  });

  if (EXPORTERS.has(me.role)) {
    for (const el of document.querySelectorAll(".exporter-only")) el.classList.remove("hidden");
    $("export").addEventListener("click", async () => {
      const button = $("export");
      button.disabled = true;
      VR.say(summaryMsg, "正在生成核验副本（核验全部文件并加水印签名）……");
      try {
        const r = await VR.api("POST", `/recordings/${visitId}/exports`, { reason: "" });
        VR.say(summaryMsg, `已生成核验副本 ${r.file}：${size(r.size)}，SHA-256 ${r.sha256}`, "ok");
        summaryMsg.dataset.sha256 = r.sha256;
        showIntegrity("verified", "");
        location.href = r.url;  // an attachment: downloads, the page stays
      } catch (err) {
        VR.say(summaryMsg, VR.describe(err), "error");
      } finally { button.disabled = false; }
    });
  }
  if (me.role === "admin") {
    $("seal").classList.remove("hidden");
    $("seal").addEventListener("click", async () => {
      const sealing = !item.sealed;
      let reason = "";
      const done = await VR.ask(sealing ? "封存录像（封存后仅系统管理员可见）" : "解除封存", [
        { name: "reason", label: sealing ? "封存原因" : "解除原因" },
      ], (values) => {
        reason = (values.reason || "").trim();
        return VR.api("POST", `/recordings/${visitId}/seal`, { sealed: sealing, reason });
      });
      if (done) {
        item = done;
        detail.seal_reason = sealing ? reason : "";
        showHeader();
        VR.say(summaryMsg, sealing ? "已封存" : "已解除封存", "ok");
      }
    });
  }

  // ---------------------------------------------------------------- the player
  const files = detail.files;
  const byName = new Map(files.map((f) => [f.name, f]));
  const offsets = new Map();  // a track file's start on the visit's clock (the composite: 0)
  if (byName.has("timeline.json")) {
    try {
      const res = await fetch(fileUrl("timeline.json"), { credentials: "same-origin" });
      if (res.ok) {
        const timeline = await res.json();
        for (const t of timeline.tracks || []) for (const f of t.files || []) if (t.offset != null) offsets.set(f, t.offset);
      }
    } catch { /* without the timeline, originals play on their own clock */ }
  }
  const playable = files.filter((f) => f.playable && f.kind !== "other");
  playable.sort((a, b) => (a.kind === "composite" ? -1 : b.kind === "composite" ? 1 : a.name.localeCompare(b.name)));
  const source = $("source");
  for (const f of playable) {
    let label;
    if (f.kind === "composite") label = "合成录像（全部画面与声音）";
    else {
      const who = VR.label("participant_role", f.role);
      const what = SOURCES[f.source] || f.source || (f.media === "audio" ? "音频" : "视频");
      label = `原始：${[who, what].filter(Boolean).join(" · ") || f.name}（${f.name.split("/").pop()}）`;
    }
    source.add(new Option(label, f.name));
  }
  if (!playable.length) {
    source.add(new Option(item.state === "deleted" ? "录像已按保存期限删除" : "暂无可播放的文件", ""));
    source.disabled = true;
  }

  const downloads = $("downloads");
  if (EXPORTERS.has(me.role)) {
    for (const f of files.filter((x) => ["composite", "original", "transcript"].includes(x.kind))) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = fileUrl(f.name) + "?download=1";
      a.textContent = "下载";
      a.className = "download";
      a.dataset.file = f.name;
      li.append(span(f.name + "　", "file"), span(size(f.size) + "　", "muted"), a);
      downloads.appendChild(li);
    }
    if (!downloads.children.length) downloads.classList.add("hidden");
  }

  let current = { name: "", offset: 0 };
  let viewed = false;  // this selection's first play written to the audit trail
  const visitTime = () => player.currentTime + current.offset;

  function select(name, keepAt, resume) {
    current = { name, offset: byName.get(name)?.kind === "composite" ? 0 : offsets.get(name) || 0 };
    viewed = false;
    player.dataset.file = name;
    if (keepAt != null) {
      player.addEventListener("loadedmetadata", () => {
        const t = keepAt - current.offset;
        player.currentTime = Math.min(Math.max(0, t), Number.isFinite(player.duration) ? player.duration : t);
        if (resume) player.play().catch(() => {});
      }, { once: true });
    }
    player.src = fileUrl(name);
    player.load();
  }
  source.addEventListener("change", () => {
    const at = visitTime();
    const resume = !player.paused;
    select(source.value, at, resume);
  });

  player.addEventListener("play", async () => {
    if (viewed || !current.name) return;
    viewed = true;
    try {
      await VR.api("POST", `/recordings/${visitId}/views`, { file: current.name, position: Math.round(player.currentTime * 10) / 10 });
    } catch (err) { VR.say(pageMsg, VR.describe(err), "error"); }
  });
  player.addEventListener("error", () => {
    if (current.name) VR.say(pageMsg, "无法播放该文件（浏览器不支持或文件缺失）", "error");
  });

  function seek(visitSeconds) {
    if (!current.name) return;
    const t = Math.max(0, visitSeconds - current.offset);
    player.currentTime = Number.isFinite(player.duration) ? Math.min(t, player.duration) : t;
    highlight();
    player.play().catch(() => {});
  }

  // ---------------------------------------------------------------- transcript
  const transcript = $("transcript");
  const reason = $("transcript-reason");
  if (detail.transcript_reason) {
    reason.textContent = "笔录不可用：" + detail.transcript_reason;
    reason.classList.remove("hidden");
  } else if (!detail.lines.length) {
    reason.textContent = item.state === "ready" ? "本次接访没有识别出的发言" : "笔录尚未生成";
    reason.classList.remove("hidden");
  }
  const lineEls = [];
  function correctionMark(line) {
    return span(`已更正（原识别：${line.machine_text}；${line.corrected_by} ${VR.time(line.corrected_at)}）`, "corrected muted");
  }
  function correctable(li, line) {
    const button = Object.assign(document.createElement("button"), {
      type: "button", className: "correct", textContent: "更正", title: "更正这一句的文字",
    });
    button.addEventListener("click", (ev) => {
      ev.stopPropagation();
      const text = li.querySelector(".text");
      const form = document.createElement("form");
      form.className = "correct-form";
      const input = Object.assign(document.createElement("textarea"), { name: "text", rows: 2, maxLength: 2000, value: line.text });
      input.setAttribute("aria-label", "更正后的文字");
      const save = Object.assign(document.createElement("button"), { type: "submit", textContent: "保存更正" });
      const cancel = Object.assign(document.createElement("button"), { type: "button", className: "secondary", textContent: "取消" });
      const msg = span("", "form-msg");
      form.append(input, save, cancel, msg);
      form.addEventListener("click", (e) => e.stopPropagation());
      form.addEventListener("keydown", (e) => e.stopPropagation());
      cancel.addEventListener("click", () => { form.remove(); text.hidden = false; button.hidden = false; });
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        save.disabled = true;
        try {
          const out = await VR.api("POST", `/recordings/${visitId}/transcript/${line.index}/corrections`, { text: input.value });
          Object.assign(line, out.line);
          text.textContent = line.text;
          li.querySelector(".corrected")?.remove();
          li.append(correctionMark(line));
          form.remove(); text.hidden = false; button.hidden = false;
        } catch (err) {
          VR.say(msg, VR.describe(err), "error");
          save.disabled = false;
        }
      });
      text.hidden = true;
      button.hidden = true;
      li.append(form);
      input.focus();
    });
    li.append(button);
  }
  for (const line of detail.lines) {
    const li = document.createElement("li");
    li.className = "line role-" + (line.role || "unknown");
    li.dataset.start = String(line.start);
    li.dataset.end = String(line.end);
    li.dataset.index = String(line.index);
    li.tabIndex = 0;
    li.title = "点击从此处播放";
    const who = (VR.label("participant_role", line.role)) + (line.name ? " " + line.name : "");
    li.append(span(clock(line.start), "at"), span(who, "speaker"), span(line.text, "text"));
    if (line.machine_text != null) li.append(correctionMark(line));
    if (detail.can_correct) correctable(li, line);
    transcript.appendChild(li);
    lineEls.push(li);
  }
  let lit = null;
  function highlight() {
    const t = visitTime();
    let found = null;
    for (const li of lineEls) {
      const start = Number(li.dataset.start);
      const end = Number(li.dataset.end);
      if (start <= t + 0.05 && t < Math.max(end, start + 1) + 0.5) found = li;
      if (start > t + 0.05) break;
    }
    if (found === lit) return;
    if (lit) lit.classList.remove("current");
    lit = found;
    if (lit) {
      lit.classList.add("current");
      // keep the line in view inside the transcript box, without scrolling the page
      const box = transcript;
      if (lit.offsetTop < box.scrollTop || lit.offsetTop + lit.offsetHeight > box.scrollTop + box.clientHeight) {
        box.scrollTop = lit.offsetTop - box.clientHeight / 3;
      }
    }
  }
  player.addEventListener("timeupdate", () => {
    highlight();
    $("clock").textContent = `${clock(visitTime())} / ${clock(item.duration_seconds ?? player.duration)}`;
  });
  player.addEventListener("seeked", highlight);

  function seekable(list) {
    const go = (ev) => {
      const li = ev.target.closest("[data-start]");
      if (li && list.contains(li)) seek(Number(li.dataset.start));
    };
    list.addEventListener("click", go);
    list.addEventListener("keydown", (ev) => { if (ev.key === "Enter") go(ev); });
  }
  seekable(transcript);

  // ---------------------------------------------------------------- notes and timeline
  const notes = $("notes");
  for (const n of detail.notes) {
    const li = document.createElement("li");
    li.className = "note";
    li.dataset.start = String(n.at);
    li.tabIndex = 0;
    li.title = "点击从此处播放";
    li.append(span(clock(n.at), "at"), span(n.author, "speaker"), span(n.text, "text"));
    notes.appendChild(li);
  }
  if (!detail.notes.length) notes.appendChild(Object.assign(document.createElement("li"), { className: "empty", textContent: "没有笔记" }));
  seekable(notes);

  const events = $("events");
  const entries = [];
  for (const e of detail.events) {
    entries.push({ at: e.at, sort: e.at ?? -1, when: e.at == null ? VR.time(e.wall) : clock(e.at), text: e.text, kind: "event " + e.kind });
  }
  for (const g of detail.gaps) {
    const who = VR.label("participant_role", g.role);
    entries.push({ at: g.start, sort: g.start, when: `${clock(g.start)}–${clock(g.end)}`, text: `中断/缺失：${who}${g.reason ? "（" + g.reason + "）" : ""}`, kind: "gap" });
  }
  entries.sort((a, b) => a.sort - b.sort);
  for (const e of entries) {
    const li = document.createElement("li");
    li.className = e.kind;
    if (e.at != null) { li.dataset.start = String(e.at); li.tabIndex = 0; li.title = "点击从此处播放"; }
    li.append(span(e.when, "at"), span(e.text, "text"));
    events.appendChild(li);
  }
  if (!entries.length) events.appendChild(Object.assign(document.createElement("li"), { className: "empty", textContent: "没有记录的事件" }));
  seekable(events);

  // ---------------------------------------------------------------- start
  if (playable.length) {
    const wanted = /^#t=(\d+(?:\.\d+)?)$/.exec(location.hash);
    select(playable[0].name, wanted ? Number(wanted[1]) : null, false);
  }
  document.body.dataset.ready = "1";
})();
