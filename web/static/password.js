"use strict";
// 修改密码: any staff member changes their own password; an account whose password an
// administrator chose is sent here first and sees nothing else until it is changed.
(() => {
  const form = document.getElementById("password-form");
  const msg = document.getElementById("password-msg");

  // back to the page that sent us here: a path of this site only (as the login page)
  const sameSite = (next, home) => {
    if (!next || !next.startsWith("/") || next.startsWith("/password")) return home;
    let url;
    try {
      url = new URL(next, location.origin);
    } catch {
      return home;
    }
    if (url.origin !== location.origin || !url.pathname.startsWith("/")) return home;
    return url.pathname + url.search + url.hash;
  };

  VR.start("修改密码").then((me) => {
    document.getElementById("must-change").classList.toggle("hidden", !me.must_change_password);
    document.getElementById("password-rule").textContent = me.password_rule;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const data = VR.formData(form);
      if (data.new_password !== data.repeat_password) {
        VR.say(msg, "两次输入的新密码不一致", "error");
        return;
      }
      VR.say(msg, "正在修改…");
      try {
        const after = await VR.api("POST", "/auth/password", {
          current_password: data.current_password,
          new_password: data.new_password,
        });
        form.reset();
        VR.say(msg, "密码已修改", "ok");
        location.href = sameSite(new URLSearchParams(location.search).get("next"), after.home);
      } catch (err) {
        VR.say(msg, VR.describe(err), "error");
      }
    });
  });
})();
