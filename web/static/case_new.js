// Registering a contact (登记): fast keyboard entry, the live duplicate check (重复访),
// 有录必全 errors next to the fields, then the scanned materials with their SHA-256.
"use strict";
(async () => {
  await VR.start("登记信访件");
  const form = document.getElementById("reg-form");
  const msg = document.getElementById("reg-msg");
  const people = document.getElementById("people");
  const dup = document.getElementById("dup");
  const count = document.getElementById("reg-count");
  for (const sel of form.querySelectorAll("select[data-vocab]")) VR.vocabOptions(sel, sel.dataset.vocab);

  function nowLocal() { return new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 16); }

  function addPerson() {
    const row = document.getElementById("person-template").content.firstElementChild.cloneNode(true);
    const idType = row.querySelector("select[name=id_type]");
    VR.vocabOptions(idType, "id_type");
    idType.value = "resident_id"; // most petitioners show a resident ID card
    people.appendChild(row);
    const rows = people.querySelectorAll(".person").length;
    if (Number(count.value) < rows) count.value = String(rows);
    return row;
  }
  function lead() { return people.querySelector(".person"); }

  function reset() {
    form.reset();
    people.replaceChildren();
    addPerson();
    document.getElementById("reg-occurred").value = nowLocal();
    clearErrors();
    dup.classList.add("hidden");
    VR.say(msg, "");
    document.getElementById("reg-channel").focus();
  }

  // ------------------------------------------------------------ errors next to the fields
  function clearErrors() {
    for (const el of form.querySelectorAll("label.invalid")) el.classList.remove("invalid");
    for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  }
  function markField(label, text) {
    label.classList.add("invalid");
    const slot = label.querySelector(".field-error");
    if (slot) slot.textContent = text;
  }
  // fields named by the server: 有录必全 names them in words (details.fields)
  function markFields(names, text) {
    let first = null;
    for (const name of names) {
      for (const label of form.querySelectorAll(`label[data-field="${CSS.escape(name)}"]`)) {
        const input = label.querySelector("input, select, textarea");
        if (name === "信访人姓名" || name === "证件号码") {
          if (input.value.trim()) continue; // only the petitioners' rows left empty
        }
        markField(label, text);
        first = first || input;
      }
    }
    if (first) first.focus();
  }
  // other refusals, by the code the server gives, on the field they concern
  const FIELD_OF_CODE = { invalid_id_number: "证件号码", invalid_people_count: "people_count",
                          future_contact: "occurred_at", duplicate_petitioner: "证件号码" };
  function showError(err) {
    VR.say(msg, VR.describe(err), "error");
    if (err.code === "incomplete_record" && err.details && Array.isArray(err.details.fields)) {
      markFields(err.details.fields, "必填");
      return;
    }
    const field = FIELD_OF_CODE[err.code];
    if (!field) return;
    const labels = [...form.querySelectorAll(`label[data-field="${field}"]`)];
    const target = labels.length > 1 ? labels.filter((l) => l.querySelector("input").value.trim()) : labels;
    for (const label of target) markField(label, err.message);
    if (target[0]) target[0].querySelector("input, select").focus();
  }

  // ------------------------------------------------------------ the live duplicate check
  function numbers() {
    return document.getElementById("reg-numbers").value.split(/[,，、;；\n]+/).map((n) => n.trim()).filter(Boolean);
  }
  let timer = null;
  let asked = 0;
  async function checkDuplicate() {
    const row = lead();
    const idType = row.querySelector("[name=id_type]").value;
    const idNumber = row.querySelector("[name=id_number]").value.trim();
    const idLabel = row.querySelector("label[data-field='证件号码']");
    const nums = numbers();
    idLabel.classList.remove("invalid");
    idLabel.querySelector(".field-error").textContent = "";
    // a resident ID is checked once it is complete (18 characters)
    if (!idNumber || !nums.length || (idType === "resident_id" && idNumber.length < 18)) { dup.classList.add("hidden"); return; }
    const ticket = ++asked;
    const q = new URLSearchParams({ id_type: idType, id_number: idNumber, numbers: nums.join(",") });
    try {
      const found = await VR.api("GET", "/cases/duplicates?" + q);
      if (ticket !== asked) return;
      if (found && found.case) {
        dup.replaceChildren("该事项已登记为信访件 ", VR.caseLink(found.case), "，将作为重复访关联");
        dup.classList.remove("hidden");
      } else {
        dup.classList.add("hidden");
      }
    } catch (err) {
      if (ticket !== asked) return;
      dup.classList.add("hidden");
      if (err.code === "invalid_id_number") markField(idLabel, err.message);
    }
  }
  function scheduleCheck(ev) {
    const t = ev.target;
    if (!(t.id === "reg-numbers" || (t.closest(".person") === lead() && ["id_type", "id_number"].includes(t.name)))) return;
    clearTimeout(timer);
    timer = setTimeout(checkDuplicate, 300);
  }
  form.addEventListener("input", scheduleCheck);
  form.addEventListener("change", scheduleCheck);

  // ------------------------------------------------------------ saving
  function body() {
    const rows = [...people.querySelectorAll(".person")];
    const petitioners = rows.map((r) => ({
      name: r.querySelector("[name=name]").value.trim(),
      id_type: r.querySelector("[name=id_type]").value,
      id_number: r.querySelector("[name=id_number]").value.trim(),
      phone: r.querySelector("[name=phone]").value.trim(),
    })).filter((p, i) => i === 0 || p.name || p.id_number || p.phone);
    const out = {
      channel: form.elements.channel.value || null,
      petitioners,
      people_count: Math.max(Number(count.value) || 1, petitioners.length),
      category: form.elements.category.value || null,
      summary: form.elements.summary.value.trim(),
      original_numbers: numbers(),
      original_court: form.elements.original_court.value.trim(),
    };
    const occurred = form.elements.occurred_at.value;
    if (occurred) out.occurred_at = VR.fromInput(occurred);
    const contact = form.elements.contact_summary.value.trim();
    if (contact) out.contact_summary = contact;
    return out;
  }

  let saved = null;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    const button = document.getElementById("reg-submit");
    button.disabled = true;
    try {
      const result = await VR.api("POST", "/cases", body());
      saved = result;
      showSaved(result);
    } catch (err) {
      showError(err);
    } finally {
      button.disabled = false;
    }
  });
  // Enter saves from any one-line field (the browser's own); Ctrl+Enter from the claim
  document.getElementById("reg-summary").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(); }
  });
  document.getElementById("add-person").addEventListener("click", () => addPerson().querySelector("input").focus());

  function showSaved(result) {
    const c = result.case;
    const open = document.getElementById("saved-open");
    if (c) {
      document.getElementById("saved-title").replaceChildren(
        result.linked ? "已作为重复访关联到信访件 " : "已登记信访件 ", VR.caseLink(c),
        `（${VR.label("case_category", c.category)}，${VR.casePeople(c)}，第 ${c.contact_count} 次来访来信）`);
      open.href = `/cases/${c.id}`;
      open.classList.remove("hidden");
    } else {
      // linked to another court's case, which this court may not see: only the contact
      document.getElementById("saved-title").replaceChildren(
        "已作为重复访关联到其他法院登记的信访件（本院无权查看），本次来访来信已登记，可上传本次材料");
      open.classList.add("hidden");
    }
    document.getElementById("upload-rows").replaceChildren();
    VR.say(document.getElementById("upload-msg"), "");
    document.getElementById("reg-card").classList.add("hidden");
    document.getElementById("saved-card").classList.remove("hidden");
    document.getElementById("upload-files").focus();
  }

  // ------------------------------------------------------------ materials (scanner files)
  // chosen in the picker, dropped on the form (a scanner's folder), or taken by a camera
  const uploadForm = document.getElementById("upload-form");
  uploadForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    await uploadFiles([...document.getElementById("upload-files").files]);
  });
  uploadForm.addEventListener("dragover", (ev) => { ev.preventDefault(); uploadForm.classList.add("dragging"); });
  uploadForm.addEventListener("dragleave", () => uploadForm.classList.remove("dragging"));
  uploadForm.addEventListener("drop", async (ev) => {
    ev.preventDefault();
    uploadForm.classList.remove("dragging");
    await uploadFiles([...((ev.dataTransfer && ev.dataTransfer.files) || [])]);
  });
  document.getElementById("upload-camera").addEventListener("change", async (ev) => {
    await uploadFiles([...ev.target.files]);
    ev.target.value = "";
  });

  async function uploadFiles(files) {
    const input = document.getElementById("upload-files");
    const out = document.getElementById("upload-msg");
    if (!files.length) { VR.say(out, "请选择要上传的文件", "error"); return; }
    const rows = document.getElementById("upload-rows");
    const failed = [];
    for (const file of files) {
      VR.say(out, `正在上传《${file.name}》…`);
      const data = new FormData();
      data.append("file", file, file.name);
      try {
        // the contact's own route: also for a case of another court this court may not see
        const m = await VR.upload(`/case-contacts/${saved.contact_id}/materials`, data);
        const tr = document.createElement("tr");
        for (const text of [m.filename, `${Math.max(1, Math.round(m.size / 1024))} KB`, m.sha256, VR.time(m.created_at)]) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.appendChild(td);
        }
        tr.lastElementChild.previousElementSibling.className = "hash";
        rows.appendChild(tr);
      } catch (err) {
        failed.push(`《${file.name}》：${VR.describe(err)}`);
      }
    }
    input.value = "";
    input.dispatchEvent(new Event("vr-cleared"));
    if (failed.length) VR.say(out, "未上传：" + failed.join("；"), "error");
    else VR.say(out, `已上传 ${files.length} 个文件`, "ok");
  }
  document.getElementById("next-case").addEventListener("click", () => {
    document.getElementById("saved-card").classList.add("hidden");
    document.getElementById("reg-card").classList.remove("hidden");
    reset();
  });

  reset();
  document.body.dataset.ready = "1";
})();
