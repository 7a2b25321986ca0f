"use strict";
(async () => {
  const me = await VR.start("接访工作台");
  VR.tabs(document.getElementById("tabs"));
  const stateTag = VR.stateTag;

  const msg = document.getElementById("today-msg");
  function actions(v) {
    const box = document.createElement("div");
    box.className = "actions";
    if (["scheduled", "checked_in", "in_lobby", "in_progress"].includes(v.state)) {
      const link = document.createElement("a");
      link.href = `/call/${v.id}`;
      link.className = "button";
      link.textContent = v.state === "in_lobby" ? "进入接访室（信访人候场中）" : "进入接访室";
      box.appendChild(link);
    }
    // admission happens in the room (进入接访室): that is where the recording starts
    const end = VR.endButton(v, loadToday, msg);
    if (end) box.appendChild(end);
    return box;
  }
  async function loadToday() {
    await VR.earlierOpen(document.getElementById("earlier-card"), document.getElementById("earlier-rows"), loadToday, msg);
    const visits = await VR.api("GET", `/visits?day=${VR.today()}`);
    const rows = document.getElementById("today-rows");
    VR.fillTable(rows, visits, [
      (v) => `${VR.hm(v.starts_at)}–${VR.hm(v.ends_at)}`, (v) => v.kind_name, (v) => `${v.petition_number}（${v.petition_category_name}）`,
      (v) => v.petitioner_name, (v) => `${v.court_name} · ${v.room_name}`, (v) => v.judge_name, stateTag, actions,
    ], "今日暂无接访");
    visits.forEach((v, i) => { if (v.state === "in_lobby") rows.rows[i].classList.add("waiting"); });
  }
  async function loadWeek() {
    const visits = await VR.api("GET", `/visits?day=${VR.today()}&days=7`);
    VR.fillTable(document.getElementById("week-rows"), visits, [
      (v) => VR.dayOf(v.starts_at), (v) => `${VR.hm(v.starts_at)}–${VR.hm(v.ends_at)}`, (v) => v.kind_name, (v) => v.petition_number,
      (v) => v.petitioner_name, (v) => v.court_name, (v) => v.judge_name, stateTag,
    ], "本周暂无接访");
  }
  async function loadHours() {
    const templates = await VR.api("GET", `/reception-hours?judge_id=${me.id}`);
    VR.fillTable(document.getElementById("template-rows"), templates, [
      (t) => VR.WEEKDAYS[t.weekday], (t) => `${t.start}–${t.end}`, (t) => `${t.slot_minutes} 分钟`,
      (t) => VR.button("删除", async () => { await VR.api("DELETE", `/reception-hours/${t.id}`); await loadHours(); }, true),
    ], "尚未设置每周接访时间");
    const exceptions = await VR.api("GET", `/availability-exceptions?judge_id=${me.id}`);
    VR.fillTable(document.getElementById("exception-rows"), exceptions, [
      (e) => (e.kind === "addition" ? "增加" : "取消"), (e) => `${VR.time(e.starts_at)}–${VR.time(e.ends_at)}`, (e) => e.note,
      (e) => VR.button("删除", async () => { await VR.api("DELETE", `/availability-exceptions/${e.id}`); await loadHours(); }, true),
    ], "无");
    const feeds = await VR.api("GET", "/calendar-feeds");
    VR.fillTable(document.getElementById("feed-rows"), feeds, [
      (f) => VR.time(f.created_at),
      (f) => VR.button("撤销", async () => { await VR.api("DELETE", `/calendar-feeds/${f.id}`); await loadHours(); }, true),
    ], "无");
  }
  const saved = (answer) => VR.savedTelling(answer);
  function submit(formId, msgId, send) {
    const form = document.getElementById(formId);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = document.getElementById(msgId);
      try { const answer = await send(VR.formData(form)); VR.say(out, saved(answer), "ok"); await loadHours(); }
      catch (err) { VR.say(out, VR.describe(err), "error"); }
    });
  }
  submit("template-form", "template-msg", (v) => VR.api("POST", "/reception-hours", { ...v, judge_id: me.id }));
  submit("exception-form", "exception-msg", (v) => VR.api("POST", "/availability-exceptions", {
    judge_id: me.id, kind: v.kind, starts_at: VR.fromInput(v.starts_at), ends_at: VR.fromInput(v.ends_at), note: v.note || "" }));
  VR.courtDays(document.getElementById("court-days")).catch((err) => VR.say(document.getElementById("courtday-msg"), VR.describe(err), "error"));
  document.getElementById("feed-create").addEventListener("click", async () => {
    const out = document.getElementById("feed-msg");
    try { const f = await VR.api("POST", "/calendar-feeds", { kind: "judge", owner_id: me.id }); VR.say(out, "订阅地址：" + f.url, "ok"); await loadHours(); }
    catch (err) { VR.say(out, VR.describe(err), "error"); }
  });
  const page = await VR.api("GET", "/petitions?limit=200");
  VR.fillTable(document.getElementById("petition-rows"), page.items, [
    (p) => p.number, (p) => VR.label("case_category", p.category), (p) => VR.label("case_state", p.state),
    (p) => p.summary, (p) => p.judgment_ref, (p) => VR.time(p.created_at),
  ], "暂无预约到本院的接访");
  document.addEventListener("vr-notification", () => { loadToday(); loadWeek(); });
  await Promise.all([loadToday(), loadWeek(), loadHours()]);
  document.body.dataset.ready = "1";
})();
