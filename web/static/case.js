// One petition case (信访件): its facts, the timeline in order, materials with a viewer,
// contacts, assignments and follow-ups, and the forms of the actions the API offers now.
"use strict";
(async () => {
  await VR.start("信访件");
  const caseId = Number(location.pathname.split("/").pop());
  const pageMsg = document.getElementById("page-msg");
  const name = (x) => (x && typeof x === "object" ? x.name : x) || "";
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };
  const vocab = (kind) => Object.entries((window.VOCABULARY || {})[kind] || {});
  // a deadline typed as a day: that day's end, court time
  const dayEnd = (day) => `${day}T23:59:59+08:00`;
  let detail = null;

  // ------------------------------------------------------------ the action forms
  // fields: {name, label, type: text|textarea|date|datetime|number|select|file, options,
  // optional}; options: [[value, text]] or an async function giving them
  const staffOptions = async () => {
    const court = detail.case.handler_court;
    const staff = await VR.api("GET", `/cases/staff?court_id=${court.id}`);
    return staff.map((s) => [s.id, `${s.name}（${VR.label("role", s.role)}）`]);
  };
  const courtsBelow = async () => (await VR.api("GET", "/cases/courts-below")).map((c) => [c.id, c.name]);
  const eventOptions = async () => detail.events.map((e) =>
    [e.id, `${VR.minute(e.at)} ${VR.label("case_event", e.kind)}：${e.text.slice(0, 30)}`]);
  const FORMS = {
    add_contact: { title: "登记来访来信（重复访）", post: "/contacts", fields: [
      { name: "channel", label: "来源渠道", options: vocab("case_channel") },
      { name: "occurred_at", label: "来访来信时间", type: "datetime", optional: true },
      { name: "people_count", label: "人数", type: "number", value: "1" },
      { name: "summary", label: "内容摘要", type: "textarea" }] },
    upload: { title: VR.label("case_action", "upload"), fields: [
      { name: "file", label: "材料文件（PDF、JPEG、PNG，可多选）", type: "file" }] },
    triage_litigation: { title: "分流：诉讼事项（导入诉讼程序）", action: "triage", fixed: { track: "litigation" }, fields: [
      { name: "procedure", label: "导入的诉讼程序", options: vocab("case_procedure") },
      { name: "guidance", label: "释明引导内容", type: "textarea" }] },
    triage_petition: { title: "分流：信访事项（首办责任）", action: "triage", fixed: { track: "petition" }, fields: [
      { name: "mode", label: "办理方式", options: vocab("handling_mode") },
      { name: "responsible_id", label: "首办责任人", options: staffOptions, int: true }] },
    set_owner: { title: "指定或更换首办责任人", fields: [
      { name: "responsible_id", label: "首办责任人", options: staffOptions, int: true },
      { name: "reason", label: "更换理由（已有责任人时必填）", optional: true }] },
    assign: { title: "交办下级法院（限期反馈）", fields: [
      { name: "to_court_id", label: "承办法院", options: courtsBelow, int: true },
      { name: "deadline", label: "反馈期限（当日 24 时前）", type: "date", optional: true },
      { name: "instructions", label: "交办意见", type: "textarea", optional: true }] },
    progress: { title: "报告办理进展", fields: [{ name: "text", label: "进展情况", type: "textarea" }] },
    report: { title: "反馈办理结果", fields: [{ name: "result", label: "办理结果", type: "textarea" }] },
    accept: { title: "审核通过反馈", fields: [{ name: "remark", label: "审核意见", optional: true }] },
    return: { title: VR.label("case_action", "return"), fields: [
      { name: "remark", label: "退回理由", type: "textarea" },
      { name: "deadline", label: "新的反馈期限（当日 24 时前）", type: "date", optional: true }] },
    flag: { title: VR.label("case_action", "flag"), fields: [{ name: "remark", label: "督办意见", optional: true }] },
    unflag: { title: "撤销挂牌督办", fields: [{ name: "remark", label: "说明", optional: true }] },
    take_lead: { title: "院领导包案", fields: [] },
    judicial_aid: { title: VR.label("case_action", "judicial_aid"), fields: [
      { name: "stage", label: "阶段", options: vocab("judicial_aid_stage") },
      { name: "amount_yuan", label: "救助金额（元，批准时填写）", type: "number", optional: true },
      { name: "remark", label: "说明", optional: true }] },
    resolve: { title: "化解结案", fields: [
      { name: "ground", label: "化解依据", options: () => (detail ? detail.resolution_grounds : []).map((g) => [g, VR.label("resolution_ground", g)]) },
      { name: "remark", label: "化解情况说明", type: "textarea" }] },
    terminate: { title: "信访终结（高级人民法院、最高人民法院）", fields: [
      { name: "ground", label: "终结依据", options: vocab("termination_ground") },
      { name: "approval", label: "审批情况（审批人及文号）" },
      { name: "remark", label: "说明", type: "textarea", optional: true }] },
    schedule_followup: { title: VR.label("case_action", "schedule_followup"), fields: [
      { name: "due_at", label: "回访期限（当日 24 时前，默认按期限规则）", type: "date", optional: true },
      { name: "remark", label: "回访安排说明", type: "textarea", optional: true }] },
    record_followup: { title: "记录回访结果", fields: [
      { name: "result", label: "回访结果", options: vocab("followup_result") },
      { name: "remark", label: "回访情况", type: "textarea", optional: true }] },
    review: { title: VR.label("case_action", "review"), fields: [
      { name: "rating", label: "评查结论", options: vocab("review_rating") },
      { name: "findings", label: "评查意见", type: "textarea" }] },
    reopen: { title: "重新启动办理", fields: [{ name: "reason", label: "重新启动理由", type: "textarea" }] },
    correct: { title: "更正记录（原记录保留）", fields: [
      { name: "event_id", label: "要更正的记录", options: eventOptions, int: true },
      { name: "text", label: "更正内容", type: "textarea" }] },
  };
  const buttonText = (action) => VR.label("case_action", action);

  const actForm = document.getElementById("act-form");
  const actMsg = document.getElementById("act-msg");
  let current = null;

  async function openForm(action) {
    const spec = FORMS[action];
    current = action;
    document.getElementById("act-title").textContent = spec.title;
    const box = document.getElementById("act-fields");
    box.replaceChildren();
    VR.say(actMsg, "");
    for (const f of spec.fields) {
      const label = el("label", f.label);
      label.dataset.field = f.name;
      let input;
      if (f.options) {
        input = document.createElement("select");
        input.add(new Option("请选择", ""));
        const options = typeof f.options === "function" ? await f.options() : f.options;
        for (const [v, t] of options) input.add(new Option(t, v));
      } else if (f.type === "textarea") {
        input = document.createElement("textarea");
      } else {
        input = document.createElement("input");
        input.type = { datetime: "datetime-local", text: "text" }[f.type || "text"] || f.type;
        if (f.type === "file") { input.multiple = true; input.accept = "application/pdf,image/jpeg,image/png"; }
        if (f.value) input.value = f.value;
      }
      input.name = f.name;
      label.appendChild(input);
      box.appendChild(label);
    }
    actForm.classList.remove("hidden");
    for (const b of document.querySelectorAll("#action-buttons button")) b.classList.toggle("active", b.dataset.action === action);
    const first = box.querySelector("input, select, textarea");
    (first || document.getElementById("act-submit")).focus();
  }
  function closeForm() {
    current = null;
    actForm.classList.add("hidden");
    for (const b of document.querySelectorAll("#action-buttons button")) b.classList.remove("active");
  }

  function values(spec) {
    const out = { ...(spec.fixed || {}) };
    for (const f of spec.fields) {
      const input = actForm.elements[f.name];
      const raw = input.value.trim();
      if (!raw) continue;
      if (f.int || f.type === "number") out[f.name] = Number(raw);
      else if (f.type === "date") out[f.name] = dayEnd(raw);
      else if (f.type === "datetime") out[f.name] = VR.fromInput(raw);
      else out[f.name] = raw;
    }
    return out;
  }
  function missing(spec) {
    return spec.fields.filter((f) => !f.optional && f.type !== "file" && !actForm.elements[f.name].value.trim())
      .map((f) => f.label);
  }

  async function uploadFiles(input) {
    const files = [...input.files];
    if (!files.length) throw new Error("请选择要上传的文件");
    const failed = [];
    for (const file of files) {
      const data = new FormData();
      data.append("file", file, file.name);
      try { await VR.upload(`/cases/${caseId}/materials`, data); } catch (err) { failed.push(`《${file.name}》：${VR.describe(err)}`); }
    }
    if (failed.length) throw new Error("未上传：" + failed.join("；"));
  }

  actForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const spec = FORMS[current];
    const lacking = missing(spec);
    for (const label of actForm.querySelectorAll("label")) label.classList.toggle("invalid", lacking.includes(label.firstChild.textContent));
    if (lacking.length) { VR.say(actMsg, "请填写：" + lacking.join("、"), "error"); return; }
    const button = document.getElementById("act-submit");
    button.disabled = true;
    try {
      if (current === "upload") {
        // the files that were stored are listed even when another of them was refused
        try { await uploadFiles(actForm.elements.file); } finally { await load(); }
      } else if (spec.post) {
        await VR.api("POST", `/cases/${caseId}${spec.post}`, values(spec));
        await load();
      } else {
        render(await VR.api("POST", `/cases/${caseId}/actions/${spec.action || current}`, values(spec)));
      }
      const done = spec.title;
      closeForm();
      VR.say(pageMsg, `已完成：${done}`, "ok");
    } catch (err) {
      VR.say(actMsg, err instanceof Error && !err.status ? err.message : VR.describe(err), "error");
    } finally {
      button.disabled = false;
    }
  });
  document.getElementById("act-cancel").addEventListener("click", closeForm);

  // ------------------------------------------------------------ rendering
  function fact(dl, term, value) {
    const div = el("div");
    div.append(el("dt", term));
    const dd = el("dd");
    if (value instanceof Node) dd.appendChild(value); else dd.textContent = value || "—";
    div.append(dd);
    dl.appendChild(div);
  }

  function render(data) {
    detail = data;
    const c = data.case;
    document.title = `${c.number} · 信访件 · 远程视频接访`;
    document.getElementById("case-title").textContent = `信访件 ${c.number}`;
    const badges = document.getElementById("case-badges");
    badges.replaceChildren(VR.badge(VR.label("case_state", c.state), "state-" + c.state));
    if (c.flagged) badges.appendChild(VR.badge(VR.label("case_event", "flagged"), "flag"));
    if (c.leader) badges.appendChild(VR.badge(`包案领导：${c.leader.name}`, "lead"));
    if (c.overdue) badges.appendChild(VR.badge(`超期 ${c.days_overdue} 天`, "late"));
    const dl = document.getElementById("case-facts");
    dl.replaceChildren();
    fact(dl, "案件类别", VR.label("case_category", c.category));
    fact(dl, "来源渠道", VR.label("case_channel", c.channel));
    fact(dl, "状态", VR.label("case_state", c.state));
    fact(dl, "当前节点", VR.label("case_node", c.node));
    fact(dl, "办理期限", VR.caseDue(c));
    fact(dl, VR.label("case_node", "triage"), VR.label("case_track", c.track) +
      (c.procedure ? `：${VR.label("case_procedure", c.procedure)}` : "") + (c.mode ? `，${VR.label("handling_mode", c.mode)}` : ""));
    fact(dl, "登记法院", name(c.registered_court));
    fact(dl, "承办法院", name(c.handler_court));
    fact(dl, "督办法院", name(c.supervising_court));
    fact(dl, "首办责任人", name(c.responsible) || "未指定");
    fact(dl, "包案领导", name(c.leader));
    fact(dl, "人数", `${c.people_count} 人`);
    fact(dl, VR.label("case_event", "contact"), `${c.contact_count} 次`);
    fact(dl, "原审法院", c.original_court);
    fact(dl, "原案号", [].concat(c.original_numbers || []).join("、"));
    fact(dl, "登记时间", VR.minute(c.created_at));
    document.getElementById("case-summary").textContent = c.summary ? `信访诉求：${c.summary}` : "";

    const people = document.getElementById("people");
    people.replaceChildren();
    for (const p of c.petitioners || []) {
      people.appendChild(el("li", [p.name, p.id_type ? VR.label("id_type", p.id_type) : "", p.id_number, p.phone].filter(Boolean).join("　")));
    }

    // actions the API says this person may take now; nothing here deletes anything
    const buttons = document.getElementById("action-buttons");
    buttons.replaceChildren();
    for (const action of data.actions) {
      if (!FORMS[action]) continue;
      const b = VR.button(buttonText(action), () => openForm(action), !["resolve", "assign", "triage_petition", "report", "record_followup"].includes(action));
      b.dataset.action = action;
      buttons.appendChild(b);
    }
    if (data.actions.includes("meet")) {  // a court above the handling one: on /meetings
      const meet = el("a", VR.label("case_action", "meet"), "button secondary");
      meet.id = "meet-case";
      meet.href = `/meetings?case=${encodeURIComponent(c.number)}`;
      buttons.appendChild(meet);
    }
    if (data.may_book) {  // an operator of the court that registered or handles it
      const book = el("a", "预约视频接访", "button");
      book.id = "book-visit";
      book.href = `/operator?case=${encodeURIComponent(c.id)}`;
      buttons.appendChild(book);
    }
    document.getElementById("actions-card").classList.toggle("hidden", !buttons.children.length);
    if (current && !data.actions.includes(current)) closeForm();

    const ol = document.getElementById("timeline");
    ol.replaceChildren();
    for (const e of data.events) {
      const li = el("li");
      li.dataset.eventId = e.id;
      li.dataset.kind = e.kind;
      li.className = "ev-" + e.kind;
      li.append(el("span", VR.minute(e.at), "at"), el("span", VR.label("case_event", e.kind), "kind"));
      const body = el("span", null, "body");
      body.append(el("span", e.text, "text"));
      const who = [e.actor || e.actor_name, e.court_name].filter(Boolean).join("，");
      if (who) body.append(el("span", `（${who}）`, "muted who"));
      const visit = e.detail && e.detail.visit_id;
      if (visit) {
        const a = el("a", e.kind === "meeting" ? "约谈录像" : "接访录像", "rec-link");
        a.href = `/archive/visits/${visit}`;
        body.append(" ", a);
      }
      if (e.detail && e.detail.corrects) li.dataset.corrects = e.detail.corrects;
      li.append(body);
      ol.appendChild(li);
    }
    // an entry a later one corrects stays as it was, marked (the correction names it)
    for (const fix of ol.querySelectorAll("li[data-corrects]")) {
      const old = ol.querySelector(`li[data-event-id="${CSS.escape(fix.dataset.corrects)}"] .body`);
      if (old && !old.querySelector(".corrected")) old.append(el("span", "（已更正，见后续更正记录）", "muted corrected"));
    }

    VR.fillTable(document.getElementById("material-rows"), data.materials, [
      (m) => `${m.filename}（${Math.max(1, Math.round(m.size / 1024))} KB）`, (m) => VR.minute(m.created_at),
      (m) => el("code", m.sha256, "hash"), (m) => VR.button("查看", () => view(m), true),
    ], "暂无材料");
    VR.fillTable(document.getElementById("contact-rows"), data.contacts, [
      (k) => VR.minute(k.occurred_at),
      (k) => VR.label("case_channel", k.channel) + (k.repeat ? "（重复访）" : ""),
      (k) => String(k.people_count || 1),
      (k) => {
        const span = el("span", k.summary || "");
        if (k.visit_id) { const a = el("a", " 接访录像"); a.href = `/archive/visits/${k.visit_id}`; span.append(a); }
        return span;
      },
    ], "暂无");
    VR.fillTable(document.getElementById("assignment-rows"), data.assignments, [
      (a) => `${name(a.from_court) || a.from_court_name || ""} ${VR.minute(a.assigned_at)}`,
      (a) => name(a.to_court) || a.to_court_name || "", (a) => VR.minute(a.deadline),
      (a) => VR.label("assignment_state", a.state), (a) => a.result || a.instructions || "",
    ], "未交办");
    VR.fillTable(document.getElementById("followup-rows"), data.followups, [
      (f) => VR.minute(f.due_at), (f) => (f.done_at ? VR.minute(f.done_at) : "待回访"),
      (f) => (f.result ? VR.label("followup_result", f.result) : ""), (f) => f.remark || "",
    ], "暂无");
  }

  // materials: images inline, PDF in a frame, both served by the API (audited view)
  function view(m) {
    const box = document.getElementById("viewer");
    box.replaceChildren();
    const head = el("div", null, "viewer-head");
    const open = el("a", "新窗口打开");
    open.href = m.url;
    open.target = "_blank";
    open.rel = "noopener";
    head.append(el("strong", m.filename), " ", open, " ", VR.button("关闭", () => box.classList.add("hidden"), true));
    box.appendChild(head);
    if (m.content_type === "application/pdf") {
      const frame = document.createElement("iframe");
      frame.src = m.url;
      frame.title = m.filename;
      box.appendChild(frame);
    } else {
      const img = document.createElement("img");
      img.src = m.url;
      img.alt = m.filename;
      box.appendChild(img);
    }
    box.classList.remove("hidden");
  }

  async function load() {
    try {
      render(await VR.api("GET", `/cases/${caseId}`));
    } catch (err) {
      VR.say(pageMsg, VR.describe(err), "error");
      // no such case for this person: nothing but the message (no empty cards)
      if (err.status === 404 && !detail) for (const card of document.querySelectorAll("main .card")) card.classList.add("hidden");
    }
  }
  document.addEventListener("vr-notification", load);
  await load();
  document.body.dataset.ready = "1";
})();
