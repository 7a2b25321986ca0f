// The supervising court's board (督办看板): every case assigned below, by court, overdue in red.
"use strict";
(async () => {
  await VR.start("督办看板");
  const board = document.getElementById("board");
  const msg = document.getElementById("board-msg");
  // a court's block: its totals, and the rows at hand (the first cases due, or all of them)
  function fill(block, group) {
    block.querySelector(".court-name").textContent = group.court.name;
    block.querySelector(".court-count").textContent = `${group.total} 件` + (group.overdue ? `，超期 ${group.overdue} 件` : "");
    const body = block.querySelector("tbody");
    VR.fillTable(body, group.cases, [
      VR.caseLink, (c) => VR.label("case_category", c.category), VR.casePeople,
      (c) => VR.label("case_state", c.state), (c) => VR.label("case_node", c.node),
      (c) => c.due_at ? VR.minute(c.due_at) : "—", (c) => (c.overdue ? `超期 ${c.days_overdue} 天` : "未超期"),
      (c) => (c.responsible ? c.responsible.name : "未指定"),
    ]);
    group.cases.forEach((c, i) => {
      body.rows[i].dataset.caseId = c.id;
      if (c.overdue) body.rows[i].classList.add("overdue");
    });
    const more = block.querySelector(".court-all");
    const hidden = group.total - group.cases.length;
    more.textContent = group.cases.length ? `显示该院全部 ${group.total} 件（另有 ${hidden} 件）` : `显示该院 ${group.total} 件`;
    more.classList.toggle("hidden", hidden <= 0);
    more.onclick = async () => {
      more.disabled = true;
      try {
        const data = await VR.api("GET", `/cases/board?court_id=${group.court.id}`);
        const all = data.courts.find((g) => g.court.id === group.court.id);
        if (all) fill(block, all);
      } catch (err) { VR.say(msg, VR.describe(err), "error"); }
      more.disabled = false;
    };
  }
  async function load() {
    try {
      const data = await VR.api("GET", "/cases/board");
      board.replaceChildren();
      for (const group of data.courts) {
        const block = document.getElementById("court-template").content.firstElementChild.cloneNode(true);
        block.dataset.courtId = group.court.id;
        fill(block, group);
        board.appendChild(block);
      }
      document.getElementById("board-summary").textContent = `共 ${data.total} 件，超期 ${data.overdue} 件` +
        (data.courts.some((g) => g.cases.length < g.total) ? "（先列出期限最近的案件，各院可展开全部）" : "");
      if (!data.courts.length) VR.say(msg, "目前没有交办下级法院、尚未办结的信访件");
      else VR.say(msg, "");
    } catch (err) { VR.say(msg, VR.describe(err), "error"); }
  }
  document.addEventListener("vr-notification", load);
  await load();
  document.body.dataset.ready = "1";
})();
