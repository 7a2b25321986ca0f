#!/usr/bin/env python3
"""Relay benchmark: the relay runs in its own process; lightweight aiortc publishers and
subscribers on loopback load it; the relay process's CPU is read from /proc.

Publishers send pre-encoded 640x480 30 fps VP8 (about 1 Mbit/s) and Opus, and never encode
while running: each frame is pre-encoded twice, as a delta frame and as a keyframe, and a
keyframe request (PLI/FIR) is answered with the keyframe copy of the next frame. Subscribers
take frames before decoding (no decoder). The same load then runs through aiortc's own
pipeline (``MediaRelay``: decode once, encode per subscriber) as the baseline, in a fresh
process, in the same run.

    .venv/bin/python scripts/bench_relay.py --visits 1 --seconds 20
    .venv/bin/python scripts/bench_relay.py --fanout 4 --seconds 20 --baseline transcode

--visits N   N two-party visits (each party publishes VP8 + Opus, subscribes to the other)
--fanout K   one publisher, K subscribers (instead of --visits)
--scenario two-party|fanout   the same choice by name (fanout: K defaults to 8)
--scenario meeting   one meeting (视频约谈): N participants each publish VP8 + Opus and
             subscribe to all the others (--participants N, default 9: the host and eight)
--repeat R   R rounds, each running the relay and then the baseline (default 1): the CPU
             figures are means over the rounds, the frame rates and times pooled, and with
             R > 1 each round's figure is printed too (*_runs)
--baseline transcode|janus|none   also run the same load, in the same run, through aiortc's
             decode/re-encode pipeline, or through Debian's Janus (VideoRoom plugin over its
             HTTP API on loopback; apt-get installs the ``janus`` package when missing, gcc
             builds scripts/janus_lo_shim.c, an LD_PRELOAD shim that makes Janus's ICE use
             ``lo``; configuration generated into a temporary directory)

The last line printed is one JSON object: relay_cpu_pct (of one core), baseline_cpu_pct,
ratio (baseline/relay), subscriber_fps_min, first_frame_ms_p50/p95 (subscribe request →
first video frame, publishers already running), relay_latency_ms_p50/p99 (an RTP packet
handed to the relay's forwarding → sent, SRTP-protected, to each subscriber), max_rss_mb
(relay process), baseline_max_rss_mb, relay_cpu_pct_per_visit (relay_cpu_pct / visits; a
fan-out is one visit), idle_rss_mb (the relay process up, nothing published),
relay_mb_per_visit (its resident memory with every visit running, less idle_rss_mb, divided
by visits; the target is ≤ 10), scenario, visits, fanout, participants, seconds, repeat (a
fan-out or a meeting counts as one visit; subscriber_fps_min is over every video each
subscriber receives);
with ``--baseline janus`` also janus_cpu_pct, janus_max_rss_mb (Janus process),
janus_subscriber_fps_min, janus_first_frame_ms_p95 and ratio_janus (relay_cpu_pct /
janus_cpu_pct; lower is better, ≤ 1.0 is the target).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import math
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
import numpy as np  # noqa: E402
from aiohttp import ClientSession, web  # noqa: E402
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402
from aiortc.rtp import RtpPacket  # noqa: E402

from config.runtime import tune_interpreter  # noqa: E402
from media import encoded, forward, seams  # noqa: E402
from media.room import Relay, Room  # noqa: E402
from media.transport import announce_addresses, create_peer_connection  # noqa: E402
from recorder.sink import RecorderSink  # noqa: E402

VIDEO_CLOCK = 90_000
FPS = 30
LOOP_FRAMES = 150  # 5 s of video, looped
PROFILE_DUMPS: list[Any] = []


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------- relay process


class TranscodeRoom:
    """The baseline: aiortc's own pipeline. Each published track is decoded once and fanned
    out with MediaRelay; every subscriber connection encodes its own copy."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.tracks: dict[str, list[MediaStreamTrack]] = {}
        self.pcs: list[RTCPeerConnection] = []
        self.subscribers: dict[str, RTCPeerConnection] = {}

    async def publish(self, participant: str, sdp: str) -> str:
        pc = create_peer_connection()
        self.pcs.append(pc)
        tracks = self.tracks.setdefault(participant, [])
        pc.on("track", tracks.append)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def subscribe(self, participant: str) -> str:
        pc = create_peer_connection()
        self.pcs.append(pc)
        self.subscribers[participant] = pc
        for owner, tracks in self.tracks.items():
            if owner != participant:
                for track in tracks:
                    pc.addTransceiver(self.relay.subscribe(track), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)

    async def answer(self, participant: str, sdp: str) -> None:
        pc = self.subscribers[participant]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))


def serve_relay(port: int, mode: str, record: str | None = None) -> None:
    """The relay process: a tiny HTTP signaling front for publish / subscribe / answer;
    with ``record``, every room is recorded there as in a visit in progress."""
    tune_interpreter()  # as `vreception serve` does
    announce_addresses(["127.0.0.1"])
    latencies: list[float] = []
    rooms: dict[str, Any] = {}
    relay: Relay | None = None
    recorder = RecorderSink(Path(record)) if record else None
    if mode == "forward":
        relay = Relay(sinks=[recorder] if recorder else [])
        original = forward.ForwardTrack.forward_now

        async def then(rest: Coroutine[Any, Any, None], started: float) -> None:
            await rest
            if len(latencies) < 2_000_000:
                latencies.append(time.perf_counter() - started)

        def timed_forward(
            self: forward.ForwardTrack, packet: RtpPacket, ntp: int, abs_send_time: int
        ) -> Coroutine[Any, Any, None] | None:
            # from the start of this packet's forwarding (its first subscriber) to its send
            started = packet.__dict__.setdefault("bench_started", time.perf_counter())
            rest = original(self, packet, ntp, abs_send_time)
            if rest is not None:
                return then(rest, started)
            if len(latencies) < 2_000_000:
                latencies.append(time.perf_counter() - started)
            return None

        forward.ForwardTrack.forward_now = timed_forward  # type: ignore[method-assign]

    def room(name: str) -> Any:
        if relay is not None:
            if recorder is not None and name not in relay.rooms:
                relay.room(name).start_recording({"bench": True})
            return relay.room(name)
        return rooms.setdefault(name, TranscodeRoom())

    async def publish(request: web.Request) -> web.Response:
        body = await request.json()
        target: Room | TranscodeRoom = room(body["room"])
        sdp = await target.publish(body["participant"], body["sdp"])
        return web.json_response({"sdp": sdp})

    async def subscribe(request: web.Request) -> web.Response:
        body = await request.json()
        offer = await room(body["room"]).subscribe(body["participant"])
        sdp = offer if isinstance(offer, str) else offer.sdp if offer else None
        return web.json_response({"sdp": sdp})

    async def answer(request: web.Request) -> web.Response:
        body = await request.json()
        await room(body["room"]).answer(body["participant"], body["sdp"])
        return web.json_response({})

    async def stats(request: web.Request) -> web.Response:
        for dump in PROFILE_DUMPS:
            dump()
        got = list(latencies)
        latencies.clear()
        return web.json_response({"latencies": got})

    async def finish(request: web.Request) -> web.Response:
        if relay is not None and recorder is not None:
            for each in list(relay.rooms.values()):
                each.stop_recording()
            await asyncio.get_running_loop().run_in_executor(None, recorder.flush)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/finish", finish)
    app.router.add_post("/publish", publish)
    app.router.add_post("/subscribe", subscribe)
    app.router.add_post("/answer", answer)
    app.router.add_post("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, print=lambda *_: print("ready", flush=True))


# ----------------------------------------------------------------------- pre-encoded media


def _pattern(i: int) -> np.ndarray:
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    phase = i / LOOP_FRAMES
    luma = 128 + 90 * np.sin(2 * math.pi * (x / 300 + phase)) * np.cos(2 * math.pi * (y / 220))
    img = np.repeat(luma.astype(np.uint8)[..., None], 3, axis=2)
    img[40:100, 40 + (i * 4) % 500 : 100 + (i * 4) % 500] = (255, 40, 40)  # a moving block
    return img


def _encode(gop: int) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = 640, 480
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.bit_rate = 1_000_000
    codec.gop_size = gop
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    out: list[bytes] = []
    for i in range(LOOP_FRAMES):
        frame = av.VideoFrame.from_ndarray(_pattern(i), format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out


def pre_encode() -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Delta stream (keyframe first), keyframe copy of every frame, and Opus frames."""
    deltas, keys = _encode(gop=10_000), _encode(gop=1)
    assert len(deltas) == len(keys) == LOOP_FRAMES
    assert encoded.vp8_is_keyframe(deltas[0]) and all(encoded.vp8_is_keyframe(k) for k in keys)
    opus = av.CodecContext.create("libopus", "w")
    opus.sample_rate = 48_000
    opus.layout = "stereo"
    opus.format = "s16"
    audio: list[bytes] = []
    t = np.arange(48_000 * 5) / 48_000
    pcm = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16)
    for start in range(0, len(pcm), 960):
        chunk = np.repeat(pcm[start : start + 960][None, :], 2, axis=0).T.reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate = 48_000
        frame.pts = start
        audio += [bytes(p) for p in opus.encode(frame)]
    return deltas, keys, audio


# ----------------------------------------------------------------------- load side


class PacketVideo(MediaStreamTrack):
    """Pre-encoded VP8 at 30 fps; a keyframe request switches one frame to its keyframe copy."""

    kind = "video"

    def __init__(self, deltas: list[bytes], keys: list[bytes]) -> None:
        super().__init__()
        self.deltas, self.keys = deltas, keys
        self.n = 0
        self.want_key = False
        self.start: float | None = None
        self.keys_sent = 0

    def request_keyframe(self) -> None:
        self.want_key = True

    async def recv(self) -> av.Packet[Any]:
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.n / FPS - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        i = self.n % LOOP_FRAMES
        if self.want_key and i != 0:
            data, self.want_key = self.keys[i], False
            self.keys_sent += 1
        else:
            data = self.deltas[i]
        packet = av.Packet(data)
        packet.pts = self.n * (VIDEO_CLOCK // FPS)
        packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.n += 1
        return packet


class PacketAudio(MediaStreamTrack):
    """Pre-encoded Opus, 20 ms frames."""

    kind = "audio"

    def __init__(self, frames: list[bytes]) -> None:
        super().__init__()
        self.frames = frames
        self.n = 0
        self.start: float | None = None

    async def recv(self) -> av.Packet[Any]:
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.n * 0.02 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self.frames[self.n % len(self.frames)])
        packet.pts = self.n * 960
        packet.time_base = fractions.Fraction(1, 48_000)
        self.n += 1
        return packet


class Subscriber:
    """Receives every track of its offer without decoding; counts video frames."""

    def __init__(self) -> None:
        self.pc = create_peer_connection()
        self.requested = 0.0
        self.first_video: float | None = None
        self.video_times: list[float] = []
        self.track_times: dict[str, list[float]] = {}  # video track id → its frames' times
        self.tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        receiver = next(r for r in self.pc.getReceivers() if r.track is track)
        encoded.tap_receiver(receiver)
        self.tasks.append(asyncio.create_task(self._drain(track)))

    async def _drain(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                if track.kind == "video":
                    now = time.monotonic()
                    if self.first_video is None:
                        self.first_video = now
                    self.video_times.append(now)
                    self.track_times.setdefault(track.id, []).append(now)
        except MediaStreamError:
            pass


class RelayBackend:
    """Signaling to the bench's relay process (publish / subscribe / answer over HTTP)."""

    def __init__(self, http: ClientSession, port: int) -> None:
        self.http, self.base = http, f"http://127.0.0.1:{port}"

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async with self.http.post(self.base + path, json=body) as r:
            r.raise_for_status()
            return await r.json()

    async def publish(self, room: str, who: str, pc: RTCPeerConnection) -> None:
        await pc.setLocalDescription(await pc.createOffer())
        answer = await self.post(
            "/publish", {"room": room, "participant": who, "sdp": pc.localDescription.sdp}
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def subscribe(self, room: str, who: str, sub: Subscriber) -> None:
        offer = await self.post("/subscribe", {"room": room, "participant": who})
        await sub.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await sub.pc.setLocalDescription(await sub.pc.createAnswer())
        await self.post(
            "/answer", {"room": room, "participant": who, "sdp": sub.pc.localDescription.sdp}
        )

    async def latencies(self) -> list[float]:
        return list((await self.post("/stats", {}))["latencies"])

    async def finish(self) -> None:
        await self.post("/finish", {})


async def run_load(
    port: int, pid: int, args: argparse.Namespace, media: Any, janus: bool = False
) -> dict[str, Any]:
    """The load ``args`` name (visits, fanout, participants, seconds) against the relay or
    Janus listening on ``port``; ``pid``: the process whose CPU and memory are read."""
    visits, fanout, participants = args.visits, args.fanout, args.participants
    seconds = args.seconds
    deltas, keys, audio = media
    pcs: list[RTCPeerConnection] = []
    videos: list[PacketVideo] = []
    subscribers: list[Subscriber] = []
    async with ClientSession() as http:
        backend: RelayBackend | JanusBackend = (
            JanusBackend(http, port) if janus else RelayBackend(http, port)
        )

        async def publish(room: str, who: str) -> None:
            pc = create_peer_connection()
            video = PacketVideo(deltas, keys)
            sender = pc.addTransceiver(video, direction="sendonly").sender
            seams.wrap_keyframe_request(sender, lambda original: video.request_keyframe)
            pc.addTransceiver(PacketAudio(audio), direction="sendonly")
            await backend.publish(room, who, pc)
            pcs.append(pc)
            videos.append(video)

        async def subscribe(room: str, who: str) -> None:
            sub = Subscriber()
            sub.requested = time.monotonic()
            await backend.subscribe(room, who, sub)
            subscribers.append(sub)

        idle_rss = proc_rss_mb(pid, "VmRSS")  # the relay up, nothing published yet
        if participants:
            for k in range(participants):
                await publish("m0", f"p{k}")
        elif fanout:
            await publish("v0", "pub")
        else:
            for v in range(visits):
                await publish(f"v{v}", "a")
                await publish(f"v{v}", "b")
        await asyncio.sleep(2.5)  # publishers run: subscribers join mid-stream (needs a PLI)
        if participants:
            await asyncio.gather(*(subscribe("m0", f"p{k}") for k in range(participants)))
        elif fanout:
            await asyncio.gather(*(subscribe("v0", f"s{k}") for k in range(fanout)))
        else:
            await asyncio.gather(
                *(subscribe(f"v{v}", p) for v in range(visits) for p in ("a", "b"))
            )
        await asyncio.sleep(3.0)  # settle
        await backend.latencies()  # drop warm-up latencies
        cpu0, t0 = proc_cpu(pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = proc_cpu(pid), time.monotonic()
        loaded_rss = proc_rss_mb(pid, "VmRSS")  # every visit still running
        latencies = await backend.latencies()
        await backend.finish()

    fps = [
        sum(1 for x in times if t0 <= x <= t1) / (t1 - t0)
        for s in subscribers
        for times in s.track_times.values()
    ]
    first = [(s.first_video - s.requested) * 1000 for s in subscribers if s.first_video is not None]
    for pc in pcs + [s.pc for s in subscribers]:
        await pc.close()
    for s in subscribers:
        for task in s.tasks:
            task.cancel()
    return {
        "cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100,
        "fps": fps,
        "first_ms": first,
        "latencies_ms": [x * 1000 for x in latencies],
        "keyframes_on_request": sum(v.keys_sent for v in videos),
        "max_rss_mb": proc_rss_mb(pid),
        "idle_rss_mb": idle_rss,
        "loaded_rss_mb": loaded_rss,
        "never_started": len(subscribers) - len(first),
    }


# ----------------------------------------------------------------------- Janus baseline

JANUS_LIBS = Path("/usr/lib/x86_64-linux-gnu/janus")


class JanusHandle:
    """One session with one VideoRoom plugin handle; a long poll collects its events."""

    def __init__(self, backend: JanusBackend, session: int, handle: int) -> None:
        self.backend, self.session, self.handle = backend, session, handle
        self.events: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        url = f"{self.backend.base}/{self.session}?maxev=10"
        while True:
            async with self.backend.http.get(url) as r:
                got = await r.json()
            for event in got if isinstance(got, list) else [got]:
                waiter = self.events.pop(str(event.get("transaction")), None)
                if waiter is not None and event.get("janus") == "event" and not waiter.done():
                    waiter.set_result(event)

    async def message(self, body: dict[str, Any], jsep: dict[str, Any] | None = None) -> Any:
        """A VideoRoom request; its (asynchronous) event with plugin data and any jsep."""
        transaction = secrets.token_hex(8)
        waiter = asyncio.get_running_loop().create_future()
        self.events[transaction] = waiter
        request: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            request["jsep"] = jsep
        reply = await self.backend.call(f"/{self.session}/{self.handle}", request)
        if reply["janus"] == "success":  # synchronous requests (create)
            self.events.pop(transaction, None)
            return reply
        event = await asyncio.wait_for(waiter, 20)
        data = event["plugindata"]["data"]
        if "error" in data:
            raise RuntimeError(f"Janus: {data['error']}")
        return event


class JanusBackend:
    """The same clients against Janus's VideoRoom over its HTTP API: one room per visit,
    each publisher its own session; a subscriber subscribes to every other feed of the room
    on one connection (Janus 1.x multistream)."""

    def __init__(self, http: ClientSession, port: int) -> None:
        self.http, self.base = http, f"http://127.0.0.1:{port}/janus"
        self.rooms: dict[str, int] = {}
        self.feeds: dict[str, dict[str, int]] = {}  # room → publisher → feed id
        self.handles: list[JanusHandle] = []
        self.lock = asyncio.Lock()

    async def call(self, path: str, body: dict[str, Any]) -> Any:
        body.setdefault("transaction", secrets.token_hex(8))
        async with self.http.post(self.base + path, json=body) as r:
            reply = await r.json()
        if reply.get("janus") == "error":
            raise RuntimeError(f"Janus: {reply['error']}")
        return reply

    async def attach(self) -> JanusHandle:
        session = (await self.call("", {"janus": "create"}))["data"]["id"]
        attach = {"janus": "attach", "plugin": "janus.plugin.videoroom"}
        handle = (await self.call(f"/{session}", attach))["data"]["id"]
        janus = JanusHandle(self, session, handle)
        self.handles.append(janus)
        return janus

    async def room(self, name: str, handle: JanusHandle) -> int:
        async with self.lock:
            if name not in self.rooms:
                number = 1000 + len(self.rooms)
                await handle.message(
                    {
                        "request": "create",
                        "room": number,
                        "publishers": 16,
                        "videocodec": "vp8",
                        "audiocodec": "opus",
                        "bitrate": 0,
                    }
                )
                self.rooms[name] = number
            return self.rooms[name]

    async def publish(self, room: str, who: str, pc: RTCPeerConnection) -> None:
        handle = await self.attach()
        number = await self.room(room, handle)
        joined = await handle.message(
            {"request": "join", "ptype": "publisher", "room": number, "display": who}
        )
        self.feeds.setdefault(room, {})[who] = joined["plugindata"]["data"]["id"]
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"type": "offer", "sdp": pc.localDescription.sdp, "trickle": False}
        event = await handle.message({"request": "publish", "audio": True, "video": True}, offer)
        await pc.setRemoteDescription(RTCSessionDescription(**event["jsep"]))

    async def subscribe(self, room: str, who: str, sub: Subscriber) -> None:
        handle = await self.attach()
        streams = [{"feed": feed} for owner, feed in self.feeds[room].items() if owner != who]
        attached = await handle.message(
            {"request": "join", "ptype": "subscriber", "room": self.rooms[room], "streams": streams}
        )
        jsep = attached["jsep"]
        await sub.pc.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type="offer"))
        await sub.pc.setLocalDescription(await sub.pc.createAnswer())
        answer = {"type": "answer", "sdp": sub.pc.localDescription.sdp, "trickle": False}
        await handle.message({"request": "start"}, answer)

    async def latencies(self) -> list[float]:
        return []  # Janus is not instrumented

    async def finish(self) -> None:
        for handle in self.handles:
            handle.poller.cancel()
            with contextlib.suppress(Exception):
                await self.call(f"/{handle.session}", {"janus": "destroy"})


def ensure_janus() -> str:
    """Debian's janus binary, installed with apt-get when missing (bench set-up only)."""
    found = shutil.which("janus")
    if found is None:
        log("installing Debian's janus package")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([*sudo, "apt-get", "install", "-y", "janus"], check=True, env=env)
        found = shutil.which("janus")
    if found is None:
        raise SystemExit("janus is not installed and apt-get could not install it")
    return found


def janus_config(folder: Path, http_port: int, rtp_ports: tuple[int, int]) -> None:
    """Janus's three configuration files: HTTP on loopback, the VideoRoom plugin only."""
    for kind, library in (("plugins", "videoroom"), ("transports", "http")):
        (folder / kind).mkdir()
        (folder / kind / f"libjanus_{library}.so").symlink_to(
            JANUS_LIBS / kind / f"libjanus_{library}.so"
        )
    for kind in ("events", "loggers"):
        (folder / kind).mkdir()
    (folder / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder}/plugins"
    transports_folder = "{folder}/transports"
    events_folder = "{folder}/events"
    loggers_folder = "{folder}/loggers"
    log_to_stdout = true
    debug_level = 3
    server_name = "bench"
    session_timeout = 60
}}
certificates: {{
}}
media: {{
    rtp_port_range = "{rtp_ports[0]}-{rtp_ports[1]}"
}}
nat: {{
    nice_debug = false
    ignore_mdns = true
}}
events: {{
    broadcast = false
}}
"""
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    port = {http_port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
"""
    )


def run_janus(args: argparse.Namespace, media: Any) -> dict[str, Any]:
    """Janus under the same clients and media: its own process, measured from /proc."""
    binary = ensure_janus()
    with tempfile.TemporaryDirectory(prefix="bench-janus-") as tmp:
        folder = Path(tmp)
        shim = folder / "lo_shim.so"
        source = ROOT / "scripts" / "janus_lo_shim.c"
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(source), "-ldl"], check=True
        )
        port = free_port()
        janus_config(folder, port, (31000, 31999))
        logfile = (folder / "janus.log").open("w")
        proc = subprocess.Popen(
            [binary, "-C", str(folder / "janus.jcfg"), "-F", str(folder)],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LD_PRELOAD": str(shim)},
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        tail = (folder / "janus.log").read_text()[-2000:]
                        raise SystemExit(f"janus did not start:\n{tail}") from None
                    time.sleep(0.2)
            log(f"janus: pid {proc.pid} on port {port}")
            try:
                return asyncio.run(run_load(port, proc.pid, args, media, janus=True))
            except Exception:
                log("janus log tail:\n" + (folder / "janus.log").read_text()[-3000:])
                raise
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            logfile.close()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's peak (VmHWM) or current (VmRSS) resident memory, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one system as one: CPU and memory averaged, frame rates, first-frame
    times and latencies pooled, counts summed, the peak memory the largest."""
    return {
        "cpu_pct": statistics.fmean(r["cpu_pct"] for r in runs),
        "cpu_pct_runs": [round(r["cpu_pct"], 2) for r in runs],
        "fps": [x for r in runs for x in r["fps"]],
        "first_ms": [x for r in runs for x in r["first_ms"]],
        "latencies_ms": [x for r in runs for x in r["latencies_ms"]],
        "keyframes_on_request": sum(r["keyframes_on_request"] for r in runs),
        "never_started": sum(r["never_started"] for r in runs),
        "max_rss_mb": max(r["max_rss_mb"] for r in runs),
        "idle_rss_mb": statistics.fmean(r["idle_rss_mb"] for r in runs),
        "loaded_rss_mb": statistics.fmean(r["loaded_rss_mb"] for r in runs),
    }


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def run_mode(
    mode: str, args: argparse.Namespace, media: Any, record: Path | None = None
) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, __file__, "_relay", "--port", str(port), "--mode", mode]
    if record is not None:
        command += ["--record", str(record)]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("relay process did not start")
        log(f"{mode}: relay pid {proc.pid} on port {port}")
        return asyncio.run(run_load(port, proc.pid, args, media))
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def parse_load(argv: list[str]) -> argparse.Namespace:
    """The command line as the load to run: a scenario's defaults filled in (fan-out: 8
    subscribers; meeting: 9 participants), and a fan-out or a meeting counted as one visit."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=1, help="two-party visits")
    parser.add_argument("--fanout", type=int, default=0, help="one publisher, K subscribers")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds, each running the relay then the baseline; CPU figures are their means",
    )
    parser.add_argument("--baseline", choices=("transcode", "janus", "none"), default="none")
    parser.add_argument(
        "--scenario",
        choices=("two-party", "fanout", "meeting"),
        help="two-party visits (--visits), one publisher to K subscribers (--fanout, default 8)"
        " or one meeting of N participants (--participants, default 9)",
    )
    parser.add_argument(
        "--participants", type=int, default=0, help="a meeting's participants (--scenario meeting)"
    )
    args = parser.parse_args(argv)
    if args.scenario == "fanout" and not args.fanout:
        args.fanout = 8
    if args.scenario == "meeting" and not args.participants:
        args.participants = 9
    if args.scenario in ("two-party", "fanout"):
        args.participants = 0
    if args.scenario == "two-party":
        args.fanout = 0
    if args.participants and args.participants < 2:
        parser.error("--participants: a meeting has at least 2 participants")
    if args.participants:
        args.fanout = 0
    if args.fanout or args.participants:
        args.visits = 1
    if args.repeat < 1:
        parser.error("--repeat: at least one round")
    return args


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_relay":
        inner = argparse.ArgumentParser()
        inner.add_argument("_relay")
        inner.add_argument("--port", type=int, required=True)
        inner.add_argument("--mode", choices=("forward", "transcode"), required=True)
        inner.add_argument("--record")
        a = inner.parse_args()
        profile = os.environ.get("BENCH_PROFILE")  # a file: cProfile stats of the relay
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()

            PROFILE_DUMPS.append(lambda: profiler.dump_stats(profile))
        serve_relay(a.port, a.mode, a.record)
        return
    args = parse_load(sys.argv[1:])
    announce_addresses(["127.0.0.1"])
    log("pre-encoding media")
    media = pre_encode()
    runs: dict[str, list[dict[str, Any]]] = {"forward": [], "transcode": [], "janus": []}
    for _ in range(args.repeat):
        runs["forward"].append(run_mode("forward", args, media))
        if args.baseline == "transcode":
            runs["transcode"].append(run_mode("transcode", args, media))
        if args.baseline == "janus":
            runs["janus"].append(run_janus(args, media))
    relay = pooled(runs["forward"])
    result: dict[str, Any] = {
        "relay_cpu_pct": round(relay["cpu_pct"], 2),
        "baseline_cpu_pct": None,
        "ratio": None,
        "subscriber_fps_min": round(min(relay["fps"]), 2) if relay["fps"] else 0.0,
        "subscriber_fps_median": round(statistics.median(relay["fps"]), 2) if relay["fps"] else 0.0,
        "first_frame_ms_p50": round(pct(relay["first_ms"], 50), 1),
        "first_frame_ms_p95": round(pct(relay["first_ms"], 95), 1),
        "relay_latency_ms_p50": round(pct(relay["latencies_ms"], 50), 3),
        "relay_latency_ms_p99": round(pct(relay["latencies_ms"], 99), 3),
        "keyframes_on_request": relay["keyframes_on_request"],
        "subscribers_without_video": relay["never_started"],
        "max_rss_mb": round(relay["max_rss_mb"], 1),
        "relay_cpu_pct_per_visit": round(relay["cpu_pct"] / args.visits, 2),
        "idle_rss_mb": round(relay["idle_rss_mb"], 1),
        "relay_mb_per_visit": round(
            (relay["loaded_rss_mb"] - relay["idle_rss_mb"]) / args.visits, 2
        ),
        "scenario": "meeting" if args.participants else "fanout" if args.fanout else "two-party",
        "visits": 0 if args.fanout or args.participants else args.visits,
        "fanout": args.fanout,
        "participants": args.participants,
        "seconds": args.seconds,
        "repeat": args.repeat,
    }
    if args.repeat > 1:
        result["relay_cpu_pct_runs"] = relay["cpu_pct_runs"]
    if args.baseline == "transcode":
        base = pooled(runs["transcode"])
        result["baseline_cpu_pct"] = round(base["cpu_pct"], 2)
        result["baseline_subscriber_fps_min"] = round(min(base["fps"]), 2) if base["fps"] else 0
        result["baseline_max_rss_mb"] = round(base["max_rss_mb"], 1)
        result["ratio"] = (
            round(base["cpu_pct"] / relay["cpu_pct"], 2) if relay["cpu_pct"] > 0 else None
        )
    if args.baseline == "janus":
        janus = pooled(runs["janus"])
        result["janus_cpu_pct"] = round(janus["cpu_pct"], 2)
        result["janus_max_rss_mb"] = round(janus["max_rss_mb"], 1)
        result["janus_subscriber_fps_min"] = round(min(janus["fps"]), 2) if janus["fps"] else 0
        result["janus_first_frame_ms_p95"] = round(pct(janus["first_ms"], 95), 1)
        result["ratio_janus"] = (
            round(relay["cpu_pct"] / janus["cpu_pct"], 2) if janus["cpu_pct"] > 0 else None
        )
        if args.repeat > 1:
            result["janus_cpu_pct_runs"] = janus["cpu_pct_runs"]
            result["ratio_janus_runs"] = [
                round(r / j, 2) if j > 0 else None
                for r, j in zip(relay["cpu_pct_runs"], janus["cpu_pct_runs"], strict=True)
            ]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
