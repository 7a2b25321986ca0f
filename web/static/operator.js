"use strict";
(async () => {
  await VR.start("登记与预约");
  VR.tabs(document.getElementById("tabs"));
  let petitioners = [];

  async function loadPetitioners(q) {
    const page = await VR.api("GET", "/petitioners?limit=200" + (q ? "&q=" + encodeURIComponent(q) : ""));
    if (!q) petitioners = page.items;
    VR.fillTable(document.getElementById("petitioner-rows"), page.items, [
      (p) => p.name, (p) => VR.ID_TYPES[p.id_type], (p) => p.id_number_masked, (p) => p.phone_masked,
      (p) => VR.time(p.created_at),
    ], "暂无信访人");
    if (!q) {
      const sel = document.getElementById("petition-petitioner");
      sel.replaceChildren();
      for (const p of petitioners) sel.add(new Option(`${p.name}（${p.id_number_masked}）`, p.id));
    }
  }

  async function loadPetitions() {
    const page = await VR.api("GET", "/petitions?limit=200");
    const name = (id) => (petitioners.find((p) => p.id === id) || {}).name || "";
    VR.fillTable(document.getElementById("petition-rows"), page.items, [
      (p) => p.number, (p) => p.category, (p) => name(p.petitioner_id), (p) => p.summary,
      (p) => VR.time(p.created_at),
    ], "暂无信访事项");
  }

  async function loadRooms() {
    const rooms = await VR.api("GET", "/rooms");
    VR.fillTable(document.getElementById("room-rows"), rooms, [
      (r) => r.name, (r) => r.location, (r) => (r.active ? "启用" : "停用"),
    ], "本院尚无接访室");
  }

  const pform = document.getElementById("petitioner-form");
  pform.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = document.getElementById("petitioner-msg");
    try {
      const p = await VR.api("POST", "/petitioners", VR.formData(pform));
      VR.say(msg, `已登记：${p.name}（${p.id_number_masked}）`, "ok");
      pform.reset();
      await loadPetitioners();
    } catch (err) { VR.say(msg, VR.describe(err), "error"); }
  });
  const tform = document.getElementById("petition-form");
  tform.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = document.getElementById("petition-msg");
    try {
      const p = await VR.api("POST", "/petitions", VR.formData(tform));
      VR.say(msg, `已登记事项：${p.number}`, "ok");
      tform.reset();
      await loadPetitions();
    } catch (err) { VR.say(msg, VR.describe(err), "error"); }
  });
  const sform = document.getElementById("search-form");
  sform.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    await loadPetitioners(sform.elements.q.value.trim());
  });
  await loadPetitioners();
  await Promise.all([loadPetitions(), loadRooms()]);
  document.body.dataset.ready = "1";
})();
