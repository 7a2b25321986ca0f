// Shared helpers of the vreception pages: API calls with the CSRF token, messages, tables.
"use strict";

const VR = (() => {
  let csrf = null;
  let me = null;

  class ApiError extends Error {
    constructor(status, body) {
      const err = (body && body.error) || {};
      super(err.message || `请求失败（${status}）`);
      this.status = status;
      this.code = err.code || "http_error";
      this.details = err.details;
    }
  }

  async function api(method, path, body) {
    const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    if (method !== "GET" && csrf) opts.headers["X-CSRF-Token"] = csrf;
    return answer(path, await fetch("/api/v1" + path, opts));
  }

  // a multipart upload (FormData): the file streams to the server as it is
  async function upload(path, form) {
    const headers = { Accept: "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    return answer(path, await fetch("/api/v1" + path, { method: "POST", headers, body: form, credentials: "same-origin" }));
  }

  // a file from the API, saved under the server's file name; a refusal throws ApiError
  async function download(path) {
    const res = await fetch("/api/v1" + path, { credentials: "same-origin" });
    if (!res.ok) return answer(path, res);
    const named = /filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "");
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement("a");
    a.href = url; a.download = named ? named[1] : "download";
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    return null;
  }

  async function answer(path, res) {
    const data = res.headers.get("Content-Type")?.includes("json") ? await res.json() : null;
    if (res.status === 401 && !path.startsWith("/auth/login")) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
      throw new ApiError(res.status, data);
    }
    // a password an administrator chose: nothing works until its holder replaces it
    if (res.status === 403 && data?.error?.code === "password_change_required" && location.pathname !== "/password") {
      location.href = "/password?next=" + encodeURIComponent(location.pathname + location.search);
      throw new ApiError(res.status, data);
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  // a refused field named as the page's form labels it
  function fieldLabel(field) {
    const input = document.querySelector(`[name="${CSS.escape(String(field).split(".").pop())}"]`);
    const label = input && input.closest("label");
    return label && label.firstChild ? label.firstChild.textContent.trim() : "";
  }

  function describe(err) {
    if (err.details && Array.isArray(err.details)) {
      return err.message + "：" + err.details.map((d) => `${fieldLabel(d.field) || d.field}${d.message}`).join("；");
    }
    return err.message;
  }

  function say(el, text, kind) {
    el.textContent = text || "";
    el.className = "msg" + (kind ? " " + kind : "");
  }

  function $(sel, root) { return (root || document).querySelector(sel); }

  function cell(tr, value) {
    const td = document.createElement("td");
    if (value instanceof Node) td.appendChild(value); else td.textContent = value ?? "";
    tr.appendChild(td);
    return td;
  }

  function fillTable(tbody, rows, columns, emptyText) {
    tbody.replaceChildren();
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = cell(tr, emptyText || "暂无记录");
      td.colSpan = columns.length;
      td.className = "empty";
      tbody.appendChild(tr);
      return;
    }
    for (const row of rows) {
      const tr = document.createElement("tr");
      for (const col of columns) cell(tr, col(row));
      tbody.appendChild(tr);
    }
  }

  function button(text, onClick, secondary) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    if (secondary) b.className = "secondary";
    b.addEventListener("click", onClick);
    return b;
  }

  function formData(form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name) continue;
      if (el.dataset.type === "int") { if (el.value !== "") out[el.name] = Number(el.value); }
      else if (el.value !== "" || el.dataset.keepEmpty) out[el.name] = el.value;
    }
    return out;
  }

  function time(iso) {
    if (!iso) return "";
    return new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });
  }

  // the domain's labels, defined once on the server (config/vocabulary.py, /vocabulary.js)
  const WORDS = window.VOCABULARY || {};
  function label(kind, value) { return ((WORDS[kind] || {})[value]) || value || ""; }
  const ROLE_NAMES = WORDS.role || {};
  const LEVEL_NAMES = WORDS.court_level || {};
  const ID_TYPES = WORDS.id_type || {};

  // Court time is China Standard Time (UTC+8, no daylight saving).
  const OFFSET = "+08:00";
  function today() { return new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 10); }
  function addDays(day, n) {
    const d = new Date(day + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + n); return d.toISOString().slice(0, 10);
  }
  function localIso(day, hhmm) { return `${day}T${hhmm}:00${OFFSET}`; }
  function fromInput(value) { return value.length === 16 ? value + ":00" + OFFSET : value; }
  function hm(iso) {
    return new Date(iso).toLocaleTimeString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false, hour: "2-digit", minute: "2-digit" });
  }
  function dayOf(iso) { return new Date(new Date(iso).getTime() + 8 * 3600e3).toISOString().slice(0, 10); }
  const WEEKDAYS = ["星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"];

  // A small modal form: fields [{name, label, type, options}] → values, or null if closed.
  function ask(title, fields, submit) {
    const dlg = document.getElementById("action-dialog");
    document.getElementById("action-title").textContent = title;
    const box = document.getElementById("action-fields");
    box.replaceChildren();
    for (const f of fields) {
      const label = document.createElement("label");
      label.textContent = f.label;
      let input;
      if (f.options) {
        input = document.createElement("select");
        for (const [v, t] of f.options) input.add(new Option(t, v));
        if (f.value !== undefined && f.value !== null) input.value = String(f.value);
      } else {
        input = document.createElement("input");
        input.type = f.type || "text";
        if (f.value) input.value = f.value;
      }
      input.name = f.name;
      input.required = f.required !== false;
      label.appendChild(input);
      box.appendChild(label);
    }
    const msg = document.getElementById("action-msg");
    say(msg, "");
    return new Promise((resolve) => {
      const form = document.getElementById("action-form");
      const close = document.getElementById("action-cancel");
      const onSubmit = async (ev) => {
        ev.preventDefault();
        const values = formData(form);
        try {
          const result = await submit(values);
          cleanup(); dlg.close(); resolve(result);
        } catch (err) { say(msg, describe(err), "error"); }
      };
      const onClose = () => { cleanup(); dlg.close(); resolve(null); };
      function cleanup() { form.removeEventListener("submit", onSubmit); close.removeEventListener("click", onClose); }
      form.addEventListener("submit", onSubmit);
      close.addEventListener("click", onClose);
      dlg.showModal();
    });
  }

  async function notifications(header) {
    const bell = button("通知", () => panel.classList.toggle("hidden"));
    bell.id = "bell";
    bell.className = "bell";
    const count = document.createElement("span");
    count.className = "count";
    count.id = "bell-count";
    bell.appendChild(count);
    header.insertBefore(bell, header.querySelector("#logout"));
    const panel = document.createElement("div");
    panel.id = "notify-panel";
    panel.className = "hidden";
    const list = document.createElement("ul");
    const readAll = button("全部标为已读", async () => { await api("POST", "/notifications/read-all"); await refresh(); }, true);
    panel.append(readAll, list);
    document.body.appendChild(panel);
    async function refresh() {
      const data = await api("GET", "/notifications?limit=30");
      count.textContent = data.unread ? String(data.unread) : "";
      list.replaceChildren();
      for (const n of data.items) {
        const li = document.createElement("li");
        li.className = n.read ? "" : "unread";
        li.textContent = `${time(n.created_at)}　${n.title}${n.body ? "：" + n.body : ""}`;
        list.appendChild(li);
      }
      if (!data.items.length) { const li = document.createElement("li"); li.textContent = "暂无通知"; list.appendChild(li); }
    }
    await refresh();
    if (window.io) {
      const socket = window.io("/notify", { transports: ["websocket", "polling"] });
      socket.on("notification", async (n) => {
        await refresh();
        document.dispatchEvent(new CustomEvent("vr-notification", { detail: n }));
      });
    } else {
      setInterval(refresh, 60000);
    }
  }

  async function start(title) {
    me = await api("GET", "/auth/me");
    csrf = me.csrf_token;
    const header = document.createElement("header");
    header.className = "top";
    const h1 = document.createElement("h1");
    h1.textContent = "远程视频接访 · " + title;
    const who = document.createElement("span");
    who.className = "who";
    who.id = "who";
    who.textContent = `${me.display_name}（${ROLE_NAMES[me.role]}${me.court_name ? " · " + me.court_name : ""}）`;
    const out = button("退出", async () => {
      try { await api("POST", "/auth/logout"); } finally { location.href = "/login"; }
    });
    out.id = "logout";
    const pw = document.createElement("a");
    pw.href = "/password?next=" + encodeURIComponent(location.pathname + location.search);
    pw.id = "change-password";
    pw.className = "who";
    pw.textContent = "修改密码";
    if (me.must_change_password) {
      // only the password page until the password an administrator chose is replaced
      if (location.pathname !== "/password") {
        location.href = pw.href;
        return new Promise(() => {});
      }
      header.append(h1, who, out);
      document.body.prepend(header);
      return me;
    }
    const nav = document.createElement("nav");
    nav.className = "top-links";
    // every role has a home page and the recordings archive (each sees what it may), and every
    // role that handles or reads petition cases (信访件) their list and the board
    const home = me.home || "/archive";
    const links = home === "/cases" ? [] : home === "/archive" ? [["/archive", "录像档案"]]
      : [[home, "工作台"], ["/archive", "录像档案"]];
    links.push(["/cases", "信访件"], ["/cases/board", "督办看板"]);
    if (home === "/cases") links.push(["/archive", "录像档案"]);
    // a court leader also receives visits (领导接访): the reception desk beside the cases
    if (me.role === "leader" && home !== "/judge") links.splice(1, 0, ["/judge", "接访日程"]);
    if (["operator", "petition_officer", "leader", "admin"].includes(me.role)) links.push(["/inbox", "网上咨询与投诉"]);
    // 监看: staff of a supervising court watch what is live below it
    if (["judge", "petition_officer", "leader", "admin"].includes(me.role)) links.push(["/monitor", label("participant_role", "observer")]);
    // video supervision meetings: their hosts and the lower courts' staff invited
    if (["judge", "petition_officer", "leader", "admin", "operator"].includes(me.role)) links.splice(links.length - 1, 0, ["/meetings", label("visit_kind", "meeting")]);
    // 信访统计: figures of the court and the courts below it
    if (["petition_officer", "leader", "admin"].includes(me.role)) links.push(["/stats", "信访统计"]);
    for (const [href, text] of links) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      if (location.pathname === href) a.className = "active";
      nav.appendChild(a);
    }
    header.append(h1, nav, who, pw, out);
    document.body.prepend(header);
    await notifications(header);
    return me;
  }

  function tabs(nav) {
    const buttons = nav.querySelectorAll("button[data-tab]");
    const show = (name) => {
      for (const b of buttons) {
        b.classList.toggle("active", b.dataset.tab === name);
        document.getElementById(b.dataset.tab).classList.toggle("hidden", b.dataset.tab !== name);
      }
    };
    for (const b of buttons) b.addEventListener("click", () => show(b.dataset.tab));
    show(buttons[0].dataset.tab);
  }

  // a visit's state, with its recording's state (一案一录) when there is one
  function stateTag(v) {
    const box = document.createElement("span");
    const span = document.createElement("span");
    span.className = "state " + v.state;
    span.textContent = v.state_name;
    box.appendChild(span);
    if (v.recording_state) {
      const rec = document.createElement("span");
      rec.className = "rec-tag " + v.recording_state;
      rec.textContent = " " + label("recording_state", v.recording_state) +
        (v.recording_state === "processing" ? ` ${v.recording_progress || 0}%` : "");
      if (v.recording_note) rec.title = v.recording_note;
      box.appendChild(rec);
    }
    return box;
  }

  // "结束接访" where the server says the caller may end the visit now (v.can_end)
  function endButton(v, done, msg) {
    if (!v.can_end) return null;
    return button("结束接访", async () => {
      const ended = await ask(`结束接访 ${v.petition_number}？录像将随即处理并签名。`, [],
        () => api("POST", `/visits/${v.id}/state`, { state: "ended" }));
      if (ended) { say(msg, `已结束接访 ${v.petition_number}`, "ok"); await done(); }
    });
  }

  // open visits of earlier days (a call past midnight, a judge who never came back):
  // shown above the day's list until someone ends them
  async function earlierOpen(card, rows, done, msg) {
    const visits = await api("GET", "/visits?earlier_open=true");
    card.classList.toggle("hidden", visits.length === 0);
    fillTable(rows, visits, [
      (v) => `${dayOf(v.starts_at)} ${hm(v.starts_at)}`, (v) => v.petition_number,
      (v) => v.petitioner_name, (v) => `${v.court_name} → ${v.receiving_court_name}`,
      (v) => v.judge_name || "", stateTag, (v) => endButton(v, done, msg) || "",
    ], "无");
  }

  // ------------------------------------------------------------ petition cases (信访件)
  // a select's options from one kind of the vocabulary, after any blank option it has
  // A holiday, cancelled hours or a removed 调休上班日 leave visits already booked without a
  // judge or a room: the server told their judges and booking courts; the page says how many.
  function savedTelling(answer, done) {
    const n = (answer && answer.stranded_visits ? answer.stranded_visits : []).length;
    return (done || "已保存") + (n ? `；此时段已预约的 ${n} 个接访需改期，已通知承办法官和预约法院` : "");
  }
  function vocabOptions(select, kind) {
    for (const [value, text] of Object.entries(WORDS[kind] || {})) select.add(new Option(text, value));
  }
  // an instant as staff read a deadline or a timeline entry: court day and minute
  function minute(iso) { return iso ? `${dayOf(iso)} ${hm(iso)}` : ""; }
  // a case's deadline in court time, with the days overdue when it has passed
  function caseDue(c) {
    const box = document.createElement("span");
    box.textContent = c.due_at ? minute(c.due_at) : "—";
    if (c.overdue) {
      const late = document.createElement("strong");
      late.className = "late";
      late.textContent = `超期 ${c.days_overdue} 天`;
      box.append(" ", late);
    }
    return box;
  }
  // a case's number linking to its page, with its 挂牌督办 and 包案 badges
  function caseLink(c) {
    const box = document.createElement("span");
    const a = document.createElement("a");
    a.href = `/cases/${c.id}`;
    a.className = "case-link";
    a.textContent = c.number;
    box.appendChild(a);
    if (c.flagged) box.appendChild(badge(label("case_event", "flagged"), "flag"));
    if (c.leader) box.appendChild(badge(`包案：${c.leader.name}`, "lead"));
    return box;
  }
  function badge(text, kind) {
    const b = document.createElement("span");
    b.className = "badge " + kind;
    b.textContent = text;
    return b;
  }
  function casePeople(c) {
    return (c.petitioner_name || "") + (c.people_count > 1 ? ` 等${c.people_count}人` : "");
  }

  return { api, upload, download, say, describe, vocabOptions, savedTelling, minute, caseDue, caseLink, casePeople, badge, $, fillTable, button, formData, time, start, tabs, ask, stateTag,
           endButton, earlierOpen,
           today, addDays, localIso, fromInput, hm, dayOf, WEEKDAYS,
           ROLE_NAMES, LEVEL_NAMES, ID_TYPES, label, get me() { return me; } };
})();
