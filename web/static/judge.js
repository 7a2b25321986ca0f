"use strict";
(async () => {
  await VR.start("接访工作台");
  const page = await VR.api("GET", "/petitions?limit=200");
  VR.fillTable(document.getElementById("petition-rows"), page.items, [
    (p) => p.number, (p) => p.category, (p) => p.summary, (p) => p.judgment_ref, (p) => VR.time(p.created_at),
  ], "暂无预约到本院的接访");
  document.body.dataset.ready = "1";
})();
