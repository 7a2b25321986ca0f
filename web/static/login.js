"use strict";
(() => {
  const form = document.getElementById("login-form");
  const msg = document.getElementById("login-msg");

  // Where to go after logging in: `next` only if it is a path on this site. It is resolved
  // the way the browser would (`/\evil.example` means `//evil.example`, tabs and newlines
  // are dropped) and must keep this origin; anything else goes to the user's home page.
  const sameSite = (next, home) => {
    if (!next || !next.startsWith("/")) return home;
    let url;
    try {
      url = new URL(next, location.origin);
    } catch {
      return home;
    }
    if (url.origin !== location.origin || !url.pathname.startsWith("/")) return home;
    return url.pathname + url.search + url.hash;
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    VR.say(msg, "正在登录…");
    try {
      const me = await VR.api("POST", "/auth/login", VR.formData(form));
      const target = sameSite(new URLSearchParams(location.search).get("next"), me.home);
      // a password an administrator chose is replaced first, then on to where they were going
      location.href = me.must_change_password ? "/password?next=" + encodeURIComponent(target) : target;
    } catch (err) {
      VR.say(msg, VR.describe(err), "error");
    }
  });
})();
