"use strict";
// The petitioner portal (/p/): identify by SMS code, then one's cases, online petitions and
// video visit requests. Every text from the server is put in with textContent (never HTML).
(() => {
  const $ = (id) => document.getElementById(id);
  const WORDS = window.VOCABULARY || {};
  const ZONE = "Asia/Shanghai";
  let csrf = "";
  let me = null;

  const fmt = new Intl.DateTimeFormat("zh-CN", {
    timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
  });
  const when = (iso) => (iso ? fmt.format(new Date(iso)).replace(/\//g, "-") : "");
  const dayOf = (date) => new Intl.DateTimeFormat("en-CA", { timeZone: ZONE }).format(date);

  function say(el, text, kind) {
    el.textContent = text || "";
    el.className = "msg" + (kind ? " " + kind : "");
  }
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  class ApiError extends Error {
    constructor(status, body) {
      const err = (body && body.error) || {};
      super(err.message || `请求失败（${status}）`);
      this.status = status;
      this.code = err.code || "";
      this.details = err.details;
    }
  }
  function describe(err) {
    if (err instanceof ApiError) {
      if (err.status === 413 && !err.code) return "提交的内容过大，请减少材料或压缩后再试";
      return err.message;
    }
    return "网络连接失败，请检查网络后重试";
  }
  async function api(method, path, body) {
    const init = { method, headers: {}, credentials: "same-origin" };
    if (method !== "GET") init.headers["X-Portal-CSRF"] = csrf;
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch("/api/v1" + path, init);
    let data = null;
    try { data = await resp.json(); } catch (_) { data = null; }
    if (!resp.ok) {
      if (resp.status === 401 && path !== "/portal/session" && path !== "/portal/me") showIdentify("登录已过期，请重新验证身份");
      throw new ApiError(resp.status, data);
    }
    return data;
  }

  // ------------------------------------------------------------ identity
  const views = ["cases", "case", "submit", "visits"];
  function show(view) {
    for (const v of views) $(v).classList.toggle("hidden", v !== view);
    for (const b of $("portal-tabs").querySelectorAll("button")) b.classList.toggle("active", b.dataset.view === view);
    document.body.dataset.view = view;
  }
  function showIdentify(message) {
    me = null;
    csrf = "";
    $("identify").classList.remove("hidden");
    $("portal-tabs").classList.add("hidden");
    $("sign-out").classList.add("hidden");
    $("who").textContent = "";
    for (const v of views) $(v).classList.add("hidden");
    if (message) say($("identify-msg"), message, "error");
    document.body.dataset.view = "identify";
  }
  function identity() {
    return { name: $("id-name").value.trim(), id_number: $("id-number").value.trim().toUpperCase(), phone: $("id-phone").value.trim() };
  }
  let resendTimer = 0;
  $("send-code").addEventListener("click", async () => {
    const msg = $("identify-msg");
    try {
      const sent = await api("POST", "/portal/code", identity());
      say(msg, `验证码已发送至 ${sent.phone}，${sent.expires_minutes} 分钟内有效`, "ok");
      const button = $("send-code");
      let left = 60;
      button.disabled = true;
      clearInterval(resendTimer);
      resendTimer = setInterval(() => {
        left -= 1;
        button.textContent = left > 0 ? `重新获取（${left} 秒）` : "获取短信验证码";
        if (left <= 0) { clearInterval(resendTimer); button.disabled = false; }
      }, 1000);
      $("id-code").focus();
    } catch (err) { say(msg, describe(err), "error"); }
  });
  $("identify-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = $("identify-msg");
    try {
      const who = await api("POST", "/portal/session", { ...identity(), code: $("id-code").value.trim() });
      say(msg, "");
      $("id-code").value = "";
      await enter(who);
    } catch (err) { say(msg, describe(err), "error"); }
  });
  $("sign-out").addEventListener("click", async () => {
    try { await api("DELETE", "/portal/session"); } catch (_) { /* the session ends anyway */ }
    showIdentify("");
  });

  async function enter(who) {
    me = who;
    csrf = who.csrf_token;
    $("identify").classList.add("hidden");
    $("portal-tabs").classList.remove("hidden");
    $("sign-out").classList.remove("hidden");
    $("who").textContent = `${who.name}（${who.phone}）`;
    $("max-mb").textContent = String(who.material_max_mb);
    await Promise.all([loadCourts(), loadCases()]);
    show("cases");
  }

  // ------------------------------------------------------------ cases
  async function loadCases() {
    const list = $("case-list");
    const cases = await api("GET", "/portal/cases");
    list.replaceChildren();
    if (!cases.length) list.appendChild(el("li", "暂无信访件。可在“网上申诉”中提交。", "empty"));
    for (const c of cases) {
      const item = el("li");
      const button = el("button", null, "case-item");
      button.type = "button";
      button.dataset.caseId = c.id;
      button.appendChild(el("strong", `${c.number}`));
      button.appendChild(el("span", `${c.category} · ${c.state_name} · ${c.court_name}`, "meta"));
      button.appendChild(el("span", `提交于 ${when(c.created_at)}`, "meta"));
      button.addEventListener("click", () => openCase(c.id));
      item.appendChild(button);
      list.appendChild(item);
    }
  }
  let currentCase = 0;
  async function openCase(id) {
    const msg = $("case-msg");
    say(msg, "");
    let c;
    try { c = await api("GET", `/portal/cases/${id}`); } catch (err) { say($("cases-msg"), describe(err), "error"); return; }
    currentCase = id;
    $("case-title").textContent = `信访件 ${c.number}`;
    const facts = $("case-facts");
    facts.replaceChildren();
    const rows = [
      ["案件类别", c.category], ["当前状态", c.state_name], ["当前环节", c.node_name],
      ["办理期限", c.due_at ? when(c.due_at) : "—"], ["受理法院", c.court_name], ["承办法院", c.handler_court_name],
      ["原审法院", c.original_court], ["信访诉求", c.summary],
    ];
    for (const [k, v] of rows) { facts.appendChild(el("dt", k)); facts.appendChild(el("dd", v)); }
    $("case-result").classList.toggle("hidden", !c.result);
    if (c.result) {
      $("result-title").textContent = c.result.title;
      $("result-ground").textContent = c.result.ground;
      $("result-text").textContent = c.result.text;
    }
    const steps = $("case-steps");
    steps.replaceChildren();
    for (const s of c.steps) {
      const li = el("li");
      li.appendChild(el("span", `${when(s.at)} · ${s.court}`, "when"));
      li.appendChild(el("strong", s.title));
      if (s.text) li.appendChild(el("span", `：${s.text}`));
      steps.appendChild(li);
    }
    const mats = $("case-materials");
    mats.replaceChildren();
    if (!c.materials.length) mats.appendChild(el("li", "无", "empty"));
    for (const m of c.materials) mats.appendChild(el("li", `${m.filename}（${Math.max(1, Math.round(m.size / 1024))} KB，SHA-256 ${m.sha256.slice(0, 12)}…）`));
    const pending = c.requests.find((r) => r.state === "pending");
    const closed = ["guided", "resolved", "terminated"].includes(c.state);
    $("visit-form").classList.toggle("hidden", Boolean(pending) || closed);
    $("visit-court").textContent = closed ? "本件已办结。" : pending
      ? `已申请视频接访，等待${pending.court_name}确认。` : `视频接访在${c.court_name}的接访室进行，由上级法院法官远程接访。`;
    show("case");
  }
  $("case-back").addEventListener("click", async () => { await loadCases(); show("cases"); });
  $("visit-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    try {
      await api("POST", `/portal/cases/${currentCase}/visit-requests`, {
        preferred: form.elements.preferred.value.trim(), note: form.elements.note.value.trim(),
      });
      form.reset();
      await openCase(currentCase);
      say($("case-msg"), "预约申请已提交，法院确认后将短信通知您", "ok");
    } catch (err) { say($("case-msg"), describe(err), "error"); }
  });

  // ------------------------------------------------------------ submitting
  async function loadCourts() {
    const courts = await api("GET", "/portal/courts");
    const sel = $("submit-court");
    sel.replaceChildren(new Option("请选择", ""));
    for (const c of courts) sel.add(new Option(c.name, c.id));
    const cat = $("submit-category");
    cat.replaceChildren(new Option("请选择", ""));
    for (const [value, text] of Object.entries(WORDS.case_category || {})) cat.add(new Option(text, value));
  }
  $("submit-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const msg = $("submit-msg");
    const files = [...$("submit-photos").files, ...$("submit-pdfs").files];
    const limit = (me ? me.material_max_mb : 20) * 1024 * 1024;
    const big = files.find((f) => f.size > limit);
    if (big) { say(msg, `「${big.name}」过大，单个文件不能超过 ${me.material_max_mb} MB`, "error"); return; }
    if (files.length > 10) { say(msg, "一次最多上传 10 份材料", "error"); return; }
    const button = $("submit-button");
    button.disabled = true;
    say(msg, "正在提交…");
    try {
      const done = await api("POST", "/portal/cases", new FormData(form));
      form.reset();
      say(msg, `已提交：信访件 ${done.number}，材料 ${done.materials.length} 份`, "ok");
      await loadCases();
      await openCase(done.case_id);
      say($("case-msg"), `申诉已提交（${done.linked ? "已并入您此前就同一案件的信访件" : "新信访件"}）`, "ok");
    } catch (err) { say(msg, describe(err), "error"); }
    finally { button.disabled = false; }
  });

  // ------------------------------------------------------------ visits
  async function loadVisits() {
    const list = $("visit-list");
    const rows = await api("GET", "/portal/visit-requests");
    list.replaceChildren();
    if (!rows.length) list.appendChild(el("li", "暂无预约申请", "empty"));
    const today = dayOf(new Date());
    for (const r of rows) {
      const li = el("li");
      li.dataset.requestId = r.id;
      li.appendChild(el("strong", `${r.case_number} · ${r.state_name}`));
      li.appendChild(el("div", `地点：${r.court_name}${r.room_name ? " " + r.room_name : ""}`));
      if (r.starts_at) li.appendChild(el("div", `接访时间：${when(r.starts_at)}–${when(r.ends_at).slice(-5)}`, "visit-time"));
      else li.appendChild(el("div", r.preferred ? `希望的时间：${r.preferred}` : "等待法院安排时间", "muted"));
      if (r.visit_state) li.appendChild(el("div", `接访状态：${r.visit_state}`, "muted"));
      if (r.starts_at && dayOf(new Date(r.starts_at)) === today && r.state === "booked") {
        const out = el("div");
        const button = el("button", "获取接访码");
        button.type = "button";
        button.addEventListener("click", async () => {
          try {
            const c = await api("POST", `/portal/visit-requests/${r.id}/code`);
            out.replaceChildren(el("div", c.code, "visit-code"));
            const link = el("a", "进入视频接访", "button");
            link.href = c.join_url;
            out.appendChild(link);
            out.appendChild(el("p", "接访码只显示一次，请勿告诉他人。", "muted"));
          } catch (err) { say($("visits-msg"), describe(err), "error"); }
        });
        li.appendChild(button);
        li.appendChild(out);
      }
      list.appendChild(li);
    }
  }

  for (const b of $("portal-tabs").querySelectorAll("button")) {
    b.addEventListener("click", async () => {
      try {
        if (b.dataset.view === "cases") await loadCases();
        if (b.dataset.view === "visits") await loadVisits();
      } catch (err) { say($("cases-msg"), describe(err), "error"); }
      show(b.dataset.view);
    });
  }

  (async () => {
    try { await enter(await api("GET", "/portal/me")); } catch (_) { showIdentify(""); }
    document.body.dataset.ready = "1";
  })();
})();
