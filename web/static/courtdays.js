"use strict";
// The court's calendar marks, on the judge's and the operator's pages: 休息日 (no reception),
// 领导接访日, and 调休上班日 (a Saturday or Sunday worked with a weekday's hours). Removing or
// adding a mark that strands booked visits says how many; their judges and bookers are told.
VR.courtDays = async (section) => {
  const me = VR.me;
  const el = (tag, props, ...children) => {
    const node = Object.assign(document.createElement(tag), props || {});
    node.append(...children);
    return node;
  };
  const kind = el("select", { name: "kind", id: "courtday-kind" });
  VR.vocabOptions(kind, "court_day_kind");
  const weekday = el("select", { name: "as_weekday", id: "courtday-as-weekday" });
  weekday.dataset.type = "int";
  for (let d = 0; d < 5; d++) weekday.add(new Option(VR.WEEKDAYS[d], String(d)));
  const weekdayLabel = el("label", { className: "hidden", id: "courtday-weekday" }, "按星期几安排", weekday);
  kind.addEventListener("change", () => weekdayLabel.classList.toggle("hidden", kind.value !== "workday"));
  const form = el(
    "form",
    { className: "grid", id: "courtday-form" },
    el("label", {}, "日期", el("input", { type: "date", name: "day", required: true })),
    el("label", {}, "类型", kind),
    weekdayLabel,
    el("label", {}, "说明", el("input", { name: "note", maxLength: 128 })),
    el("button", { type: "submit" }, "标记"),
  );
  const msg = el("div", { className: "msg", id: "courtday-msg", role: "status" });
  const rows = el("tbody", { id: "courtday-rows" });
  const head = el("tr", {}, ...["日期", "类型", "说明", "操作"].map((t) => el("th", {}, t)));
  section.replaceChildren(
    el("h2", {}, "本院休息日、领导接访日与调休上班日"),
    el("p", { className: "muted" },
      "休息日本院法官和接访室均不安排接访；调休上班日（周六或周日）按所选工作日的接访时间和接访室开放时间安排。"),
    form,
    msg,
    el("div", { className: "table-wrap" }, el("table", {}, el("thead", {}, head), rows)),
  );
  // a calendar day's weekday (0 = Monday), whatever the browser's zone
  const weekdayOf = (day) => (new Date(day + "T12:00:00Z").getUTCDay() + 6) % 7;
  async function load() {
    const days = await VR.api("GET", `/court-days?court_id=${me.court_id}`);
    VR.fillTable(rows, days, [
      (d) => `${d.day}（${VR.WEEKDAYS[weekdayOf(d.day)]}）`,
      (d) => VR.label("court_day_kind", d.kind) + (d.as_weekday === null ? "" : `（按${VR.WEEKDAYS[d.as_weekday]}安排）`),
      (d) => d.note,
      (d) => VR.button("删除", async () => {
        try { VR.say(msg, VR.savedTelling(await VR.api("DELETE", `/court-days/${d.id}`), "已删除"), "ok"); await load(); }
        catch (err) { VR.say(msg, VR.describe(err), "error"); }
      }, true),
    ], "无");
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = VR.formData(form);
    const body = { day: v.day, kind: v.kind, note: v.note || "", court_id: me.court_id };
    if (v.kind === "workday") body.as_weekday = v.as_weekday;
    try { VR.say(msg, VR.savedTelling(await VR.api("POST", "/court-days", body)), "ok"); await load(); }
    catch (err) { VR.say(msg, VR.describe(err), "error"); }
  });
  await load();
};
