"use strict";
// 网上咨询与投诉: petitioners' questions to answer (deadline, overdue in red) and the
// complaints routed to this court. Texts from petitioners are shown with textContent.
(() => {
  const { api, say, time, label } = VR;
  const $ = (id) => document.getElementById(id);
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function replyForm(path, placeholder, buttonText, msg) {
    const form = el("form", "", "inbox-reply");
    const text = el("textarea");
    text.required = true;
    text.maxLength = 2000;
    text.placeholder = placeholder;
    const send = el("button", buttonText);
    send.type = "submit";
    form.append(text, send);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await api("POST", path, { text: text.value });
        say(msg, "已提交，已短信通知信访人", "ok");
        await load();
      } catch (err) { say(msg, VR.describe(err), "error"); }
    });
    return form;
  }
  function threadNode(t) {
    const box = el("article", "", "inbox-item" + (t.overdue ? " overdue" : ""));
    box.dataset.thread = String(t.id);
    const head = el("h3", t.subject);
    const facts = [label("portal_thread_state", t.state)];
    if (t.due_at) facts.push(`答复期限 ${time(t.due_at)}`);
    if (t.overdue) facts.push("已超期");
    if (t.case_id) facts.push(`信访件 #${t.case_id}`);
    box.append(head, el("p", facts.join("　"), t.overdue ? "due overdue" : "due"));
    for (const m of t.messages) {
      const who = m.from_staff ? `答复（${m.staff_name}）` : label("participant_role", "petitioner");
      const p = el("div", m.text, "bubble" + (m.from_staff ? " staff" : ""));
      p.prepend(el("span", `${who}　${time(m.created_at)}　`, "muted"));
      box.appendChild(p);
    }
    if (t.state === "waiting") box.appendChild(replyForm(`/inbox/threads/${t.id}/answer`, "答复内容", "答复", $("threads-msg")));
    return box;
  }
  function complaintNode(c) {
    const box = el("article", "", "inbox-item");
    box.dataset.complaint = String(c.id);
    box.append(
      el("h3", `${label("complaint_kind", c.kind)}：${c.court_name}`),
      el("p", `${label("complaint_state", c.state)}　${time(c.created_at)}` + (c.case_id ? `　信访件 #${c.case_id}` : ""), "due"),
      el("div", c.text, "bubble"),
    );
    if (c.reply) box.appendChild(el("div", "处理意见：" + c.reply, "bubble staff"));
    else box.appendChild(replyForm(`/inbox/complaints/${c.id}/handled`, "处理意见", "提交处理意见", $("complaints-msg")));
    return box;
  }
  async function load() {
    const data = await api("GET", "/inbox");
    $("thread-list").replaceChildren(...data.threads.map(threadNode));
    if (!data.threads.length) $("thread-list").appendChild(el("p", "暂无网上咨询", "muted"));
    $("complaint-list").replaceChildren(...data.complaints.map(complaintNode));
    if (!data.complaints.length) $("complaint-list").appendChild(el("p", "暂无投诉建议", "muted"));
    VR.fillTable($("mediation-rows"), data.mediations, [
      (m) => time(m.created_at), (m) => m.case_number, (m) => m.mediator + (m.firm ? `（${m.firm}）` : ""),
      (m) => m.mediator_phone, (m) => m.note,
    ], "暂无第三方化解申请");
  }
  VR.start("网上咨询与投诉")
    .then(load)
    .then(() => { document.body.dataset.ready = "1"; })
    .catch((err) => say($("threads-msg"), VR.describe(err), "error"));
  document.addEventListener("vr-notification", () => load().catch(() => {}));
})();
