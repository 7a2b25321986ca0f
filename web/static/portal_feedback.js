"use strict";
// The petitioner's questions, ratings, mediation requests and complaints (/p/feedback).
// Every text from the server is put in with textContent (never HTML).
(() => {
  const $ = (id) => document.getElementById(id);
  const WORDS = window.VOCABULARY || {};
  const word = (kind, value) => ((WORDS[kind] || {})[value]) || value || "";
  const ZONE = "Asia/Shanghai";
  let csrf = "";
  let cases = [];

  const fmt = new Intl.DateTimeFormat("zh-CN", {
    timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
  });
  const when = (iso) => (iso ? fmt.format(new Date(iso)).replace(/\//g, "-") : "");

  function say(node, text, kind) {
    node.textContent = text || "";
    node.className = "msg" + (kind ? " " + kind : "");
  }
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function option(value, text) {
    const o = el("option", text);
    o.value = value;
    return o;
  }

  async function api(method, path, body) {
    const init = { method, headers: {}, credentials: "same-origin" };
    if (method !== "GET") init.headers["X-Portal-CSRF"] = csrf;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try { resp = await fetch("/api/v1" + path, init); } catch (_) { throw new Error("网络连接失败，请检查网络后重试"); }
    let data = null;
    try { data = await resp.json(); } catch (_) { data = null; }
    if (resp.status === 401) { location.href = "/p/"; throw new Error("请先验证身份"); }
    if (!resp.ok) throw new Error((data && data.error && data.error.message) || `请求失败（${resp.status}）`);
    return data;
  }
  const numberOrNull = (v) => (v ? Number(v) : null);

  // ------------------------------------------------------------ tabs
  const views = ["messages", "rate", "mediation", "complaints"];
  function show(view) {
    for (const v of views) $(v).classList.toggle("hidden", v !== view);
    for (const b of $("feedback-tabs").querySelectorAll("button")) b.classList.toggle("active", b.dataset.view === view);
    if (view === "rate") loadRatings().catch((err) => say($("rate-msg"), err.message, "error"));
  }
  for (const b of $("feedback-tabs").querySelectorAll("button")) b.addEventListener("click", () => show(b.dataset.view));

  // ------------------------------------------------------------ questions
  function threadNode(t) {
    const li = el("li");
    li.className = "thread";
    li.dataset.thread = String(t.id);
    const head = el("strong", t.subject);
    const state = el("span", "　" + word("portal_thread_state", t.state) + (t.overdue ? "（已超期）" : ""), "muted");
    li.append(head, state, el("span", `${t.court_name}　${when(t.created_at)}` + (t.due_at ? `　答复期限 ${when(t.due_at)}` : ""), "when"));
    for (const m of t.messages) {
      const b = el("div", m.text, "bubble" + (m.from_staff ? " staff" : ""));
      b.prepend(el("span", (m.from_staff ? "法院答复" : "我") + "　" + when(m.created_at), "when"));
      li.appendChild(b);
    }
    const form = el("form");
    const text = el("textarea");
    text.maxLength = 2000;
    text.required = true;
    text.placeholder = "继续留言";
    const send = el("button", "发送");
    send.type = "submit";
    const msg = el("div", "", "msg");
    form.append(text, send);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await api("POST", `/portal/threads/${t.id}/messages`, { text: text.value });
        await loadThreads();
      } catch (err) { say(msg, err.message, "error"); }
    });
    li.append(form, msg);
    return li;
  }
  async function loadThreads() {
    const threads = await api("GET", "/portal/threads");
    const list = $("thread-list");
    list.replaceChildren(...threads.map(threadNode));
    if (!threads.length) list.appendChild(el("li", "暂无咨询", "muted"));
  }
  $("ask-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", "/portal/threads", {
        case_id: numberOrNull($("ask-case").value),
        court_id: numberOrNull($("ask-court").value),
        subject: $("ask-subject").value,
        text: $("ask-text").value,
      });
      e.target.reset();
      say($("ask-msg"), "咨询已提交，法院答复后将短信通知您", "ok");
      await loadThreads();
    } catch (err) { say($("ask-msg"), err.message, "error"); }
  });

  // ------------------------------------------------------------ ratings
  function ratingForm(title, path, done) {
    const box = el("div", "", "rate-target");
    box.appendChild(el("h3", title));
    const form = el("form");
    const stars = el("div", "", "stars");
    for (let s = 1; s <= 5; s++) {
      const lab = el("label");
      const input = el("input");
      input.type = "radio";
      input.name = "score";
      input.value = String(s);
      lab.append(input, document.createTextNode(` ${s} 分`));
      stars.appendChild(lab);
    }
    const reasons = el("fieldset", "", "reasons");
    reasons.appendChild(el("legend", "理由（可多选）"));
    for (const [value, text] of Object.entries(WORDS.rating_reason || {})) {
      const lab = el("label");
      const input = el("input");
      input.type = "checkbox";
      input.value = value;
      lab.append(input, document.createTextNode(" " + text));
      reasons.appendChild(lab);
    }
    const text = el("textarea");
    text.maxLength = 500;
    text.placeholder = "评价内容（可不填）";
    const send = el("button", "提交评价");
    send.type = "submit";
    form.append(stars, reasons, text, send);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const picked = form.querySelector("input[name=score]:checked");
      try {
        if (!picked) throw new Error("请选择 1 到 5 分");
        await api("POST", path, {
          score: Number(picked.value),
          reasons: [...reasons.querySelectorAll("input:checked")].map((i) => i.value),
          text: text.value,
        });
        say($("rate-msg"), "感谢您的评价", "ok");
        await done();
      } catch (err) { say($("rate-msg"), err.message, "error"); }
    });
    box.appendChild(form);
    return box;
  }
  let ratingsSeq = 0;
  async function loadRatings() {
    const seq = ++ratingsSeq;  // a later load wins over one still under way
    const caseId = $("rate-case").value;
    const nodes = [];
    if (!caseId) nodes.push(el("p", "暂无可评价的信访件", "muted"));
    else {
      const data = await api("GET", `/portal/cases/${caseId}/ratings`);
      for (const r of data.ratings) {
        nodes.push(el("p", `${word("rating_subject", r.subject)}：${r.score} 分　${when(r.created_at)}`, "muted"));
      }
      for (const v of data.visits) {
        if (!v.rated) nodes.push(ratingForm(`评价 ${when(v.starts_at)} 的视频接访`, `/portal/visits/${v.id}/rating`, loadRatings));
      }
      if (!data.ratings.some((r) => r.subject === "case")) {
        nodes.push(ratingForm("评价本件办理情况", `/portal/cases/${caseId}/rating`, loadRatings));
      }
    }
    if (seq === ratingsSeq) $("rate-targets").replaceChildren(...nodes);
  }
  $("rate-case").addEventListener("change", () => loadRatings().catch((err) => say($("rate-msg"), err.message, "error")));

  // ------------------------------------------------------------ mediation
  $("mediation-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const done = await api("POST", "/portal/mediation", {
        case_id: Number($("mediation-case").value),
        note: e.target.note.value,
      });
      say($("mediation-msg"), `申请已提交，已安排 ${done.mediator}${done.firm ? "（" + done.firm + "）" : ""} 与您联系`, "ok");
    } catch (err) { say($("mediation-msg"), err.message, "error"); }
  });

  // ------------------------------------------------------------ complaints
  async function loadComplaints() {
    const rows = await api("GET", "/portal/complaints");
    $("complaint-list").replaceChildren(...rows.map((c) => {
      const li = el("li");
      li.append(
        el("strong", `${word("complaint_kind", c.kind)}　${word("complaint_state", c.state)}`),
        el("span", `关于 ${c.court_name}，由 ${c.routed_court_name} 处理　${when(c.created_at)}`, "when"),
        el("div", c.text, "bubble"),
      );
      if (c.reply) li.appendChild(el("div", "处理意见：" + c.reply, "bubble staff"));
      return li;
    }));
  }
  $("complaint-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", "/portal/complaints", {
        kind: $("complaint-kind").value,
        case_id: numberOrNull($("complaint-case").value),
        court_id: numberOrNull($("complaint-court").value),
        text: $("complaint-text").value,
      });
      e.target.reset();
      say($("complaint-msg"), "已提交，处理结果将短信通知您", "ok");
      await loadComplaints();
    } catch (err) { say($("complaint-msg"), err.message, "error"); }
  });

  // ------------------------------------------------------------ start
  async function start() {
    const me = await api("GET", "/portal/me");
    csrf = me.csrf_token;
    $("who").textContent = me.name;
    const [courts, mine] = await Promise.all([api("GET", "/portal/courts"), api("GET", "/portal/cases")]);
    cases = mine;
    const caseOptions = (blank) => [
      ...(blank ? [option("", blank)] : []),
      ...cases.map((c) => option(String(c.id), `${c.number}（${c.court_name}）`)),
    ];
    $("ask-case").replaceChildren(...caseOptions("不涉及信访件"));
    $("complaint-case").replaceChildren(...caseOptions("不涉及信访件"));
    $("rate-case").replaceChildren(...caseOptions(null));
    $("mediation-case").replaceChildren(...caseOptions(null));
    for (const id of ["ask-court", "complaint-court"]) {
      $(id).replaceChildren(option("", "请选择法院"), ...courts.map((c) => option(String(c.id), c.name)));
    }
    $("complaint-kind").replaceChildren(...Object.entries(WORDS.complaint_kind || {}).map(([v, t]) => option(v, t)));
    const wanted = new URLSearchParams(location.search).get("case");
    if (wanted && cases.some((c) => String(c.id) === wanted)) {
      for (const id of ["ask-case", "rate-case", "mediation-case", "complaint-case"]) $(id).value = wanted;
    }
    await Promise.all([loadThreads(), loadComplaints()]);
    const view = location.hash.slice(1);
    show(views.includes(view) ? view : "messages");
    document.body.dataset.ready = "1";
  }
  start().catch((err) => say($("ask-msg"), err.message, "error"));
})();
