// The archive page: search the recordings (every staff role, within what each may see);
// archivists and admins also see their courts and the audit trail.
"use strict";
(async () => {
  const PAGE_SIZE = 20;
  // clicking a column header sorts by it; a second click reverses the order
  const HEADER_SORTS = { started_at: ["-started_at", "started_at"], number: ["number", "-number"], duration: ["-duration", "duration"], court: ["court", "court"] };

  const me = await VR.start("档案管理");
  const courts = await VR.api("GET", "/courts");
  const staff = me.role === "archivist" || me.role === "admin";

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds || 0));
    const mm = String(Math.floor(s / 60) % 60).padStart(2, "0");
    const ss = String(s % 60).padStart(2, "0");
    return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
  }
  function span(text, className) {
    const el = document.createElement("span");
    el.textContent = text;
    if (className) el.className = className;
    return el;
  }

  // ---------------------------------------------------------------- search
  const form = document.getElementById("search-form");
  const msg = document.getElementById("search-msg");
  const select = document.getElementById("court-select");
  const byParent = new Map();
  for (const c of courts) {
    const list = byParent.get(c.parent_id ?? null) || [];
    list.push(c);
    byParent.set(c.parent_id ?? null, list);
  }
  const known = new Set(courts.map((c) => c.id));
  (function addCourts(parent, depth) {
    for (const c of byParent.get(parent) || []) {
      select.add(new Option("　".repeat(depth) + c.name, String(c.id)));
      addCourts(c.id, depth + 1);
    }
  })(null, 0);
  for (const c of courts) {  // courts whose parent is not listed
    if (c.parent_id && !known.has(c.parent_id) && !select.querySelector(`option[value="${c.id}"]`)) select.add(new Option(c.name, String(c.id)));
  }

  let offset = 0;
  let total = 0;
  let more = false; // more results than the server counts (it counts up to 1000)
  const FIELDS = ["number", "petitioner", "id_tail", "court_id", "judge", "since", "until", "state", "q", "sort"];

  function criteria() {
    const params = new URLSearchParams();
    for (const name of FIELDS) {
      const value = form.elements[name].value.trim();
      if (value !== "" && !(name === "sort" && value === "-started_at")) params.set(name, value);
    }
    if (params.has("court_id") && !form.elements.include_below.checked) params.set("include_below", "false");
    return params;
  }

  function fromLocation() {
    const params = new URLSearchParams(location.search);
    for (const name of FIELDS) if (params.has(name)) form.elements[name].value = params.get(name);
    form.elements.include_below.checked = params.get("include_below") !== "false";
    offset = Math.max(0, Number(params.get("offset")) || 0);
  }

  function hitsOf(item, query) {
    if (!query) return "";
    const box = document.createElement("div");
    box.className = "hits";
    for (const h of item.hits) {
      const line = document.createElement("a");
      line.className = "hit";
      line.href = `/archive/visits/${item.visit_id}#t=${h.start.toFixed(1)}`;
      line.append(span(clock(h.start), "at"), span(h.kind === "note" ? "笔记" : VR.label("participant_role", h.role), "speaker role-" + (h.kind === "note" ? "note" : h.role)), span(h.text));
      box.appendChild(line);
    }
    if (!item.hits.length) box.textContent = "—";
    return box;
  }

  function badges(item) {
    const box = document.createElement("span");
    box.append(span(VR.label("recording_state", item.state), "rec-tag " + item.state));
    if (item.state === "processing") box.append(span(` ${item.progress}%`));
    if (item.interrupted) box.append(span("中断", "badge warn"));
    if (item.sealed) box.append(span("已封存", "badge sealed"));
    if (item.legal_hold) box.append(span("诉讼保全", "badge hold"));
    return box;
  }

  async function search() {
    const params = criteria();
    const query = params.get("q") || "";
    params.set("limit", String(PAGE_SIZE));
    params.set("offset", String(offset));
    const shown = new URLSearchParams(params);
    shown.delete("limit");
    if (offset === 0) shown.delete("offset");
    history.replaceState(null, "", location.pathname + (shown.toString() ? "?" + shown : ""));
    document.body.dataset.searching = "1";
    try {
      const page = await VR.api("GET", "/recordings?" + params);
      total = page.total;
      more = page.more;
      document.querySelector("#results .hits-col").classList.toggle("hidden", !query);
      const columns = [
        (r) => VR.time(r.started_at),
        (r) => {
          const a = document.createElement("a");
          a.href = `/archive/visits/${r.visit_id}`;
          a.className = "result-link";
          a.dataset.visitId = r.visit_id;
          a.textContent = r.petition_number || r.visit_id.slice(0, 8);
          return a;
        },
        (r) => (r.court_name === r.receiving_court_name ? r.court_name : `${r.court_name} / ${r.receiving_court_name}`),
        (r) => (r.petitioner_id ? `${r.petitioner}（${r.petitioner_id}）` : r.petitioner),
        (r) => r.judge_name || "—",
        (r) => (r.duration_seconds == null ? "—" : clock(r.duration_seconds)),
        badges,
        (r) => span(VR.label("integrity", r.integrity), "integrity " + r.integrity),
      ];
      if (query) columns.push((r) => hitsOf(r, query));
      const tbody = document.getElementById("result-rows");
      VR.fillTable(tbody, page.items, columns, "没有符合条件的录像");
      tbody.querySelectorAll("tr").forEach((tr, i) => { if (page.items[i]) tr.dataset.visitId = page.items[i].visit_id; });
      const last = Math.min(offset + page.items.length, total);
      const count = more ? `超过 ${total} 条（请缩小检索范围）` : `共 ${total} 条`;
      document.getElementById("page-info").textContent = total ? `${count}，第 ${offset + 1}–${last} 条` : "共 0 条";
      document.getElementById("prev").disabled = offset === 0;
      document.getElementById("next").disabled = more ? page.items.length < PAGE_SIZE : offset + PAGE_SIZE >= total;
      VR.say(msg, "");
      markSort();
    } catch (err) {
      VR.say(msg, VR.describe(err), "error");
    } finally {
      document.body.dataset.searching = "0";
    }
  }

  function markSort() {
    const sort = form.elements.sort.value;
    for (const th of document.querySelectorAll("#results th[data-sort]")) {
      const [first, second] = HEADER_SORTS[th.dataset.sort];
      th.classList.toggle("sorted", sort === first || sort === second);
      th.dataset.dir = sort === first || sort === second ? (sort.startsWith("-") ? "desc" : "asc") : "";
    }
  }

  for (const th of document.querySelectorAll("#results th[data-sort]")) {
    th.tabIndex = 0;
    th.title = "点击排序";
    const sortBy = async () => {
      const [first, second] = HEADER_SORTS[th.dataset.sort];
      form.elements.sort.value = form.elements.sort.value === first ? second : first;
      offset = 0;
      await search();
    };
    th.addEventListener("click", sortBy);
    th.addEventListener("keydown", (ev) => { if (ev.key === "Enter") sortBy(); });
  }
  form.addEventListener("submit", async (ev) => { ev.preventDefault(); offset = 0; await search(); });
  form.addEventListener("reset", () => setTimeout(async () => { offset = 0; await search(); }));
  document.getElementById("prev").addEventListener("click", async () => { offset = Math.max(0, offset - PAGE_SIZE); await search(); });
  document.getElementById("next").addEventListener("click", async () => { if (more || offset + PAGE_SIZE < total) { offset += PAGE_SIZE; await search(); } });

  // ---------------------------------------------------------------- courts and audit
  async function staffSections() {
    for (const el of document.querySelectorAll(".archivist-only")) el.classList.remove("hidden");
    const inScope = new Set([me.court_id]);
    let grew = true;
    while (grew) {
      grew = false;
      for (const c of courts) if (c.parent_id && inScope.has(c.parent_id) && !inScope.has(c.id)) { inScope.add(c.id); grew = true; }
    }
    VR.fillTable(document.getElementById("court-rows"), courts.filter((c) => me.role === "admin" || inScope.has(c.id)), [
      (c) => c.code, (c) => c.name, (c) => VR.LEVEL_NAMES[c.level],
    ]);
    const auditForm = document.getElementById("audit-form");
    const auditMsg = document.getElementById("audit-msg");
    const actionSelect = document.getElementById("audit-action");
    for (const a of await VR.api("GET", "/audit/actions")) actionSelect.add(new Option(a.label, a.action));
    async function loadAudit() {
      const params = new URLSearchParams({ limit: "100" });
      for (const k of ["actor", "action", "target_id"]) if (auditForm.elements[k].value.trim()) params.set(k, auditForm.elements[k].value.trim());
      const since = auditForm.elements.since.value;
      const until = auditForm.elements.until.value;
      if (since) params.set("since", VR.localIso(since, "00:00"));
      if (until) params.set("until", VR.localIso(VR.addDays(until, 1), "00:00"));
      try {
        const page = await VR.api("GET", "/audit?" + params);
        VR.fillTable(document.getElementById("audit-rows"), page.items, [
          (a) => VR.time(a.at), (a) => a.sentence,
          (a) => {
            if (a.target_type === "visit" && a.target_id) {
              const link = document.createElement("a");
              link.href = `/archive/visits/${a.target_id}`;
              link.textContent = `录像 ${a.target_id.slice(0, 8)}…`;
              link.title = a.target_id;
              return link;
            }
            return a.target_label;
          },
          (a) => a.address,
        ], "暂无审计记录");
        VR.say(auditMsg, page.total > page.items.length ? `共 ${page.total} 条，显示最近 ${page.items.length} 条` : `共 ${page.total} 条`);
      } catch (err) {
        VR.say(auditMsg, VR.describe(err), "error");
      }
    }
    auditForm.addEventListener("submit", async (ev) => { ev.preventDefault(); await loadAudit(); });
    await loadAudit();
  }

  fromLocation();
  await search();
  if (staff) await staffSections();
  document.body.dataset.ready = "1";
})();
