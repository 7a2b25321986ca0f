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
    const res = await fetch("/api/v1" + path, opts);
    const data = res.headers.get("Content-Type")?.includes("json") ? await res.json() : null;
    if (res.status === 401 && !path.startsWith("/auth/login")) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
      throw new ApiError(res.status, data);
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  function describe(err) {
    if (err.details && Array.isArray(err.details)) {
      return err.message + "：" + err.details.map((d) => `${d.field} ${d.message}`).join("；");
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

  const ROLE_NAMES = { operator: "操作员", judge: "接访法官", archivist: "档案员", admin: "系统管理员" };
  const LEVEL_NAMES = { supreme: "最高法院", high: "高级法院", intermediate: "中级法院", basic: "基层法院" };
  const ID_TYPES = { resident_id: "居民身份证", passport: "护照", other: "其他证件" };

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
    header.append(h1, who, out);
    document.body.prepend(header);
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

  return { api, say, describe, $, fillTable, button, formData, time, start, tabs,
           ROLE_NAMES, LEVEL_NAMES, ID_TYPES, get me() { return me; } };
})();
