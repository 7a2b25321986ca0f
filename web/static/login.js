"use strict";
(() => {
  const form = document.getElementById("login-form");
  const msg = document.getElementById("login-msg");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    VR.say(msg, "正在登录…");
    try {
      const me = await VR.api("POST", "/auth/login", VR.formData(form));
      const next = new URLSearchParams(location.search).get("next");
      location.href = next && next.startsWith("/") && !next.startsWith("//") ? next : me.home;
    } catch (err) {
      VR.say(msg, VR.describe(err), "error");
    }
  });
})();
