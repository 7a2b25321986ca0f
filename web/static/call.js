// The live visit in the browser: /visit signaling, one publishing and one subscribing peer
// connection with the relay, the lobby for guests, admit/refuse/invite/end for the judge.
// A video supervision meeting (the server gives its host and invitees the roles host and
// attendee) has no lobby: everyone is shown in a gallery, the active speaker highlighted.
// Two more modes of the staff page: an on-site reception (the operator at a window hosts a
// call with no remote party: self view, recording notice, end button), and watching (监看,
// ?watch=1: an observer of a supervising court who only receives).
"use strict";
(() => {
  const mode = document.body.dataset.mode; // "guest" or "staff"
  const $ = (id) => document.getElementById(id);
  const say = (id, text, kind) => { const el = $(id); el.textContent = text || ""; el.className = "msg" + (kind ? " " + kind : ""); };
  const show = (id, on) => $(id).classList.toggle("hidden", !on);
  const params = new URLSearchParams(location.search);
  let visitId = mode === "staff" ? location.pathname.split("/").pop() : params.get("visit");
  const TZ = document.body.dataset.timezone || undefined; // the court's zone, from the server
  // role labels come from the server (config/vocabulary.py, /vocabulary.js)
  const ROLE = (window.VOCABULARY || {}).participant_role || {};
  // what went wrong, in words a petitioner reads: the browser's own messages are English
  const DEVICE_ERRORS = {
    NotAllowedError: "浏览器未允许使用摄像头或麦克风，请在地址栏旁的权限设置中允许",
    NotFoundError: "未找到摄像头或麦克风，请检查设备连接",
    NotReadableError: "摄像头或麦克风正被其他程序占用",
    OverconstrainedError: "摄像头不支持所需的画面设置",
    SecurityError: "当前网页不安全，无法使用摄像头，请使用 https 地址打开",
    AbortError: "设备启动被中断，请重试",
  };
  function reason(err) {
    if (err && DEVICE_ERRORS[err.name]) return DEVICE_ERRORS[err.name];
    const text = err && err.message ? String(err.message) : "";
    return /[\u4e00-\u9fff]/.test(text) ? text : "网络或设备异常，请稍后重试";
  }
  const socket = window.io("/visit", { transports: ["websocket", "polling"], reconnectionDelay: 500, reconnectionDelayMax: 2000 });
  // Every request is answered: by the server, or with an error when the connection drops
  // before it answers (or it stays silent CALL_MS). A request left waiting for good would
  // hold up all that queues behind it (one subscription negotiation at a time).
  const CALL_MS = 30000;
  const NO_ANSWER = { ok: false, error: { code: "no_answer", message: "与服务器的连接中断，请求未完成" } };
  const call = (event, data) => new Promise((resolve) => {
    socket.timeout(CALL_MS).emit(event, data || {}, (err, answer) => resolve(err ? NO_ANSWER : answer));
  });
  // The rejoin token is kept on this terminal for the life of the visit: a crashed browser or
  // a new tab gets back in without a new code (the newest connection replaces the older).
  const rejoinKey = () => "vr-rejoin-" + visitId;
  const keepRejoin = (token) => { if (token) localStorage.setItem(rejoinKey(), token); };
  let me = null;
  const watching = mode === "staff" && params.get("watch") === "1";
  let observing = false; // joined as an observer: nothing is published
  let onsite = false; // an on-site reception at this window: no remote party
  let local = null;
  let publisher = null;
  let subscriber = null;
  let meeting = false; // a video supervision meeting, not a visit
  const LEADS = ["judge", "host"]; // who leads the room: ends it, writes its notes
  window.vrCall = { levels: () => levels(), get publisher() { return publisher; }, get subscriber() { return subscriber; }, get me() { return me; }, get connected() { return socket.connected; } };

  // STUN/TURN servers from the join answer (TURN credentials issued to this participant)
  const rtcConfig = () => ({ iceServers: (me && me.ice_servers) || [], bundlePolicy: "max-bundle" });

  async function gathered(pc) {
    if (pc.iceGatheringState === "complete") return;
    await new Promise((resolve) => {
      const check = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", check); resolve(); } };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(resolve, 5000); // a closed network may never finish gathering every interface
    });
  }

  let opening = null; // the camera and microphone being opened (one request at a time)
  async function devices() {
    if (local) return local;
    if (!opening) {
      opening = navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
        video: { width: 640, height: 480, facingMode: "user" }, // a phone's front camera
      }).then((stream) => {
        if (over) { for (const t of stream.getTracks()) t.stop(); throw new Error("接访已结束"); }
        local = stream;
        offerCameraSwitch();
        return stream;
      }).finally(() => { opening = null; });
    }
    return opening;
  }

  // --- a phone has several cameras: 切换摄像头 goes to the next one
  async function cameras() {
    return (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
  }
  async function offerCameraSwitch() {
    if ($("switch-camera")) show("switch-camera", (await cameras()).length > 1);
  }
  let switching = false; // one switch at a time: a double tap switches once
  async function switchCamera() {
    if (switching) return;
    switching = true;
    $("switch-camera").disabled = true;
    try { await switchToNextCamera(); } finally { switching = false; $("switch-camera").disabled = false; }
  }
  async function switchToNextCamera() {
    const old = local && local.getVideoTracks()[0];
    if (!old) return;
    const cams = await cameras();
    const at = cams.findIndex((d) => d.deviceId === old.getSettings().deviceId);
    const next = cams[(at + 1) % cams.length];
    old.stop(); // a phone opens one camera at a time
    const open = (id) => navigator.mediaDevices.getUserMedia({ video: { deviceId: { exact: id }, width: 640, height: 480 } });
    let stream;
    try { stream = await open(next.deviceId); } catch (err) { stream = await open(old.getSettings().deviceId); say("call-msg", "无法切换摄像头：" + reason(err), "error"); }
    const track = stream.getVideoTracks()[0];
    track.enabled = old.enabled;
    local.removeTrack(old);
    local.addTrack(track);
    // published anew (as after a network change): the relay forwards the other camera's
    // stream from its first key frame, which a swapped track on the old connection does not get
    if (publisher) await startMedia();
  }

  async function checkDevices(asked = false) {
    if (!$("check-msg")) return;
    try {
      const stream = await devices();
      $("preview-video").srcObject = stream;
      const names = stream.getTracks().map((t) => (t.kind === "video" ? "摄像头" : "麦克风") + "：" + (t.label || "可用"));
      say("check-msg", "设备正常。" + names.join("；"), "ok");
      // asked for in the call without sending (the camera could not open): send now
      if (asked && inside && !publisher && !observing && !over) await startMedia();
    } catch (err) {
      say("check-msg", "无法使用摄像头或麦克风：" + reason(err), "error");
    }
  }

  // The camera is sent as two simulcast layers, lowest first: half size for thin links, and
  // the full picture (what the recording keeps). The relay gives each party the best layer
  // its link carries.
  const CAMERA_LAYERS = [
    { rid: "l", scaleResolutionDownBy: 2, maxBitrate: 150000 },
    { rid: "f", scaleResolutionDownBy: 1 },
  ];

  async function startMedia() {
    await devices();
    $("self-video").srcObject = local;
    if ($("check-step")) show("check-step", false);
    if (publisher) publisher.close();
    const pc = new RTCPeerConnection(rtcConfig());
    publisher = pc;
    for (const track of local.getTracks()) {
      const init = { direction: "sendonly" };
      if (track.kind === "video") init.sendEncodings = CAMERA_LAYERS;
      pc.addTransceiver(track, init);
    }
    watch(pc, () => startMedia().catch((err) => say("call-msg", reason(err), "error")));
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    // a newer publish (camera switched, network back) replaced this one meanwhile: it is
    // not sent (the relay would keep the later-arriving), and an answer already asked for is
    // for a connection that is gone
    if (publisher !== pc) return;
    const answer = await call("publish", { type: "offer", sdp: pc.localDescription.sdp });
    if (publisher !== pc) return;
    if (!answer.ok) throw new Error(answer.error.message);
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    await subscribe();
  }

  const SOURCE = { camera: "", microphone: "", evidence: "（证据）" };
  let subscribing = Promise.resolve();
  // One subscription negotiation at a time (the relay offers, this page answers): a newer
  // tracks_changed waits for the current one. A track published or unpublished is a re-offer
  // on the existing connection (media already flowing goes on); `restart` asks for a new
  // connection (after it failed: aiortc has no ICE restart).
  function subscribe(restart) {
    const run = () => doSubscribe(Boolean(restart));
    subscribing = subscribing.then(run, run);
    return subscribing;
  }

  // --- how tall each remote picture is shown (view): the relay sends no larger a simulcast
  // layer than its tile needs, so a meeting's gallery of small tiles gets the half-size ones
  let viewSent = "";
  let viewTimer = null;
  const tileSizes = new ResizeObserver(() => reportView());
  function reportView() {
    clearTimeout(viewTimer);
    viewTimer = setTimeout(async () => {
      if (!subscriber || !socket.connected) return;
      const heights = {};
      for (const video of document.querySelectorAll(".tile.remote[data-mid] video")) {
        heights[video.parentElement.dataset.mid] = Math.round(video.clientHeight * (window.devicePixelRatio || 1));
      }
      const text = JSON.stringify(heights);
      if (text === viewSent || text === "{}") return;
      const answer = await call("view", { heights });
      if (answer.ok) viewSent = text;
    }, 250);
  }

  // a remote tile (or audio) goes; its size is no longer watched
  function removeRemote(el) {
    const video = el.querySelector("video");
    if (video) tileSizes.unobserve(video);
    el.remove();
  }

  function dropSubscriber() {
    if (subscriber) subscriber.close();
    subscriber = null;
    viewSent = ""; // a new connection's pictures start without a size at the relay
    audioOf.clear();
    for (const el of document.querySelectorAll(".remote")) removeRemote(el);
  }

  // A remote track becomes a tile (video) or a hidden <audio>, named for its media section.
  function attach(pc, ev) {
    trackArrivedAt = Date.now();
    const t = (pc.offered && pc.offered.get(ev.transceiver.mid)) || { source: ev.track.kind === "audio" ? "microphone" : "camera" };
    const mid = ev.transceiver.mid || "";
    for (const old of document.querySelectorAll(`.remote[data-mid="${CSS.escape(mid)}"]`)) removeRemote(old);
    if (ev.track.kind === "audio") audioOf.set(ev.receiver, t.participant_id || "");
    const stream = new MediaStream([ev.track]);
    if (ev.track.kind === "video") {
      const tile = document.createElement("div");
      tile.className = "tile remote" + (t.source === "evidence" ? " evidence" : "");
      tile.dataset.participant = t.participant_id || "";
      tile.dataset.source = t.source;
      tile.dataset.role = t.role || "";
      tile.dataset.mid = mid;
      const video = document.createElement("video");
      video.autoplay = true; video.playsInline = true; video.muted = true;
      video.srcObject = stream;
      const label = document.createElement("span");
      label.textContent = `${ROLE[t.role] || ""} ${t.name || ""}${SOURCE[t.source] || ""}`.trim();
      tile.append(video, label);
      if (t.source === "evidence") $("videos").prepend(tile); else $("videos").appendChild(tile);
      tileSizes.observe(video);
      markPoorTiles();
    } else {
      const audio = document.createElement("audio");
      audio.autoplay = true; audio.srcObject = stream; audio.className = "remote hidden";
      audio.dataset.participant = t.participant_id || "";
      audio.dataset.mid = mid;
      $("videos").appendChild(audio);
    }
  }

  // After a re-offer: the tiles of media sections no longer offered (their tracks are gone)
  // are removed; the others stay as they are.
  function prune(pc) {
    for (const el of document.querySelectorAll(".remote[data-mid]")) {
      if (!pc.offered.has(el.dataset.mid)) removeRemote(el);
    }
    for (const transceiver of pc.getTransceivers()) {
      if (!pc.offered.has(transceiver.mid)) audioOf.delete(transceiver.receiver);
    }
  }

  async function doSubscribe(restart) {
    const renew = restart || !subscriber || subscriber.connectionState === "failed" || subscriber.signalingState === "closed";
    const offer = await call("subscribe", renew ? { restart: true } : {});
    if (!offer.ok) { say("call-msg", offer.error.message, "error"); return; }
    if (!offer.sdp) { dropSubscriber(); return; } // nobody publishes yet: tracks_changed will tell
    let pc = subscriber;
    if (!offer.renegotiation || !pc) {
      dropSubscriber();
      pc = new RTCPeerConnection(rtcConfig());
      subscriber = pc;
      pc.ontrack = (ev) => attach(pc, ev);
      watch(pc, () => subscribe(true));
    }
    pc.offered = new Map(offer.tracks.map((t) => [t.mid, t]));
    try {
      await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
      await pc.setLocalDescription(await pc.createAnswer());
    } catch (err) {
      if (!offer.renegotiation) throw err;
      return doSubscribe(true); // the existing connection cannot take it: a new one
    }
    prune(pc);
    await gathered(pc);
    const done = await call("subscribe_answer", { type: "answer", sdp: pc.localDescription.sdp });
    if (!done.ok) say("call-msg", done.error.message, "error");
    reportView();
  }

  // A connection that fails (network change, relay restart) is replaced by a new one: the
  // relay does not restart ICE on an existing connection, so "ICE restart" renegotiates anew.
  function watch(pc, restart) {
    let timer = null;
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed" || pc.connectionState === "disconnected") {
        clearTimeout(timer);
        timer = setTimeout(() => {
          if (pc.signalingState === "closed" || pc.connectionState === "connected") return;
          if (rejoining || !socket.connected) return; // the rejoin negotiates everything anew
          say("call-msg", "网络中断，正在重新连接……", "error");
          restart();
        }, pc.connectionState === "failed" ? 0 : 5000);
      } else if (pc.connectionState === "connected") {
        clearTimeout(timer);
      }
    });
  }

  // --- evidence: screen share, a document camera, or an image/scan shown from a file
  let evidence = null; // { pc, stream, timer }
  async function evidenceStream() {
    const kind = $("evidence-source").value;
    if (kind === "screen") return navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    if (kind === "camera") {
      const cams = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
      const current = local && local.getVideoTracks()[0] && local.getVideoTracks()[0].getSettings().deviceId;
      const other = cams.find((d) => d.deviceId !== current) || cams[0];
      return navigator.mediaDevices.getUserMedia({ video: { deviceId: other ? { exact: other.deviceId } : undefined, width: 1280, height: 720 } });
    }
    const file = $("evidence-file").files[0];
    if (!file) throw new Error("请先选择图片文件");
    const bitmap = await createImageBitmap(file);
    const canvas = document.createElement("canvas");
    canvas.width = 1280; canvas.height = 720;
    const g = canvas.getContext("2d");
    const draw = () => {
      g.fillStyle = "#fff"; g.fillRect(0, 0, canvas.width, canvas.height);
      const k = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
      const w = bitmap.width * k, h = bitmap.height * k;
      g.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    };
    draw();
    const stream = canvas.captureStream(10);
    stream.redraw = setInterval(draw, 200); // a still image still needs frames for late joiners
    return stream;
  }

  // (Re)publish the evidence being shown on a new connection: after choosing it, after its
  // connection failed, and after a reconnect (the server forgot every stream of ours).
  async function publishEvidence() {
    const shown = evidence;
    if (!shown) return;
    if (shown.pc) shown.pc.close();
    const pc = new RTCPeerConnection(rtcConfig());
    shown.pc = pc;
    for (const track of shown.stream.getVideoTracks()) pc.addTransceiver(track, { direction: "sendonly" });
    watch(pc, () => publishEvidence().catch((err) => { if (err !== SUPERSEDED) say("evidence-msg", "无法出示证据：" + reason(err), "error"); }));
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    if (evidence !== shown || shown.pc !== pc) throw SUPERSEDED; // stopped or replaced meanwhile
    const answer = await call("publish", { type: "offer", sdp: pc.localDescription.sdp, stream: "evidence" });
    if (evidence !== shown || shown.pc !== pc) {
      // stopped while the relay answered: its unpublish came first, so it is said again
      if (!evidence && answer.ok) await call("unpublish", { stream: "evidence" });
      throw SUPERSEDED;
    }
    if (!answer.ok) throw new Error(answer.error.message);
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    say("evidence-msg", "正在向各方出示证据", "ok");
  }

  // an evidence publish that a stop or a newer choice made pointless: nothing to report
  const SUPERSEDED = new Error("superseded");
  let choosing = false; // one choice of evidence at a time (a double click shows it once)
  async function showEvidence() {
    if (choosing) return;
    choosing = true;
    $("evidence-show").disabled = true;
    try { await showChosenEvidence(); } finally { choosing = false; $("evidence-show").disabled = false; }
  }
  async function showChosenEvidence() {
    // the evidence shown now stays until its replacement is ready (a cancelled screen
    // picker leaves it as it was)
    const kind = $("evidence-source").value;
    const replacing = Boolean(evidence);
    if (kind === "camera") await stopEvidence(false); // a phone opens one camera at a time
    let stream;
    try {
      stream = await evidenceStream();
    } catch (err) {
      if (replacing && !evidence) await call("unpublish", { stream: "evidence" }); // stopped above
      throw err;
    }
    await stopEvidence(false);
    for (const track of stream.getVideoTracks()) track.onended = () => stopEvidence(true); // the browser's own "stop sharing"
    const shown = { pc: null, stream };
    evidence = shown;
    try {
      await publishEvidence();
    } catch (err) {
      if (err === SUPERSEDED) return;
      if (evidence === shown) await stopEvidence(true); // the others no longer see the old one
      throw err;
    }
    if (evidence !== shown) return;
    $("evidence-self").srcObject = stream;
    show("evidence-self-tile", true);
    $("evidence-show").textContent = "更换证据";
    show("evidence-stop", true);
  }

  async function stopEvidence(tell) {
    if (!evidence) return;
    const { pc, stream } = evidence;
    evidence = null;
    clearInterval(stream.redraw);
    for (const t of stream.getTracks()) t.stop();
    if (pc) pc.close();
    show("evidence-self-tile", false);
    $("evidence-show").textContent = "出示证据";
    show("evidence-stop", false);
    if (tell) { await call("unpublish", { stream: "evidence" }); say("evidence-msg", "已停止出示证据"); }
  }

  // --- the active speaker (a meeting's gallery): the loudest audio above a floor, from the
  // relay's receivers (RTP audio levels) and our own microphone (the sender's media source)
  const audioOf = new Map(); // RTCRtpReceiver → participant id
  const SPEAKING_LEVEL = 0.02; // audioLevel is linear, 0..1
  let speaker = "";
  let quietSince = 0;
  async function levels() {
    const out = [];
    for (const [receiver, pid] of audioOf) {
      // what the relay's packets say (RTP audio level extension), else what this browser
      // measures of the audio it decodes; a muted microphone sends silence (level 0)
      let level = 0;
      for (const s of receiver.getSynchronizationSources()) level = Math.max(level, s.audioLevel || 0);
      (await receiver.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "audio") level = Math.max(level, s.audioLevel || 0);
      });
      out.push([pid, level]);
    }
    if (publisher && me && local && local.getAudioTracks().some((t) => t.enabled)) {
      (await publisher.getStats()).forEach((s) => {
        if (s.type === "media-source" && s.kind === "audio") out.push([me.participant_id, s.audioLevel || 0]);
      });
    }
    return out;
  }
  async function markSpeaker() {
    if (!meeting || over) return;
    const loud = (await levels()).filter(([, level]) => level >= SPEAKING_LEVEL).sort((a, b) => b[1] - a[1]);
    let next = speaker;
    if (loud.length) { next = loud[0][0]; quietSince = 0; }
    else if (!quietSince) quietSince = Date.now();
    else if (Date.now() - quietSince > 1500) next = ""; // silence: nobody is speaking
    speaker = next;
    document.body.dataset.speaker = speaker;
    for (const tile of document.querySelectorAll(".tile[data-participant]")) {
      tile.classList.toggle("speaking", Boolean(speaker) && tile.dataset.participant === speaker && !tile.classList.contains("evidence"));
    }
  }
  setInterval(() => { markSpeaker().catch(() => {}); }, 300);

  const present = new Map(); // participant id → participant, everyone in the call
  const poorLinks = new Set(); // participants whose downlink the relay finds too thin for video
  function drawPresent() {
    const all = [...present.values()];
    const parties = all.filter((p) => p.role !== "observer");
    const watchers = all.filter((p) => p.role === "observer");
    say("call-msg", "在场：" + parties.map((p) => `${ROLE[p.role]} ${p.name}` + (poorLinks.has(p.participant_id) ? "（网络较差）" : "")).join("、"));
    // everyone in the room sees who watches it (监看), the petitioner's page included
    $("watch-state").textContent = watchers.map((p) => `${ROLE.observer}：${p.name}（${p.court}）`).join("；");
    show("watch-state", watchers.length > 0);
  }
  function inCall(participants) {
    if (mode === "guest") { show("code-step", false); show("lobby-step", false); }
    show("call-step", true);
    inside = true;
    drawRecording();
    present.clear();
    for (const p of participants) present.set(p.participant_id, p);
    // a poor link of someone no longer here (this page's own before a rejoin included)
    for (const id of [...poorLinks]) if (!present.has(id)) poorLinks.delete(id);
    drawPresent();
    // #judge-state after a reconnect: the judge may have left (or come back) meanwhile
    // (only for a judge who was here: one who has not come yet has not left)
    if (judgeHere()) judgeSeen = true;
    show("judge-state", judgeSeen && !judgeHere() && !onsite && !LEADS.includes(me.role));
    if (observing) { subscribe(); return; } // receives only: no camera, no microphone
    startMedia().catch((err) => {
      say("call-msg", "无法开启摄像头或麦克风：" + reason(err), "error");
      // the others are still seen and heard: their media does not wait for ours
      subscribe().catch((e) => say("call-msg", reason(e), "error"));
    });
    // entering again after a reconnect: the evidence being shown is shown again
    if (evidence) publishEvidence().catch((err) => { if (err !== SUPERSEDED) say("evidence-msg", "无法重新出示证据：" + reason(err), "error"); });
  }

  // 准许进入 / 拒绝: one request at a time, and a refusal said (the visit given to another
  // judge, the person gone, the visit over)
  function lobbyAction(button, event, body) {
    return async () => {
      button.disabled = true;
      try {
        const answer = await call(event, body);
        if (!answer.ok) say("call-msg", answer.error.message, "error");
      } finally {
        button.disabled = false;
      }
    };
  }
  function drawLobby(waiting) {
    const rows = $("lobby-rows");
    if (!rows) return;
    rows.replaceChildren();
    for (const p of waiting) {
      const tr = rows.insertRow();
      tr.insertCell().textContent = ROLE[p.role];
      tr.insertCell().textContent = p.name;
      const cell = tr.insertCell();
      const admit = document.createElement("button");
      admit.textContent = "准许进入"; admit.type = "button";
      admit.onclick = lobbyAction(admit, "admit", { participant_id: p.participant_id });
      const refuse = document.createElement("button");
      refuse.textContent = "拒绝"; refuse.type = "button"; refuse.className = "secondary";
      refuse.onclick = lobbyAction(refuse, "refuse", { participant_id: p.participant_id, reason: "" });
      cell.append(admit, refuse);
    }
    if (!waiting.length) { const tr = rows.insertRow(); const td = tr.insertCell(); td.colSpan = 3; td.textContent = "暂无候场人员"; td.className = "empty"; }
  }

  // --- the network-quality hint, from the connections' own statistics every 2 s: the round
  // trip to the relay, the packets lost on the way up and down, the bitrate the browser
  // estimates it can send.
  const QUALITY = { good: "网络良好", fair: "网络一般", poor: "网络较差" };
  function quality({ rtt, loss, bitrate }) {
    if (rtt > 0.6 || loss > 0.08 || bitrate < 100e3) return "poor";
    if (rtt > 0.25 || loss > 0.02 || bitrate < 250e3) return "fair";
    return "good";
  }
  let counted = { lost: 0, received: 0, upLost: 0, upSent: 0 };
  let lastSample = null;
  // On a downlink that loses packets, a frame repaired by retransmission comes a round trip
  // late, and one whose last packet was lost a whole frame late (the loss shows only when
  // the next frame begins): a receiver playing out at once has moved on to the next frame
  // and gives the repaired one up. While the downlink loses packets, and for a while after,
  // the receivers keep REPAIR_HOLD_MS of media in hand.
  // A stream's first packets, dropped while the browser sets it up, count as lost: losses in
  // the first REPAIR_GRACE_MS after a track arrives are no sign of the link.
  const REPAIR_HOLD_MS = 100, REPAIR_LOSS = 0.01, REPAIR_CALM_MS = 30000, REPAIR_GRACE_MS = 5000;
  let lossyUntil = 0, trackArrivedAt = 0;
  function holdForRepairs(downLoss) {
    const now = Date.now();
    if (downLoss >= REPAIR_LOSS && now - trackArrivedAt > REPAIR_GRACE_MS) lossyUntil = now + REPAIR_CALM_MS;
    const target = now < lossyUntil ? REPAIR_HOLD_MS : null;
    if (!subscriber) return;
    for (const r of subscriber.getReceivers()) {
      if ("jitterBufferTarget" in r && r.jitterBufferTarget !== target) r.jitterBufferTarget = target;
    }
  }
  async function measure() {
    const pc = observing ? subscriber : publisher; // an observer sends nothing: no bitrate to weigh
    if (!pc || pc.connectionState !== "connected") return { rtt: Infinity, loss: 1, bitrate: 0 };
    let rtt = null, bitrate = null, upLost = 0, upSent = 0, lost = 0, received = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
        if (s.currentRoundTripTime !== undefined) rtt = s.currentRoundTripTime;
        if (s.availableOutgoingBitrate !== undefined && pc === publisher) bitrate = s.availableOutgoingBitrate;
      }
      if (s.type === "remote-inbound-rtp") upLost += s.packetsLost || 0;
      if (s.type === "outbound-rtp") upSent += s.packetsSent || 0;
    });
    if (subscriber) (await subscriber.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp") { lost += s.packetsLost || 0; received += s.packetsReceived || 0; }
    });
    const dl = lost - counted.lost, dr = received - counted.received;
    const ul = upLost - counted.upLost, us = upSent - counted.upSent;
    counted = { lost, received, upLost, upSent };
    const downLoss = dl > 0 && dr >= 0 ? dl / (dl + dr) : 0;
    // the relay's receiver reports, weighed by the packets sent since the last sample: the
    // largest fractionLost of the streams (audio, each camera layer), each over about a
    // second, overstated a steady 5 % loss, and a petitioner receiving 29 fps read 网络较差
    const upLoss = ul > 0 && us > 0 ? Math.min(1, ul / us) : 0;
    holdForRepairs(downLoss);
    return { rtt: rtt ?? 0, loss: Math.max(upLoss, downLoss), bitrate: bitrate ?? Infinity };
  }
  async function drawNetwork() {
    const el = $("net-quality");
    if (!el || !inside || over) return;
    const stats = await measure();
    // a thin downlink elsewhere may hold our sending down (the relay passes its REMB on to a
    // single-layer stream, e.g. evidence): not ours
    if ([...poorLinks].some((p) => !me || p !== me.participant_id)) stats.bitrate = Infinity;
    // one bad sample (a burst, a busy moment) does not flip the hint: the better of the last two
    const sampled = quality(stats), levels = Object.keys(QUALITY);
    let level = levels[Math.min(levels.indexOf(sampled), levels.indexOf(lastSample || sampled))];
    lastSample = sampled;
    const thin = Boolean(me && poorLinks.has(me.participant_id)); // the relay's word on our downlink
    if (thin) level = "poor";
    el.dataset.level = level;
    el.textContent = QUALITY[level];
    el.title = Number.isFinite(stats.rtt) ? `往返时延 ${Math.round(stats.rtt * 1000)} 毫秒，丢包率 ${(stats.loss * 100).toFixed(1)}%` + (Number.isFinite(stats.bitrate) ? `，可用上行带宽 ${Math.round(stats.bitrate / 1000)} kbps` : "") : "正在连接";
    if (thin) el.title = "下行带宽不足，画面可能卡顿或停顿；" + el.title;
    show("net-quality", true);
    window.vrCall.network = { level, thin, ...stats };
  }
  // The relay says whose downlink is too thin for video (网络较差): that participant's own
  // hint says so at once, and everyone sees it beside the name and on the tile.
  function markPoorTiles() {
    for (const tile of document.querySelectorAll(".tile.remote[data-participant]")) {
      const on = poorLinks.has(tile.dataset.participant) && tile.dataset.source !== "evidence";
      tile.classList.toggle("poor-network", on);
      let badge = tile.querySelector(".net-badge");
      if (on && !badge) {
        badge = document.createElement("b"); badge.className = "net-badge"; badge.textContent = "网络较差";
        tile.appendChild(badge);
      } else if (!on && badge) badge.remove();
    }
  }
  function networkNotice({ participant_id: who, poor }) {
    if (poor) poorLinks.add(who); else poorLinks.delete(who);
    markPoorTiles();
    drawPresent();
    if (me && who === me.participant_id) { lastSample = null; drawNetwork().catch(() => {}); }
  }
  setInterval(() => drawNetwork().catch(() => {}), 2000);
  window.vrCall.quality = quality;

  // The visit is over for this page: only that is shown, with a link back.
  let over = false;
  // the server closed this page's connection (the call opened again in another tab or on
  // another device, the login ended, a flood): it does not come back by itself, so the
  // page stops its camera and connections and says so; the rejoin token stays for a reload
  const CLOSED_HERE = "本页已停止：本次接访可能已在其他页面或设备上打开，或登录已失效。如需继续，请刷新本页。";
  function ended(text, keepToken = false) {
    over = true;
    if (!keepToken) localStorage.removeItem(rejoinKey());
    stopEvidence(false);
    for (const pc of [publisher, subscriber]) if (pc) pc.close();
    if (local) for (const t of local.getTracks()) t.stop();
    for (const id of ["call-step", "lobby-step", "code-step", "check-step", "lobby-card", "notes-card", "rec-state", "conn-state", "judge-state", "watch-state", "enter-step"]) if ($(id)) show(id, false);
    $("ended-text").textContent = meeting ? text.replaceAll("接访", "约谈") : text;
    show("ended-step", true);
  }

  async function join(extra) {
    const answer = await call("join", { v: 1, visit_id: visitId, ...extra, ...(watching ? { watch: true } : {}) });
    if (!answer.ok && answer.error.code === "wrong_node" && answer.error.details) {
      // the visit's room lives on another node: go there (the code was not spent here)
      const carry = extra.code ? "#code=" + encodeURIComponent(extra.code)
        : extra.rejoin ? "#rejoin=" + encodeURIComponent(extra.rejoin) : "";
      say(mode === "guest" && !extra.rejoin ? "code-msg" : "call-msg", answer.error.message);
      location.href = answer.error.details.node + location.pathname + location.search + carry;
      return answer;
    }
    if (!answer.ok && answer.error.code === "visit_closed") { ended(answer.error.message); return answer; }
    if (!answer.ok) return answer;
    me = answer;
    if ($("enter-step")) { show("enter-step", false); delete document.body.dataset.waiting; }
    $("who").textContent = ROLE[answer.role];
    if (answer.rejoin) keepRejoin(answer.rejoin);
    for (const el of document.querySelectorAll(".judge-only")) el.classList.toggle("hidden", !LEADS.includes(answer.role));
    observing = answer.role === "observer";
    onsite = Boolean(answer.host) && answer.role === "operator"; // an operator hosts only on-site
    if ($("end")) { show("end", Boolean(answer.host)); $("end").textContent = onsite ? "结束接待" : "结束接访"; }
    if (observing) {
      $("who").textContent = ROLE.observer + "（只接收，不发送音视频）";
      for (const id of ["mute", "camera", "evidence-form", "evidence-msg"]) if ($(id)) show(id, false);
      for (const el of document.querySelectorAll(".tile.self")) el.remove();
    }
    document.body.dataset.onsite = onsite ? "1" : "";
    meeting = ["host", "attendee"].includes(answer.role);
    if (meeting) enterMeeting(); // no lobby: the host and the invitees enter directly
    if (answer.lobby && !meeting) drawLobby(answer.lobby);
    confirmed(recordingOf(answer));
    if (answer.admitted) inCall(answer.participants);
    else { show("code-step", false); show("lobby-step", true); window.scrollTo(0, 0); checkDevices(); }
    document.body.dataset.joined = "1";
    return answer;
  }

  // A meeting: its own words, the gallery, our own tile named for the active speaker mark.
  function enterMeeting() {
    document.body.dataset.kind = "meeting";
    document.title = "视频约谈 · 远程视频接访";
    document.querySelector("header.top h1").textContent = "远程视频接访 · 视频约谈";
    $("videos").classList.add("gallery");
    $("videos").querySelector(".tile.self:not(.evidence)").dataset.participant = me.participant_id;
    $("end").textContent = "结束约谈";
    $("outcome-title").textContent = "约谈结果";
    show("lobby-card", false);
    $("judge-state").textContent = "主持人已离开，请稍候；主持人返回后将继续约谈";
    const notes = $("notes-card").querySelector("h2");
    if (notes) notes.textContent = "约谈纪要（约谈结束后记入各信访件）";
  }

  // --- what the server confirmed, and whether it can still be heard. The server pings every
  // second; a page that hears nothing for SILENT_MS says so (within 2 s of the loss) and shows
  // no recording state until the server confirms it again: on the same connection when the
  // pings resume, or by the join answer after a reconnect. socket.io reconnects by itself.
  const SILENT_MS = 1500;
  let recording = null; // the last recording state the server confirmed
  let heard = 0; // when the server was last heard (0: not connected yet)
  let lost = false; // the page cannot hear the server
  let rejoining = false; // the connection dropped: the server forgot us until we join again
  let inside = false; // in the call (not in the lobby)

  function drawRecording() {
    const el = $("rec-state");
    if (!el) return;
    const on = Boolean(recording) && inside && !lost && !over; // the lobby has its own notice
    show("rec-state", on);
    if (!on) return;
    el.classList.toggle("failed", recording.ok === false);
    el.textContent = recording.ok === false ? `录像异常：${recording.message}（请立即通知技术人员）`
      : onsite ? "● 本次接待全程录音录像" : "● 正在录音录像";
  }
  function recordingState(data) { recording = data && data.recording ? data : null; drawRecording(); }
  // the recording's state as a join answer or an admission tells it (a write failure stays)
  const recordingOf = (answer) => answer.recording
    ? { recording: true, ok: answer.recording_ok !== false, message: answer.recording_message || "" } : null;

  const LOST = "与服务器的连接中断，正在重新连接……";
  const RESTARTING = "服务器正在重启，恢复后将自动重新连接……";
  let restarting = false; // the server said it stops: the banner says so until we are back
  function connectionLost(text) {
    if (over) return;
    lost = true;
    $("conn-state").textContent = restarting ? RESTARTING : text;
    show("conn-state", true);
    drawRecording();
    if (evidence) say("evidence-msg", "连接中断：证据暂未出示，恢复后将自动重新出示", "error");
  }
  function connectionBack() { lost = false; show("conn-state", false); drawRecording(); }
  function confirmed(state) { rejoining = false; restarting = false; recordingState(state); connectionBack(); }

  socket.io.on("ping", () => { heard = Date.now(); if (lost && !rejoining && socket.connected) connectionBack(); });
  setInterval(() => {
    if (heard && !lost && Date.now() - heard > SILENT_MS) connectionLost(LOST);
  }, 200);
  socket.on("disconnect", (why) => {
    if (why === "io server disconnect" && !restarting) { if (!over) ended(CLOSED_HERE, true); return; }
    rejoining = true; recording = null; connectionLost(LOST);
  });
  socket.on("connect_error", () => { if (heard) connectionLost(LOST); });
  socket.on("server_closing", () => { rejoining = true; restarting = true; recording = null; connectionLost(RESTARTING); });

  socket.on("lobby", (data) => drawLobby(data.waiting));
  socket.on("recording_state", recordingState);
  socket.on("network", networkNotice);
  socket.on("admitted", (data) => { keepRejoin(data.rejoin); recordingState(recordingOf(data)); inCall(data.participants); });
  socket.on("refused", (data) => ended("法官未准许本次接访" + (data.reason ? "：" + data.reason : "")));
  socket.on("ended", (data) => ended(data && data.reason === "abandoned"
    ? "接访已结束：" + ((window.VOCABULARY || {}).end_reason || {}).abandoned
    : "接访已结束"));
  socket.on("tracks_changed", () => { if (inside && !over) subscribe(); });
  // the judge left the call (closed the tab, lost the network): everyone else sees it at once;
  // the server ends the visit if no judge returns within its limit
  const judgeHere = () => [...present.values()].some((p) => LEADS.includes(p.role));
  let judgeSeen = false; // a judge (a host) has been in the call seen from this page
  socket.on("participant_joined", (p) => {
    present.set(p.participant_id, p); drawPresent();
    if (LEADS.includes(p.role)) { judgeSeen = true; show("judge-state", false); }
  });
  socket.on("participant_left", (p) => {
    present.delete(p.participant_id); poorLinks.delete(p.participant_id); drawPresent();
    if (inside && !over) subscribe();
    if (LEADS.includes(p.role) && !judgeHere() && !over) show("judge-state", true);
  });

  if ($("check")) $("check").onclick = () => checkDevices(true);
  // The code alone identifies its visit: without ?visit= the server says which (unspent).
  async function visitOfCode(code) {
    const r = await fetch("/api/v1/visit-codes/lookup", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ code }),
    });
    const body = await r.json().catch(() => null);
    if (!r.ok) throw new Error(body && body.error ? body.error.message : "无法核对接访码，请稍后再试");
    return body.visit_id;
  }
  if ($("code-form")) {
    $("code-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const code = $("code-input").value.trim();
      const lookedUp = !visitId;
      if (lookedUp) {
        try { visitId = await visitOfCode(code); } catch (err) { say("code-msg", reason(err), "error"); return; }
        history.replaceState(null, "", "/join?visit=" + encodeURIComponent(visitId));
      }
      const answer = await join({ code });
      if (!answer.ok && !over) {
        say("code-msg", answer.error.message, "error");
        if (lookedUp) { visitId = null; history.replaceState(null, "", "/join"); }
      }
    });
  }
  $("mute").onclick = () => { if (!local) return; const t = local.getAudioTracks()[0]; t.enabled = !t.enabled; $("mute").textContent = t.enabled ? "静音" : "取消静音"; call("media_state", { audio: t.enabled, video: local.getVideoTracks()[0].enabled }); };
  $("camera").onclick = () => { if (!local) return; const t = local.getVideoTracks()[0]; t.enabled = !t.enabled; $("camera").textContent = t.enabled ? "关闭摄像头" : "打开摄像头"; call("media_state", { audio: local.getAudioTracks()[0].enabled, video: t.enabled }); };
  if ($("switch-camera")) $("switch-camera").onclick = () => switchCamera().catch((err) => say("call-msg", "无法切换摄像头：" + reason(err), "error"));
  // leaving needs no one's leave: unheard (the connection dropped), the socket is closed so
  // the server sees the participant gone
  // a guest keeps the rejoin token: a mistaken tap is undone with 重新进入 (the code is spent)
  $("leave").onclick = async () => {
    const answer = await call("leave");
    if (!answer.ok) socket.disconnect();
    const guest = mode === "guest";
    ended(guest ? "您已离开接访；接访仍在进行，如需返回请点“重新进入”" : "您已离开接访", guest);
    if (guest && $("reenter")) show("reenter", true);
  };
  if ($("reenter")) $("reenter").onclick = () => location.reload();
  // ending is the server's to confirm: refused or unheard, the visit goes on (and is still
  // recorded), so the page says why and stays in the call
  if ($("end")) $("end").onclick = async () => {
    const answer = await call("end");
    if (!answer.ok) {
      const why = "未能结束：" + answer.error.message + "，请稍后重试";
      say("call-msg", meeting ? why.replaceAll("接访", "约谈") : why, "error");
      return;
    }
    ended(onsite ? "现场接待已结束，录像正在处理并签名" : "接访已结束");
  };
  function addNote(note) {
    const li = document.createElement("li");
    const at = new Date(note.at * 1000).toLocaleTimeString("zh-CN", { hour12: false, timeZone: TZ });
    li.textContent = `[${at}] ${note.text}`;
    $("note-list").appendChild(li);
  }
  socket.on("note", (note) => { if ($("note-list")) addNote(note); });
  if ($("note-form")) {
    $("note-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = $("note-text").value.trim();
      if (!text) return;
      const answer = await call("note", { text });
      if (answer.ok) $("note-text").value = "";
      else say("call-msg", answer.error.message, "error");
    });
  }
  if ($("evidence-form")) {
    $("evidence-source").onchange = () => show("evidence-file-label", $("evidence-source").value === "file");
    $("evidence-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      showEvidence().catch((err) => say("evidence-msg", "无法出示证据：" + reason(err), "error"));
    });
    $("evidence-stop").onclick = () => stopEvidence(true);
  }
  let invitation = "";
  if ($("invite-form")) {
    $("invite-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const form = ev.target;
      const answer = await call("invite", { role: form.elements.role.value, label: form.elements.label.value.trim() });
      show("invite-share", answer.ok);
      if (!answer.ok) { say("invite-msg", answer.error.message, "error"); return; }
      const link = `${location.origin}/j/${answer.code}`;
      say("invite-msg", `接访码（只显示一次）：${answer.code}　邀请链接：${link}`, "ok");
      invitation = `远程视频接访邀请：请用浏览器打开 ${link} 进入（接访码 ${answer.code}，只能使用一次）`;
    });
    $("invite-copy").onclick = async () => {
      try {
        await navigator.clipboard.writeText(invitation);
      } catch {
        // no clipboard API (a plain-http address): copy through a selection
        const area = document.createElement("textarea");
        area.value = invitation; document.body.appendChild(area); area.select();
        document.execCommand("copy"); area.remove();
      }
      $("invite-copy").textContent = "已复制";
      setTimeout(() => { $("invite-copy").textContent = "复制邀请"; }, 2000);
    };
  }

  // --- the visit's kind, and its outcome on the case's timeline: the visit's judge records
  // them during the call or after it ended (POST /visits/{id}/outcome); each is a new entry
  async function outcomePanel() {
    const get = async (path) => {
      const r = await fetch("/api/v1" + path, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!r.ok) throw new Error(String(r.status));
      return r.json();
    };
    const [visit, who] = await Promise.all([get(`/visits/${visitId}`), get("/auth/me")]);
    $("visit-kind").textContent = `${visit.kind_name} · ${visit.petition_number}`;
    if (!visit.can_record_outcome) return;
    const words = (window.VOCABULARY || {}).visit_outcome || {};
    for (const [value, text] of Object.entries(words)) $("outcome-kind").add(new Option(text, value));
    const draw = (list) => {
      $("outcome-list").replaceChildren(...list.map((o) => {
        const li = document.createElement("li");
        const at = new Date(o.at).toLocaleTimeString("zh-CN", { hour12: false, timeZone: TZ });
        li.textContent = `[${at}] ${o.outcome_name}${o.text ? "：" + o.text : ""}（${o.actor || o.actor_name}）`;
        return li;
      }));
    };
    draw(await get(`/visits/${visitId}/outcomes`));
    show("outcome-card", true);
    $("outcome-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const r = await fetch(`/api/v1/visits/${visitId}/outcome`, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": who.csrf_token },
        body: JSON.stringify({ outcome: $("outcome-kind").value, text: $("outcome-text").value.trim() }),
      });
      const body = await r.json().catch(() => null);
      if (!r.ok) {
        const err = (body && body.error) || {};
        const details = Array.isArray(err.details) ? "：" + err.details.map((d) => d.message).join("；") : "";
        say("outcome-msg", (err.message || "无法保存，请稍后重试") + details, "error");
        return;
      }
      $("outcome-text").value = "";
      say("outcome-msg", `已记入信访件：${body.outcome_name}`, "ok");
      draw(await get(`/visits/${visitId}/outcomes`));
    });
  }
  if (mode === "staff" && $("outcome-card")) outcomePanel().catch(() => {});

  // (re)connected: join, or rejoin after a dropped connection (the server forgot us)
  // sent here from another node: the code or rejoin token comes in the fragment
  // an invitation's short link fills the code in (/j/<code> → #fill=<code>)
  const carried = new URLSearchParams(location.hash.slice(1));
  if (carried.get("fill") && $("code-input")) $("code-input").value = carried.get("fill");
  if (carried.get("rejoin")) keepRejoin(carried.get("rejoin"));
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);

  socket.on("connect", async () => {
    heard = Date.now();
    if (over) return;
    if (!me) confirmed(null); // nothing to rejoin: being connected is all there is to confirm
    if (me && mode === "guest" && !localStorage.getItem(rejoinKey())) return;
    if (!me && carried.get("code") && $("code-input")) {
      $("code-input").value = carried.get("code");
      carried.delete("code");
      $("code-form").requestSubmit();
      document.body.dataset.ready = "1";
      return;
    }
    const rejoin = localStorage.getItem(rejoinKey());
    if (mode === "staff") {
      const answer = await join({});
      if (!answer.ok && answer.error.code === "not_open") waitForHost(answer);
      else if (!answer.ok) notEntered(answer);
    } else if (rejoin) {
      const answer = await join({ rejoin });
      // the token is dropped only when refused: a busy server's answer says nothing of it
      if (!answer.ok && !enterAgain(answer)) localStorage.removeItem(rejoinKey());
    }
    document.body.dataset.ready = "1";
  });
  // A meeting's invitee before its host opened it: its room holds nobody yet, so the page
  // waits, asking again, and enters as soon as the host has (a dropped connection asks on
  // reconnecting).
  const OPEN_POLL_MS = 3000;
  function waitForHost(answer) {
    $("enter-title").textContent = "等待主持人开启约谈";
    say("enter-msg", answer.error.message);
    show("enter-step", true);
    document.body.dataset.waiting = "1";
    setTimeout(async () => {
      if (over || me || !socket.connected) return;
      const again = await join({});
      if (again.ok) return;
      if (again.error.code === "not_open") waitForHost(again);
      else notEntered(again);
    }, OPEN_POLL_MS);
  }
  // a staff member's join refused: said on the page (the call itself is not shown yet)
  function notEntered(answer) {
    delete document.body.dataset.waiting;
    $("enter-title").textContent = "未能进入";
    say("enter-msg", answer.error.message, "error");
    show("enter-step", true);
    enterAgain(answer);
  }
  // Entering again after a reconnection failed without a refusal (no answer, the server
  // busy or failing, or a join answered too late to be seen): asked again on a fresh
  // connection (the server replaces the older one of the same person), or the page stayed
  // 连接中断 for good, a guest without its token. True when it will be asked again.
  const AGAIN = ["no_answer", "internal_error", "rate_limited", "already_joined"];
  const AGAIN_MS = 2000;
  function enterAgain(answer) {
    if (!AGAIN.includes(answer.error.code)) return false;
    setTimeout(() => {
      if (over || !socket.connected) return; // a dropped connection comes back by itself
      socket.disconnect();
      socket.connect();
    }, AGAIN_MS);
    return true;
  }
})();
