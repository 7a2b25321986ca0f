// File fields in Chinese whatever the browser's own language: a browser draws its file
// input's button and "no file" text in its UI language (Debian's Chromium without its
// locale packs: "Choose File", "No file chosen"). The input is kept (keyboard, forms,
// uploads) but drawn invisibly; its label shows a button and what was chosen.
"use strict";

(() => {
  function chosen(input) {
    const files = input.files ? Array.from(input.files) : [];
    if (!files.length) return "未选择文件";
    if (files.length === 1) return files[0].name;
    return `已选择 ${files.length} 个文件`;
  }

  function dress(input) {
    const label = input.closest("label");
    if (!label || label.classList.contains("file-picker")) return;
    label.classList.add("file-picker");
    const button = document.createElement("span");
    button.className = "file-button";
    button.textContent = input.multiple ? "选择文件…" : "选择…";
    const status = document.createElement("span");
    status.className = "file-chosen";
    status.setAttribute("aria-live", "polite");
    status.textContent = chosen(input);
    input.after(button, status);
    const show = () => { status.textContent = chosen(input); };
    input.addEventListener("change", show);
    input.form && input.form.addEventListener("reset", () => setTimeout(show));
    input.addEventListener("vr-cleared", show);  // a page that empties it by hand says so
  }

  function dressAll() {
    document.querySelectorAll('label input[type="file"]').forEach(dress);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", dressAll);
  else dressAll();
})();
