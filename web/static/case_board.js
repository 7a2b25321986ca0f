// The supervising court's board (督办看板): every case assigned below, by court, overdue in red.
"use strict";
(async () => {
  await VR.start("督办看板");
  const board = document.getElementById("board");
  const msg = document.getElementById("board-msg");
  async function load() {
    try {
      const data = await VR.api("GET", "/cases/board");
      board.replaceChildren();
      let cases = 0;
      let late = 0;
      for (const group of data.courts) {
        const block = document.getElementById("court-template").content.firstElementChild.cloneNode(true);
        block.dataset.courtId = group.court.id;
        const overdue = group.cases.filter((c) => c.overdue).length;
        cases += group.cases.length;
        late += overdue;
        block.querySelector(".court-name").textContent = group.court.name;
        block.querySelector(".court-count").textContent = `${group.cases.length} 件` + (overdue ? `，超期 ${overdue} 件` : "");
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
        board.appendChild(block);
      }
      document.getElementById("board-summary").textContent = `共 ${cases} 件，超期 ${late} 件`;
      if (!data.courts.length) VR.say(msg, "目前没有交办下级法院、尚未办结的信访件");
      else VR.say(msg, "");
    } catch (err) { VR.say(msg, VR.describe(err), "error"); }
  }
  document.addEventListener("vr-notification", load);
  await load();
  document.body.dataset.ready = "1";
})();
