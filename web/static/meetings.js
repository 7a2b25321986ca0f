// Video supervision meetings (视频约谈): my meetings, scheduling one, entering its room.
"use strict";
(async () => {
  const me = await VR.start(VR.label("visit_kind", "meeting"));
  const $ = (id) => document.getElementById(id);
  const HOSTS = ["judge", "petition_officer", "leader", "admin"];
  const listMsg = $("list-msg");
  const cases = new Map(); // id → number
  const invitees = new Map(); // id → "name（court）"

  function names(list) { return list.map((p) => `${p.name}（${p.court_name}）`).join("、"); }
  function actions(m) {
    const box = document.createElement("div");
    box.className = "actions";
    if (m.can_enter) {
      const link = document.createElement("a");
      link.href = m.call_url;
      link.className = "button";
      link.textContent = m.my_role === "host" && m.state === "scheduled" ? "开始约谈" : "进入约谈";
      box.appendChild(link);
    }
    if (m.state === "ended" || m.state === "archived") {
      const rec = document.createElement("a");
      rec.href = m.recording_url;
      rec.textContent = "查看录像";
      box.appendChild(rec);
    }
    if (m.can_cancel) {
      box.appendChild(VR.button("取消", async () => {
        const done = await VR.ask("取消视频约谈", [{ name: "reason", label: "取消原因" }],
          (values) => VR.api("POST", `/meetings/${m.id}/cancel`, values));
        if (done) { VR.say(listMsg, "已取消约谈", "ok"); await load(); }
      }, true));
    }
    return box;
  }
  async function load() {
    const meetings = await VR.api("GET", "/meetings");
    VR.fillTable($("meeting-rows"), meetings, [
      (m) => `${VR.dayOf(m.starts_at)} ${VR.hm(m.starts_at)}–${VR.hm(m.ends_at)}`,
      (m) => m.cases.map((c) => c.number).join("、"),
      (m) => `${m.host_name}（${m.host_court_name}）`,
      (m) => names(m.invitees),
      (m) => VR.label("participant_role", m.my_role),
      VR.stateTag, actions,
    ], "暂无视频约谈");
    document.body.dataset.loaded = "1";
  }

  function chips(list, map) {
    list.replaceChildren();
    for (const [id, text] of map) {
      const li = document.createElement("li");
      li.dataset.id = id;
      li.textContent = text + " ";
      li.appendChild(VR.button("移除", () => { map.delete(id); chips(list, map); }, true));
      list.appendChild(li);
    }
  }

  // why a number the caller typed is not offered: a case it sees may be closed, or handled
  // by its own court (a meeting is about a court below); else it does not exist for it
  async function whyNotMeetable(number) {
    try {
      const page = await VR.api("GET", `/cases?q=${encodeURIComponent(number)}&limit=5`);
      const c = page.items.find((x) => x.number === number) || (page.items.length === 1 ? page.items[0] : null);
      if (c && ["resolved", "terminated"].includes(c.state)) {
        return `信访件 ${c.number} ${VR.label("case_state", c.state)}，不能约谈；如需继续督办，请先重新启动该信访件`;
      }
      if (c) return `信访件 ${c.number} 不由下级法院承办，不能就其约谈下级法院`;
    } catch (err) { /* the plain answer below */ }
    return `未找到信访件 ${number}`;
  }

  async function setUpScheduling() {
    $("schedule-card").classList.remove("hidden");
    const msg = $("schedule-msg");
    let found = [];
    $("case-number").addEventListener("input", async () => {
      try { found = await VR.api("GET", `/meetings/cases?number=${encodeURIComponent($("case-number").value.trim())}`); }
      catch (err) { VR.say(msg, VR.describe(err), "error"); return; }
      const choices = $("case-choices");
      choices.replaceChildren();
      for (const c of found) {
        const opt = document.createElement("option");
        opt.value = c.number; opt.textContent = `${c.number} · ${c.handler_court_name}`;
        choices.appendChild(opt);
      }
    });
    $("case-add").onclick = async () => {
      const number = $("case-number").value.trim();
      if (!number) return;
      const hits = await VR.api("GET", `/meetings/cases?number=${encodeURIComponent(number)}`);
      const hit = hits.find((c) => c.number === number) || (hits.length === 1 ? hits[0] : null);
      if (!hit) { VR.say(msg, await whyNotMeetable(number), "error"); return; }
      cases.set(hit.id, `${hit.number}（${hit.handler_court_name}）`);
      chips($("case-list"), cases);
      if ($("case-number").value.trim() === number) $("case-number").value = "";
      VR.say(msg, "");
    };
    for (const r of await VR.api("GET", `/rooms?court_id=${me.court_id}`)) {  // the host court's
      if (r.active) $("meeting-room").add(new Option(r.location ? `${r.name}（${r.location}）` : r.name, String(r.id)));
    }
    const courtSelect = $("invitee-court");
    for (const c of await VR.api("GET", "/meetings/courts")) {
      const opt = document.createElement("option");
      opt.value = c.id; opt.textContent = c.name;
      courtSelect.appendChild(opt);
    }
    courtSelect.onchange = async () => {
      const people = $("invitee-person");
      people.replaceChildren();
      if (!courtSelect.value) return;
      for (const p of await VR.api("GET", `/meetings/people?court_id=${courtSelect.value}`)) {
        const opt = document.createElement("option");
        opt.value = p.id; opt.textContent = `${p.name}（${p.role_name}）`;
        people.appendChild(opt);
      }
    };
    $("invitee-add").onclick = () => {
      const person = $("invitee-person");
      if (!person.value) return;
      const court = courtSelect.options[courtSelect.selectedIndex].textContent;
      invitees.set(Number(person.value), `${person.options[person.selectedIndex].textContent} · ${court}`);
      chips($("invitee-list"), invitees);
    };
    $("schedule-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!cases.size) { VR.say(msg, "请至少添加一件信访件", "error"); return; }
      if (!invitees.size) { VR.say(msg, "请至少添加一名参会人员", "error"); return; }
      if (!$("starts-at").value) { VR.say(msg, "请选择开始时间", "error"); $("starts-at").focus(); return; }
      try {
        const m = await VR.api("POST", "/meetings", {
          case_ids: [...cases.keys()], invitee_ids: [...invitees.keys()],
          starts_at: VR.fromInput($("starts-at").value), minutes: Number($("minutes").value),
          room_id: $("meeting-room").value ? Number($("meeting-room").value) : null,
        });
        VR.say(msg, `已安排约谈：${VR.dayOf(m.starts_at)} ${VR.hm(m.starts_at)}，已通知参会人员`, "ok");
        cases.clear(); invitees.clear(); chips($("case-list"), cases); chips($("invitee-list"), invitees);
        await load();
      } catch (err) { VR.say(msg, VR.describe(err), "error"); }
    });
  }

  await load();
  if (HOSTS.includes(me.role) && me.court_id) {
    await setUpScheduling();
    // from a case's page (安排视频约谈): that case already added
    const fromCase = new URLSearchParams(location.search).get("case");
    if (fromCase) {
      $("case-number").value = fromCase;
      await $("case-add").onclick();
    }
  }
  document.body.dataset.ready = "1";
})();
