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

The last line printed is one JSON object: relay_cpu_pct (of one core), baseline_cpu_pct,
ratio (baseline/relay), subscriber_fps_min, first_frame_ms_p50/p95 (subscribe request →
first video frame, publishers already running), relay_latency_ms_p50/p99 (frame complete at
the relay → handed to each subscriber's RTP sender), max_rss_mb (relay process),
baseline_max_rss_mb, visits, fanout, seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import deque
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

from media import encoded  # noqa: E402
from media.room import PublishedTrack, Relay, Room  # noqa: E402
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


class LatencySink:
    """Remembers when each frame reached the relay (bench instrumentation only)."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}
        self.order: deque[int] = deque()

    def start(self, visit_id: str, details: dict[str, Any] | None = None) -> None:
        return None

    def stop(self, visit_id: str) -> None:
        return None

    def track_started(self, visit_id: str, track: PublishedTrack) -> None:
        return None

    def packet(self, track: PublishedTrack, packet: av.Packet[Any], arrival: float) -> None:
        key = id(packet)
        self.arrived[key] = time.perf_counter()
        self.order.append(key)
        while len(self.order) > 20_000:
            self.arrived.pop(self.order.popleft(), None)

    def track_ended(self, track: PublishedTrack) -> None:
        return None


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
    announce_addresses(["127.0.0.1"])
    latencies: list[float] = []
    rooms: dict[str, Any] = {}
    relay: Relay | None = None
    recorder = RecorderSink(Path(record)) if record else None
    if mode == "forward":
        sink = LatencySink()
        relay = Relay(sinks=[sink] + ([recorder] if recorder else []))
        original = encoded.ForwardTrack.recv

        async def timed_recv(self: encoded.ForwardTrack) -> av.Packet[Any]:
            packet = await original(self)
            arrived = sink.arrived.get(id(packet))
            if arrived is not None and len(latencies) < 2_000_000:
                latencies.append(time.perf_counter() - arrived)
            return packet

        encoded.ForwardTrack.recv = timed_recv  # type: ignore[method-assign]

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
        except MediaStreamError:
            pass


async def run_load(
    port: int, pid: int, visits: int, fanout: int, seconds: float, media: Any
) -> dict[str, Any]:
    deltas, keys, audio = media
    base = f"http://127.0.0.1:{port}"
    pcs: list[RTCPeerConnection] = []
    videos: list[PacketVideo] = []
    subscribers: list[Subscriber] = []
    async with ClientSession() as http:

        async def post(path: str, body: dict[str, Any]) -> Any:
            async with http.post(base + path, json=body) as r:
                r.raise_for_status()
                return await r.json()

        async def publish(room: str, who: str) -> None:
            pc = create_peer_connection()
            video = PacketVideo(deltas, keys)
            sender = pc.addTransceiver(video, direction="sendonly").sender
            sender._send_keyframe = video.request_keyframe  # type: ignore[method-assign]
            pc.addTransceiver(PacketAudio(audio), direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            answer = await post(
                "/publish", {"room": room, "participant": who, "sdp": pc.localDescription.sdp}
            )
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
            pcs.append(pc)
            videos.append(video)

        async def subscribe(room: str, who: str) -> None:
            sub = Subscriber()
            sub.requested = time.monotonic()
            offer = await post("/subscribe", {"room": room, "participant": who})
            await sub.pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            await sub.pc.setLocalDescription(await sub.pc.createAnswer())
            await post(
                "/answer", {"room": room, "participant": who, "sdp": sub.pc.localDescription.sdp}
            )
            subscribers.append(sub)

        if fanout:
            await publish("v0", "pub")
        else:
            for v in range(visits):
                await publish(f"v{v}", "a")
                await publish(f"v{v}", "b")
        await asyncio.sleep(2.5)  # publishers run: subscribers join mid-stream (needs a PLI)
        if fanout:
            await asyncio.gather(*(subscribe("v0", f"s{k}") for k in range(fanout)))
        else:
            await asyncio.gather(
                *(subscribe(f"v{v}", p) for v in range(visits) for p in ("a", "b"))
            )
        await asyncio.sleep(3.0)  # settle
        await post("/stats", {})  # drop warm-up latencies
        cpu0, t0 = proc_cpu(pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = proc_cpu(pid), time.monotonic()
        latencies = (await post("/stats", {}))["latencies"]
        await post("/finish", {})

    fps = [sum(1 for x in s.video_times if t0 <= x <= t1) / (t1 - t0) for s in subscribers]
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
        "never_started": len(subscribers) - len(first),
    }


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


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
        return asyncio.run(run_load(port, proc.pid, args.visits, args.fanout, args.seconds, media))
    finally:
        proc.terminate()
        proc.wait(timeout=20)


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=1, help="two-party visits")
    parser.add_argument("--fanout", type=int, default=0, help="one publisher, K subscribers")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--baseline", choices=("transcode", "none"), default="none")
    args = parser.parse_args()
    if args.fanout:
        args.visits = 1
    announce_addresses(["127.0.0.1"])
    log("pre-encoding media")
    media = pre_encode()
    relay = run_mode("forward", args, media)
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
        "visits": 0 if args.fanout else args.visits,
        "fanout": args.fanout,
        "seconds": args.seconds,
    }
    if args.baseline == "transcode":
        base = run_mode("transcode", args, media)
        result["baseline_cpu_pct"] = round(base["cpu_pct"], 2)
        result["baseline_subscriber_fps_min"] = round(min(base["fps"]), 2) if base["fps"] else 0
        result["baseline_max_rss_mb"] = round(base["max_rss_mb"], 1)
        result["ratio"] = (
            round(base["cpu_pct"] / relay["cpu_pct"], 2) if relay["cpu_pct"] > 0 else None
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
