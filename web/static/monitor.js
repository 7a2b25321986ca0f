// 监看: the visits and on-site receptions in progress below the staff member's court, each
// with a button that opens its call page as an observer (receives only; everyone sees it).
"use strict";
(async () => {
  const WATCH = VR.label("participant_role", "observer"); // 监看
  await VR.start(WATCH);
  const rows = document.getElementById("live-rows");
  const msg = document.getElementById("monitor-msg");
  async function load() {
    try {
      const live = await VR.api("GET", "/monitor/visits");
      VR.fillTable(rows, live, [
        (w) => VR.time(w.visit.starts_at), (w) => w.visit.kind_name,
        (w) => `${w.visit.petition_number}（${w.visit.petition_category}）`, (w) => w.visit.petitioner_name,
        (w) => w.visit.court_name,
        (w) => w.visit.kind === "onsite" ? "现场接待窗口" : `${w.visit.receiving_court_name} / ${w.visit.judge_name || "待分配"}`,
        (w) => w.visit.room_name || "",
        (w) => {
          const a = document.createElement("a");
          a.href = w.watch_url;
          a.className = "button watch"; a.textContent = WATCH;
          return a;
        },
      ], "下级法院当前没有正在进行的接访");
      VR.say(msg, "");
    } catch (err) { VR.say(msg, VR.describe(err), "error"); }
  }
  document.getElementById("refresh").onclick = load;
  await load();
  setInterval(load, 15000);
  document.body.dataset.ready = "1";
})();
