"use strict";
(async () => {
  const me = await VR.start("登记与预约");
  VR.tabs(document.getElementById("tabs"));
  let petitioners = [];
  let petitions = [];
  let rooms = [];
  let courts = [];
  const courtName = (id) => (courts.find((c) => c.id === id) || {}).name || "";
  const stateTag = VR.stateTag;


  // ------------------------------------------------------------ day view
  const dayInput = document.getElementById("day-input");
  dayInput.value = VR.today();
  async function loadDay() {
    const day = dayInput.value || VR.today();
    const visits = await VR.api("GET", `/visits?day=${day}`);
    await VR.earlierOpen(document.getElementById("earlier-card"), document.getElementById("earlier-rows"), loadDay, document.getElementById("visit-msg"));
    drawGrid(day, visits);
    VR.fillTable(document.getElementById("visit-rows"), visits, [
      (v) => `${VR.hm(v.starts_at)}–${VR.hm(v.ends_at)}`, (v) => v.room_name, (v) => v.kind_name,
      (v) => `${v.petition_number}（${v.petition_category_name}）`, (v) => v.petitioner_name,
      (v) => `${v.receiving_court_name} / ${v.judge_name || "待分配"}`, stateTag, actions,
    ], "当日暂无预约");
  }
  function drawGrid(day, visits) {
    const table = document.getElementById("day-grid");
    table.replaceChildren();
    const head = table.createTHead().insertRow();
    head.insertCell().textContent = "接访室";
    const times = [];
    for (let m = 8 * 60; m < 18 * 60; m += 30) times.push(m);
    for (const m of times) head.insertCell().textContent = `${String(m / 60 | 0).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
    const body = table.createTBody();
    for (const room of rooms) {
      const row = body.insertRow();
      row.insertCell().textContent = room.name;
      for (const m of times) {
        const cell = row.insertCell();
        const start = new Date(VR.localIso(day, `${String(m / 60 | 0).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`)).getTime();
        const end = start + 30 * 60e3;
        const v = visits.find((x) => x.room_id === room.id && !["cancelled", "no_show"].includes(x.state)
          && new Date(x.starts_at).getTime() < end && new Date(x.ends_at).getTime() > start);
        if (v) { cell.className = "busy " + v.state; cell.textContent = v.petition_number; cell.title = `${v.petitioner_name} · ${v.state_name}`; }
      }
    }
  }
  function actions(v) {
    const box = document.createElement("div");
    box.className = "actions";
    const msg = document.getElementById("visit-msg");
    const run = async (fn) => { try { await fn(); await loadDay(); } catch (err) { VR.say(msg, VR.describe(err), "error"); } };
    if (v.state === "scheduled") {
      box.appendChild(VR.button("签到", () => run(() => VR.ask("身份核验与签到", [
        { name: "document_type", label: "证件类型", options: Object.entries(VR.ID_TYPES) },
        { name: "document_number", label: "证件号码" },
      ], (vals) => VR.api("POST", `/visits/${v.id}/check-in`, vals)))));
    }
    if (["checked_in", "in_lobby", "in_progress"].includes(v.state)) {
      box.appendChild(VR.button("接访码", () => run(async () => {
        const c = await VR.api("POST", `/visits/${v.id}/code`);
        VR.say(msg, `信访人接访码（只显示一次）：${c.code}　请在接访室终端打开 ${location.origin}/join?visit=${v.id} 并输入接访码`, "ok");
      })));
      const link = document.createElement("a");
      link.href = `/call/${v.id}`;
      link.textContent = "视频接访室";
      box.appendChild(link);
    }
    const end = VR.endButton(v, loadDay, msg);
    if (end) box.appendChild(end);
    if (v.state === "checked_in") {
      box.appendChild(VR.button("进入候场", () => run(() => VR.api("POST", `/visits/${v.id}/state`, { state: "in_lobby" })), true));
    }
    if (["scheduled", "checked_in"].includes(v.state)) {
      box.appendChild(VR.button("改期", () => run(() => VR.ask("改期", [
        { name: "day", label: "日期", type: "date", value: VR.dayOf(v.starts_at) },
        { name: "time", label: "开始时间", type: "time", value: VR.hm(v.starts_at) },
        { name: "reason", label: "改期原因" },
      ], (vals) => VR.api("POST", `/visits/${v.id}/reschedule`, { starts_at: VR.localIso(vals.day, vals.time), reason: vals.reason }))), true));
      box.appendChild(VR.button("取消", () => run(() => VR.ask("取消预约", [
        { name: "reason", label: "取消原因" },
      ], (vals) => VR.api("POST", `/visits/${v.id}/cancel`, vals))), true));
    }
    return box;
  }
  document.getElementById("day-form").addEventListener("submit", async (ev) => { ev.preventDefault(); await loadDay(); });
  document.addEventListener("vr-notification", loadDay);

  // ------------------------------------------------------------ booking
  const bookForm = document.getElementById("book-form");
  const bookMsg = document.getElementById("book-msg");
  document.getElementById("book-first").value = VR.today();
  function fillSelect(id, items, label, blank) {
    const sel = document.getElementById(id);
    sel.replaceChildren();
    if (blank) sel.add(new Option(blank, ""));
    for (const it of items) sel.add(new Option(label(it), it.id));
  }
  // A visit is booked from a case, as one of three kinds: 视频接访 and 领导接访 by a court above
  // (any free judge, or leader), 判后答疑 by the named original trial judge, whose court may
  // be this one. Meetings and on-site receptions are arranged elsewhere.
  const KINDS = ["reception", "post_judgment", "leader"];
  const kindSelect = document.getElementById("book-kind");
  for (const k of KINDS) kindSelect.add(new Option(VR.label("visit_kind", k), k));
  let parents = [];
  function fillCourts() {
    const own = courts.filter((c) => c.id === me.court_id);
    fillSelect("book-court", kindSelect.value === "post_judgment" ? [...own, ...parents] : parents, (c) => c.name);
  }
  async function loadJudges() {
    const kind = kindSelect.value;
    const courtId = document.getElementById("book-court").value;
    const judges = courtId ? await VR.api("GET", `/judges?court_id=${courtId}&kind=${kind}`) : [];
    const who = kind === "leader" ? VR.label("role", "leader") : "法官";
    document.getElementById("book-judge-label").textContent =
      kind === "post_judgment" ? "原审法官（必选）" : `接访${who}（可不选）`;
    fillSelect("book-judge", judges, (j) => j.display_name, kind === "post_judgment" ? "" : `由系统分配空闲${who}`);
    document.getElementById("book-judge").required = kind === "post_judgment";
  }
  document.getElementById("book-court").addEventListener("change", loadJudges);
  kindSelect.addEventListener("change", async () => { fillCourts(); await loadJudges(); });
  // the case the visit is booked from: its number, category and state (a closed one cannot)
  function showCase() {
    const p = petitions.find((x) => String(x.id) === document.getElementById("book-petition").value);
    const out = document.getElementById("book-case");
    if (!p) { out.textContent = ""; return; }
    const closed = ["resolved", "terminated"].includes(p.state);
    out.textContent = `信访件 ${p.number} · ${VR.label("case_category", p.category)} · ${VR.label("case_state", p.state)}`
      + (closed ? "（已办结，不能预约接访）" : "");
    out.className = closed ? "msg error" : "muted";
  }
  document.getElementById("book-petition").addEventListener("change", showCase);
  // a free slot as the operator reads it: day and minutes, no seconds
  const slotTime = (s) => `${VR.dayOf(s.starts_at)} ${VR.hm(s.starts_at)}–${VR.hm(s.ends_at)}`;
  async function findSlots(vals) {
    const params = new URLSearchParams({ room_id: vals.room_id, first: vals.first, days: "14", limit: "20", petition_id: vals.petition_id, kind: vals.kind });
    if (vals.judge_id) params.set("judge_id", vals.judge_id); else params.set("receiving_court_id", vals.receiving_court_id);
    const slots = await VR.api("GET", "/free-slots?" + params);
    VR.fillTable(document.getElementById("slot-rows"), slots, [
      slotTime, (s) => s.judge_name,
      (s) => VR.button("预约", async () => {
        try {
          const body = { petition_id: vals.petition_id, receiving_court_id: vals.receiving_court_id,
            judge_id: s.judge_id, room_id: vals.room_id, starts_at: s.starts_at, ends_at: s.ends_at, kind: vals.kind };
          // confirming an online request books through it, so the petitioner sees the time
          const request = bookingRequest && bookingRequest.petition_id === vals.petition_id ? bookingRequest : null;
          const v = request
            ? await VR.api("POST", `/visit-requests/${request.id}/book`, body).then((r) => ({ ...r, petition_number: r.case_number, judge_name: s.judge_name, kind_name: VR.label("visit_kind", vals.kind) }))
            : await VR.api("POST", "/visits", body);
          if (request) { bookingRequest = null; document.getElementById("book-request").classList.add("hidden"); await loadOnline(); }
          VR.say(bookMsg, `已预约${v.kind_name}：${v.petition_number}，${slotTime(v)}，${v.judge_name}`, "ok");
          document.getElementById("slot-rows").replaceChildren();
          dayInput.value = VR.dayOf(v.starts_at);
          await loadDay();
        } catch (err) {
          if (err.status !== 409) { VR.say(bookMsg, VR.describe(err), "error"); return; }
          // the slot was taken meanwhile: show what is still free
          try {
            const left = await findSlots(vals);
            VR.say(bookMsg, `${VR.describe(err)}。空闲时段已刷新，还有 ${left.length} 个可选`, "error");
          } catch (again) { VR.say(bookMsg, VR.describe(again), "error"); }
        }
      }),
    ], "无空闲时段");
    return slots;
  }
  bookForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const slots = await findSlots(VR.formData(bookForm));
      VR.say(bookMsg, slots.length ? `找到 ${slots.length} 个空闲时段` : "两周内没有空闲时段", slots.length ? "ok" : "error");
    } catch (err) { VR.say(bookMsg, VR.describe(err), "error"); }
  });

  // ------------------------------------------------------------ walk-ins
  const walkForm = document.getElementById("walkin-form");
  walkForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = document.getElementById("walkin-msg");
    try {
      const r = await VR.api("POST", "/visits/walk-in", VR.formData(walkForm));
      if (r.visit) VR.say(msg, `已安排立即接访：${r.visit.judge_name}，${VR.hm(r.visit.starts_at)} 开始`, "ok");
      else VR.say(msg, `当前无空闲法官，已加入候补队列（第 ${r.position} 位）`, "ok");
      walkForm.reset();
      await Promise.all([loadQueue(), loadDay()]);
    } catch (err) { VR.say(msg, VR.describe(err), "error"); }
  });
  async function loadQueue() {
    const queue = await VR.api("GET", "/walk-ins");
    const number = (id) => (petitions.find((p) => p.id === id) || {}).number || id;
    VR.fillTable(document.getElementById("queue-rows"), queue, [
      (w) => VR.time(w.created_at), (w) => number(w.petition_id), (w) => courtName(w.receiving_court_id),
      (w) => VR.button("退出队列", async () => { await VR.api("POST", `/walk-ins/${w.id}/withdraw`); await loadQueue(); }, true),
    ], "队列为空");
  }

  // ------------------------------------------------------------ petitioners and petitions
  async function loadPetitioners(q) {
    const page = await VR.api("GET", "/petitioners?limit=200" + (q ? "&q=" + encodeURIComponent(q) : ""));
    if (!q) petitioners = page.items;
    VR.fillTable(document.getElementById("petitioner-rows"), page.items, [
      (p) => p.name, (p) => VR.ID_TYPES[p.id_type], (p) => p.id_number_masked, (p) => p.phone_masked,
      (p) => VR.time(p.created_at),
    ], "暂无信访人");
  }
  async function loadPetitions() {
    petitions = (await VR.api("GET", "/petitions?limit=200")).items;
    const name = (id) => (petitioners.find((p) => p.id === id) || {}).name || "";
    VR.fillTable(document.getElementById("petition-rows"), petitions, [
      (p) => p.number, (p) => VR.label("case_category", p.category), (p) => VR.label("case_state", p.state),
      (p) => name(p.petitioner_id), (p) => p.summary, (p) => VR.time(p.created_at),
      (p) => VR.button("现场接待录音录像", () => startOnsite(p)),
    ], "暂无信访事项");
    const label = (p) => `${p.number} · ${name(p.petitioner_id)} · ${VR.label("case_category", p.category)} · ${VR.label("case_state", p.state)}`;
    fillSelect("book-petition", petitions, label);
    fillSelect("walkin-petition", petitions, label);
    showCase();
  }
  // 一案一录音视频: a walk-in received at this court's window is recorded on the case; the
  // window terminal opens the call page in single-party mode (self view, end button)
  async function startOnsite(p) {
    const msg = document.getElementById("petition-msg");
    const windows = rooms.filter((r) => r.active).map((r) => [String(r.id), r.name]);
    const started = await VR.ask(`现场接待录音录像：${p.number}`, [
      { name: "room_id", label: "接访室", options: [["", "（填写接待窗口）"], ...windows], required: false },
      { name: "window", label: "接待窗口", required: false },
      { name: "people_count", label: "来访人数", type: "number", value: "1" },
    ], (vals) => VR.api("POST", "/onsite-receptions", {
      petition_id: p.id, window: vals.window || "", people_count: Number(vals.people_count || 1),
      ...(vals.room_id ? { room_id: Number(vals.room_id) } : {}),
    }));
    if (!started) return;
    VR.say(msg, `已开始现场接待录音录像：${p.number}（${started.window}）`, "ok");
    location.href = started.call_url;
  }
  const pform = document.getElementById("petitioner-form");
  pform.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = document.getElementById("petitioner-msg");
    try {
      const p = await VR.api("POST", "/petitioners", VR.formData(pform));
      VR.say(msg, `已登记：${p.name}（${p.id_number_masked}）`, "ok");
      pform.reset();
      await loadPetitioners();
    } catch (err) { VR.say(msg, VR.describe(err), "error"); }
  });
  const sform = document.getElementById("search-form");
  sform.addEventListener("submit", async (ev) => { ev.preventDefault(); await loadPetitioners(sform.elements.q.value.trim()); });

  // ------------------------------------------------------------ rooms and roster
  async function loadRooms() {
    rooms = await VR.api("GET", "/rooms");
    const hours = await Promise.all(rooms.map((r) => VR.api("GET", `/room-hours?room_id=${r.id}`)));
    VR.fillTable(document.getElementById("room-rows"), rooms, [
      (r) => r.name, (r) => r.location, (r) => (r.active ? "启用" : "停用"),
      (r) => hours[rooms.indexOf(r)].map((h) => `${VR.WEEKDAYS[h.weekday]} ${h.start}–${h.end}`).join("；") || "未设置",
    ], "本院尚无接访室");
    for (const id of ["book-room", "walkin-room", "hours-room"]) fillSelect(id, rooms.filter((r) => r.active), (r) => r.name);
  }
  const hform = document.getElementById("hours-form");
  hform.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = document.getElementById("hours-msg");
    try { await VR.api("POST", "/room-hours", VR.formData(hform)); VR.say(msg, "已添加开放时间", "ok"); await loadRooms(); }
    catch (err) { VR.say(msg, VR.describe(err), "error"); }
  });
  async function loadRoster() {
    const lawyers = await VR.api("GET", `/duty-lawyers?court_id=${me.court_id}`);
    const periods = await VR.api("GET", `/duty-periods?court_id=${me.court_id}&days=14`);
    VR.fillTable(document.getElementById("lawyer-rows"), lawyers, [
      (l) => l.name, (l) => l.firm, (l) => l.phone_masked,
      (l) => periods.filter((p) => p.lawyer_id === l.id).map((p) => `${VR.time(p.starts_at)}–${VR.hm(p.ends_at)}`).join("；") || "未安排",
    ], "尚无值班律师");
    fillSelect("duty-lawyer", lawyers, (l) => l.name);
  }
  const lform = document.getElementById("lawyer-form");
  lform.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = document.getElementById("roster-msg");
    try { await VR.api("POST", "/duty-lawyers", { ...VR.formData(lform), court_id: me.court_id }); lform.reset(); VR.say(msg, "已添加律师", "ok"); await loadRoster(); }
    catch (err) { VR.say(msg, VR.describe(err), "error"); }
  });
  const dform = document.getElementById("duty-form");
  dform.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = document.getElementById("roster-msg");
    const v = VR.formData(dform);
    try { await VR.api("POST", "/duty-periods", { lawyer_id: v.lawyer_id, starts_at: VR.fromInput(v.starts_at), ends_at: VR.fromInput(v.ends_at) }); VR.say(msg, "已安排值班", "ok"); await loadRoster(); }
    catch (err) { VR.say(msg, VR.describe(err), "error"); }
  });

  // ------------------------------------------------------------ online: visit requests and the SMS outbox
  let bookingRequest = null;
  async function loadOnline() {
    const requests = await VR.api("GET", "/visit-requests");
    document.getElementById("online-count").textContent = requests.length ? ` ${requests.length}` : "";
    VR.fillTable(document.getElementById("request-rows"), requests, [
      (r) => VR.time(r.created_at), (r) => r.case_number, (r) => r.preferred || "未注明", (r) => r.note,
      (r) => VR.button("确认", async () => {
        await loadPetitions();
        const sel = document.getElementById("book-petition");
        if (![...sel.options].some((o) => Number(o.value) === r.petition_id)) sel.add(new Option(r.case_number, r.petition_id));
        sel.value = String(r.petition_id);
        showCase();
        kindSelect.value = "reception";  // a petitioner asks for a video reception
        fillCourts();
        await loadJudges();
        bookingRequest = r;
        const note = document.getElementById("book-request");
        note.textContent = `正在为网上预约申请安排时段：${r.case_number}（希望：${r.preferred || "未注明"}）`;
        note.classList.remove("hidden");
        document.querySelector("button[data-tab=tab-book]").click();
      }),
    ], "暂无待确认的网上预约申请");
    const messages = await VR.api("GET", "/sms-outbox");
    VR.fillTable(document.getElementById("sms-rows"), messages, [
      (m) => VR.time(m.created_at), (m) => m.phone, (m) => m.text,
      (m) => VR.label("sms_state", m.state) + (m.error ? `：${m.error}` : ""),
      (m) => (m.state === "sent" ? "" : VR.button("标记已发送", async () => {
        try { await VR.api("POST", `/sms-outbox/${m.id}/sent`); await loadOnline(); }
        catch (err) { VR.say(document.getElementById("sms-msg"), VR.describe(err), "error"); }
      }, true)),
    ], "暂无短信");
  }
  document.querySelector("button[data-tab=tab-online]").addEventListener("click", () => loadOnline().catch((err) => VR.say(document.getElementById("request-msg"), VR.describe(err), "error")));
  document.addEventListener("vr-notification", () => loadOnline().catch(() => {}));

  // ------------------------------------------------------------ receiving courts: the parents of my court
  courts = await VR.api("GET", "/courts");
  let current = courts.find((c) => c.id === me.court_id);
  while (current && current.parent_id) { current = courts.find((c) => c.id === current.parent_id); if (current) parents.push(current); }
  fillCourts();
  fillSelect("walkin-court", parents, (c) => c.name);
  await loadRooms();
  // the court's calendar marks load beside the desk: a failure there says so in its card
  VR.courtDays(document.getElementById("court-days")).catch((err) => VR.say(document.getElementById("courtday-msg"), VR.describe(err), "error"));
  await loadPetitioners();
  await Promise.all([loadPetitions(), loadJudges(), loadDay(), loadQueue(), loadRoster(), loadOnline()]);
  // from a case's page (预约视频接访): that case chosen, on the booking tab
  const fromCase = new URLSearchParams(location.search).get("case");
  if (fromCase) {
    const sel = document.getElementById("book-petition");
    try {
      if (![...sel.options].some((o) => o.value === fromCase)) {  // older than the list's 200
        const p = await VR.api("GET", `/petitions/${encodeURIComponent(fromCase)}`);
        petitions.push(p);
        sel.add(new Option(`${p.number} · ${VR.label("case_category", p.category)} · ${VR.label("case_state", p.state)}`, String(p.id)));
      }
      sel.value = fromCase;
      showCase();
      document.querySelector("button[data-tab=tab-book]").click();
    } catch (err) {
      VR.say(document.getElementById("book-msg"), VR.describe(err), "error");
    }
  }
  document.body.dataset.ready = "1";
})();
