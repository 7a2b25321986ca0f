// The court's petition cases (信访件): filters, paging, overdue rows in red.
"use strict";
(async () => {
  const me = await VR.start("信访件");
  const PAGE_SIZE = 20;
  const form = document.getElementById("filter-form");
  const msg = document.getElementById("list-msg");
  for (const sel of form.querySelectorAll("select[data-vocab]")) VR.vocabOptions(sel, sel.dataset.vocab);
  if (me.role !== "archivist") document.getElementById("new-case").classList.remove("hidden");
  if (me.role === "leader") document.getElementById("mine-box").classList.remove("hidden");
  if (me.court_id) {
    try {
      const staff = await VR.api("GET", `/cases/staff?court_id=${me.court_id}`);
      const owners = document.getElementById("owner-select");
      for (const s of staff) owners.add(new Option(s.name, s.id));
    } catch (err) { VR.say(msg, VR.describe(err), "error"); }
  }
  // the filters live in the address, so a filtered list can be reloaded and shared
  const params = new URLSearchParams(location.search);
  let offset = Math.max(0, Number(params.get("offset")) || 0);
  const ignored = [];  // a filter in the address that is none of the choices (a stale link)
  for (const el of form.elements) {
    if (!el.name || !params.has(el.name)) continue;
    if (el.type === "checkbox") el.checked = params.get(el.name) === "1"; else el.value = params.get(el.name);
    if (el.tagName === "SELECT" && params.get(el.name) && el.value !== params.get(el.name)) {
      ignored.push(`${el.closest("label") ? el.closest("label").firstChild.textContent.trim() : el.name}「${params.get(el.name)}」`);
    }
  }
  let total = 0;

  function query() {
    const q = new URLSearchParams();
    for (const el of form.elements) {
      if (!el.name) continue;
      if (el.type === "checkbox") { if (el.checked) q.set(el.name, "1"); } else if (el.value.trim()) q.set(el.name, el.value.trim());
    }
    return q;
  }

  async function load() {
    const q = query();
    const shown = new URLSearchParams(q);
    if (offset) shown.set("offset", String(offset));
    history.replaceState(null, "", location.pathname + (shown.toString() ? "?" + shown : ""));
    q.set("limit", String(PAGE_SIZE));
    q.set("offset", String(offset));
    try {
      const page = await VR.api("GET", "/cases?" + q);
      total = page.total;
      const body = document.getElementById("case-rows");
      VR.fillTable(body, page.items, [
        VR.caseLink, (c) => VR.label("case_category", c.category), (c) => VR.label("case_channel", c.channel),
        VR.casePeople, (c) => [].concat(c.original_numbers || []).join("、"),
        (c) => `${VR.label("case_state", c.state)} / ${VR.label("case_node", c.node)}`,
        VR.caseDue, (c) => c.handler_court ? c.handler_court.name : "",
        (c) => c.responsible ? c.responsible.name : "未指定", (c) => String(c.contact_count),
        (c) => VR.minute(c.created_at),
      ], "没有符合条件的信访件");
      page.items.forEach((c, i) => {
        const tr = body.rows[i];
        tr.dataset.caseId = c.id;
        if (c.overdue) tr.classList.add("overdue");
      });
      const last = offset + page.items.length;
      document.getElementById("page-info").textContent = total ? `共 ${total} 件，第 ${offset + 1}–${last} 件` : "共 0 件";
      document.getElementById("prev").disabled = offset === 0;
      document.getElementById("next").disabled = last >= total;
      VR.say(msg, "");
    } catch (err) { VR.say(msg, VR.describe(err), "error"); }
  }

  form.addEventListener("submit", async (ev) => { ev.preventDefault(); offset = 0; await load(); });
  form.addEventListener("reset", () => setTimeout(async () => { offset = 0; await load(); }));
  document.getElementById("prev").addEventListener("click", async () => { offset = Math.max(0, offset - PAGE_SIZE); await load(); });
  document.getElementById("next").addEventListener("click", async () => { if (offset + PAGE_SIZE < total) { offset += PAGE_SIZE; await load(); } });
  document.addEventListener("vr-notification", load);
  await load();
  if (ignored.length) VR.say(msg, `链接中的筛选条件无效，已忽略：${ignored.join("、")}`, "error");
  document.body.dataset.ready = "1";
})();
