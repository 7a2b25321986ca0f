"use strict";
(async () => {
  await VR.start("系统管理");
  VR.tabs(document.getElementById("tabs"));
  let courts = [];
  const courtName = (id) => (courts.find((c) => c.id === id) || {}).name || "";

  function options(select, list, blank) {
    select.replaceChildren();
    if (blank) select.add(new Option(blank, ""));
    for (const c of list) select.add(new Option(`${c.name}（${VR.LEVEL_NAMES[c.level]}）`, c.id));
  }

  async function loadCourts() {
    courts = await VR.api("GET", "/courts");
    VR.fillTable(document.getElementById("court-rows"), courts, [
      (c) => c.code, (c) => c.name, (c) => VR.LEVEL_NAMES[c.level], (c) => courtName(c.parent_id),
    ]);
    options(document.getElementById("court-parent"), courts, "（无：最高法院）");
    options(document.getElementById("user-court"), courts, "（无：仅系统管理员）");
    options(document.getElementById("room-court"), courts);
  }

  // every role, as the vocabulary names it (信访专员 and 院领导 included)
  const roleSelect = document.getElementById("user-role");
  for (const [value, text] of Object.entries(VR.ROLE_NAMES)) roleSelect.add(new Option(text, value));
  roleSelect.value = "operator";

  async function allUsers() {
    const items = [];
    for (let offset = 0; ; offset += 200) {
      const page = await VR.api("GET", `/users?limit=200&offset=${offset}`);
      items.push(...page.items);
      if (items.length >= page.total || !page.items.length) return items;
    }
  }

  async function loadUsers() {
    const page = { items: await allUsers() };
    const listMsg = document.getElementById("user-list-msg");
    const act = (fn) => async () => {
      try { await fn(); await loadUsers(); await loadAudit(); }
      catch (err) { VR.say(listMsg, VR.describe(err), "error"); }
    };
    VR.fillTable(document.getElementById("user-rows"), page.items, [
      (u) => u.username, (u) => u.display_name, (u) => VR.ROLE_NAMES[u.role],
      (u) => courtName(u.court_id),
      (u) => {
        const state = (u.active ? "启用" : "停用") + (u.must_change_password ? "，待本人修改初始密码" : "");
        return u.locked_seconds ? `${state}，登录已锁定（约 ${Math.ceil(u.locked_seconds / 60)} 分钟后自动解除）` : state;
      },
      (u) => {
        const box = document.createElement("span");
        box.className = "actions";
        box.append(VR.button(u.active ? "停用" : "启用", act(async () => {
          await VR.api("PATCH", `/users/${u.id}`, { active: !u.active });
        }), true));
        box.append(VR.button("修改", act(async () => {
          const done = await VR.ask(`修改账户 ${u.username}`, [
            { name: "display_name", label: "姓名", value: u.display_name },
            { name: "role", label: "角色", options: Object.entries(VR.ROLE_NAMES), value: u.role },
            { name: "court_id", label: "所属法院", required: false, value: u.court_id ?? "",
              options: [["", "（无：仅系统管理员）"], ...courts.map((c) => [String(c.id), c.name])] },
          ], async (v) => {
            const change = {};
            if (v.display_name !== u.display_name) change.display_name = v.display_name;
            if (v.role !== u.role) change.role = v.role;
            const court = v.court_id ? Number(v.court_id) : null;
            if (court !== null && court !== u.court_id) change.court_id = court;
            if (!Object.keys(change).length) return "unchanged";
            return VR.api("PATCH", `/users/${u.id}`, change);
          });
          if (done && done !== "unchanged") VR.say(listMsg, `已修改账户 ${u.username}`, "ok");
        }), true));
        if (u.locked_seconds) {
          box.append(VR.button("解除锁定", act(async () => {
            await VR.api("POST", `/users/${u.id}/unlock`);
            VR.say(listMsg, `已解除账户 ${u.username} 的登录锁定`, "ok");
          }), true));
        }
        box.append(VR.button("重置密码", act(async () => {
          const done = await VR.ask(`重置账户 ${u.username} 的密码`, [
            { name: "password", label: "新密码", type: "password" },
            { name: "again", label: "再次输入新密码", type: "password" },
          ], async (v) => {
            if (v.password !== v.again) throw new Error("两次输入的密码不一致");
            return VR.api("POST", `/users/${u.id}/password`, { password: v.password });
          });
          if (done) VR.say(listMsg, `已重置账户 ${u.username} 的密码，其登录会话已结束；本人下次登录时须修改此密码`, "ok");
        }), true));
        return box;
      },
    ]);
  }

  async function loadRooms() {
    const rooms = await VR.api("GET", "/rooms");
    VR.fillTable(document.getElementById("room-rows"), rooms, [
      (r) => courtName(r.court_id), (r) => r.name, (r) => r.location, (r) => (r.active ? "启用" : "停用"),
      (r) => VR.button(r.active ? "停用" : "启用", async () => {
        try { await VR.api("PATCH", `/rooms/${r.id}`, { active: !r.active }); await loadRooms(); }
        catch (err) { VR.say(document.getElementById("room-msg"), VR.describe(err), "error"); }
      }, true),
    ]);
  }

  // the deadline of each node of a petition case (办理期限): running deadlines keep theirs
  async function loadRules() {
    const msg = document.getElementById("rule-msg");
    const rules = await VR.api("GET", "/case-rules");
    VR.fillTable(document.getElementById("rule-rows"), rules, [
      (r) => VR.label("case_node", r.node), (r) => String(r.days), (r) => String(r.remind_days_before),
      (r) => VR.button("修改", async () => {
        const done = await VR.ask(`修改「${VR.label("case_node", r.node)}」的办理期限`, [
          { name: "days", label: "期限（天，1–365）", type: "number", value: String(r.days) },
          { name: "remind_days_before", label: "提前提醒（天）", type: "number", value: String(r.remind_days_before) },
        ], (v) => VR.api("PUT", `/case-rules/${r.node}`, { days: Number(v.days), remind_days_before: Number(v.remind_days_before) }));
        if (done) {
          VR.say(msg, `已修改「${VR.label("case_node", r.node)}」：${done.days} 天，提前 ${done.remind_days_before} 天提醒`, "ok");
          await Promise.all([loadRules(), loadAudit()]);
        }
      }, true),
    ], "暂无规则");
  }

  async function loadAudit() {
    const page = await VR.api("GET", "/audit?limit=100");
    VR.fillTable(document.getElementById("audit-rows"), page.items, [
      (a) => VR.time(a.at), (a) => a.sentence, (a) => a.target_label, (a) => a.address,
    ], "暂无审计记录");
  }

  function submit(formId, msgId, path, label, after) {
    const form = document.getElementById(formId);
    const msg = document.getElementById(msgId);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const created = await VR.api("POST", path, VR.formData(form));
        VR.say(msg, `已添加${label}：${created.name || created.username}`, "ok");
        form.reset();
        await after();
        await loadAudit();
      } catch (err) {
        VR.say(msg, VR.describe(err), "error");
      }
    });
  }

  submit("court-form", "court-msg", "/courts", "法院", async () => { await loadCourts(); });
  submit("user-form", "user-msg", "/users", "用户", loadUsers);
  submit("room-form", "room-msg", "/rooms", "接访室", loadRooms);
  await loadCourts();
  await Promise.all([loadUsers(), loadRooms(), loadRules(), loadAudit()]);
  document.body.dataset.ready = "1";
})();
