"use strict";
(async () => {
  const me = await VR.start("档案管理");
  const courts = await VR.api("GET", "/courts");
  const inScope = new Set([me.court_id]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const c of courts) if (c.parent_id && inScope.has(c.parent_id) && !inScope.has(c.id)) { inScope.add(c.id); grew = true; }
  }
  VR.fillTable(document.getElementById("court-rows"), courts.filter((c) => me.role === "admin" || inScope.has(c.id)), [
    (c) => c.code, (c) => c.name, (c) => VR.LEVEL_NAMES[c.level],
  ]);
  const form = document.getElementById("audit-form");
  async function loadAudit() {
    const params = new URLSearchParams({ limit: "100" });
    for (const k of ["actor", "action"]) if (form.elements[k].value.trim()) params.set(k, form.elements[k].value.trim());
    const page = await VR.api("GET", "/audit?" + params);
    VR.fillTable(document.getElementById("audit-rows"), page.items, [
      (a) => VR.time(a.at), (a) => a.actor_name || a.actor_type, (a) => a.action,
      (a) => (a.target_type ? `${a.target_type} #${a.target_id}` : ""), (a) => a.address,
    ], "暂无审计记录");
  }
  form.addEventListener("submit", async (ev) => { ev.preventDefault(); await loadAudit(); });
  await loadAudit();
  document.body.dataset.ready = "1";
})();
