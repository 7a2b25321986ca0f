// 信访统计: every figure of the API as a chart (Apache ECharts) with its table beside it,
// a ranking of the courts below, drill-down by clicking a court, CSV and Excel export and
// the monthly report (月度通报) of the court shown as PDF.
"use strict";
(async () => {
  await VR.start("信访统计");
  const form = document.getElementById("stats-form");
  const msg = document.getElementById("stats-msg");
  const from = document.getElementById("from");
  const to = document.getElementById("to");
  const up = document.getElementById("up");
  const holder = document.getElementById("figures");
  const charts = [];
  const trail = []; // courts drilled through, top first
  let courtId = null;

  // the scope's court's own records in a table by court (as the export names them): its
  // children's rows and this one add up to 合计
  const OWN = "本院";
  // a number as the API's text gives it: thousands separators, at most two decimals
  const number = (v) => Number(v).toLocaleString("zh-CN", { maximumFractionDigits: 2 });

  const now = new Date();
  const month = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}`;
  to.value = month(now);
  from.value = month(new Date(now.getFullYear(), now.getMonth() - 11, 1));
  const reportMonth = document.getElementById("report-month");
  reportMonth.value = month(new Date(now.getFullYear(), now.getMonth() - 1, 1));
  reportMonth.max = month(now);

  function query(extra) {
    const q = new URLSearchParams({ from: from.value, to: to.value, ...extra });
    if (courtId !== null) q.set("court_id", String(courtId));
    return q.toString();
  }

  function courtLink(id, name) {
    const a = document.createElement("a");
    a.href = "#"; a.className = "drill"; a.textContent = name; a.dataset.courtId = String(id);
    a.onclick = (e) => { e.preventDefault(); drill(id); };
    return a;
  }

  function table(head, rows) {
    const t = document.createElement("table");
    t.className = "figure-table";
    const tr = document.createElement("tr");
    for (const h of head) { const th = document.createElement("th"); th.textContent = h; tr.appendChild(th); }
    const thead = document.createElement("thead"); thead.appendChild(tr); t.appendChild(thead);
    const body = document.createElement("tbody");
    for (const row of rows) {
      const r = document.createElement("tr");
      for (const v of row) {
        const td = document.createElement("td");
        if (v instanceof Node) td.appendChild(v); else td.textContent = v ?? "";
        r.appendChild(td);
      }
      body.appendChild(r);
    }
    t.appendChild(body);
    return t;
  }

  function render(data) {
    document.getElementById("stats-title").textContent =
      `信访统计 · ${data.court.name}（${data.period.from} 至 ${data.period.to}）`;
    up.hidden = trail.length === 0;
    document.getElementById("export-csv").href = "/api/v1/stats/export?" + query({ format: "csv" });
    document.getElementById("export-xlsx").href = "/api/v1/stats/export?" + query({ format: "xlsx" });
    const head = document.getElementById("ranking-head");
    head.replaceChildren();
    for (const h of ["名次", "法院", ...data.ranking_columns.map((c) => `${c.label}（${c.unit}）`)]) {
      const th = document.createElement("th"); th.textContent = h; head.appendChild(th);
    }
    const rows = document.getElementById("ranking-rows");
    rows.replaceChildren(...table([], data.ranking.map((r) => [
      r.rank, courtLink(r.court_id, r.name),
      ...data.ranking_columns.map((c) => (r[c.key] === null ? "无数据" : number(r[c.key]))),
    ])).tBodies[0].children);
    while (charts.length) charts.pop().dispose();
    holder.replaceChildren();
    for (const f of data.figures) {
      const card = document.createElement("section");
      card.className = "card figure"; card.dataset.figure = f.key;
      const h = document.createElement("h3");
      h.textContent = `${f.label}：${f.total.text}${f.total.value === null ? "" : " " + f.unit}`;
      card.appendChild(h);
      const row = document.createElement("div"); row.className = "figure-row";
      const chartEl = document.createElement("div"); chartEl.className = "chart";
      row.appendChild(chartEl);
      // by key (channel, category, level, month) when the figure has one, else by court:
      // the court's own records first (本院), then each child court (a link to drill into)
      const byCourt = f.by_court;
      const items = f.by_key.length ? f.by_key : byCourt;
      const names = items.map((i, n) => (f.by_key.length ? i.label : n === 0 ? OWN : i.name));
      row.appendChild(table(
        [f.by_key.length ? "分类" : "法院", `${f.label}（${f.unit}）`],
        [["合计", f.total.text], ...items.map((i, n) => [
          f.by_key.length || n === 0 ? names[n] : courtLink(i.court_id, i.name), i.text])],
      ));
      card.appendChild(row);
      holder.appendChild(card);
      const chart = echarts.init(chartEl, null, { renderer: "canvas", height: 260 });
      chart.setOption({
        animation: false,
        grid: { left: 48, right: 16, top: 16, bottom: 64 },
        xAxis: { type: "category", data: names, axisLabel: { interval: 0, rotate: names.length > 4 ? 30 : 0 } },
        yAxis: { type: "value", name: f.unit },
        series: [{ type: f.breakdown === "month" ? "line" : "bar", data: items.map((i) => i.value) }],
      });
      if (!f.by_key.length) {
        chart.on("click", (p) => { if (p.dataIndex > 0) drill(byCourt[p.dataIndex].court_id); });
      }
      chartEl.dataset.ready = "1";
      charts.push(chart);
    }
  }

  async function load() {
    try {
      VR.say(msg, "正在统计……");
      render(await VR.api("GET", "/stats?" + query({})));
      VR.say(msg, "");
      document.body.dataset.ready = "1";
    } catch (err) { VR.say(msg, VR.describe(err), "error"); }
  }

  async function drill(id) {
    trail.push(courtId);
    courtId = id;
    await load();
  }

  document.getElementById("report-pdf").onclick = async () => {
    const q = new URLSearchParams({ month: reportMonth.value });
    if (courtId !== null) q.set("court_id", String(courtId));
    try {
      VR.say(msg, "正在生成月度通报……");
      await VR.download("/stats/report?" + q.toString());
      VR.say(msg, "月度通报已生成");
    } catch (err) { VR.say(msg, VR.describe(err), "error"); }
  };

  up.onclick = async () => { courtId = trail.pop() ?? null; await load(); };
  form.onsubmit = async (e) => { e.preventDefault(); await load(); };
  await load();
})();
