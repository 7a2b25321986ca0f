"""The recorder's sink: every track of a visit in progress is written as it arrives, the
relay's own encoded frames in WebM (no re-encode), checked with ffprobe; a recorder killed
with SIGKILL leaves files that ``recover`` makes playable and marks interrupted."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import av
import numpy as np
from aiortc import RTCSessionDescription

from media.encoded import tap_receiver
from media.room import PublishedTrack, Relay
from media.transport import announce_addresses, create_peer_connection
from recorder.composite import Overlay, Planes, _fit, _layout, render
from recorder.sink import RecorderSink, recover
from recorder.state import RecordingState, load_state
from tests.media_fixtures import publish_av

ROOT = Path(__file__).resolve().parent.parent


class HashSink:
    """Every frame the relay received while recording, by track."""

    def __init__(self) -> None:
        self.recording = False
        self.hashes: dict[str, set[str]] = defaultdict(set)

    def start(self, visit_id: str, details: dict[str, Any] | None = None) -> None:
        self.recording = True

    def stop(self, visit_id: str) -> None:
        self.recording = False

    def track_started(self, visit_id: str, track: PublishedTrack) -> None:
        return None

    def packet(self, track: PublishedTrack, packet: av.Packet[Any], arrival: float) -> None:
        self.hashes[track.kind].add(hashlib.sha256(bytes(packet)).hexdigest())

    def track_ended(self, track: PublishedTrack) -> None:
        return None


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out))


def decode_errors(path: Path) -> str:
    return subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
    ).stderr


async def test_tracks_are_recorded_as_received(tmp_path: Path) -> None:
    announce_addresses(["127.0.0.1"])
    hashes = HashSink()
    sink = RecorderSink(tmp_path)
    relay = Relay(sinks=[hashes, sink])
    visit_id = "a" * 32
    room = relay.room(visit_id)
    room.describe("p1", "judge", "一中院接访法官")
    pc = await publish_av(room, "p1")
    await asyncio.sleep(1.0)  # published before the visit is in progress: not recorded yet
    assert not (tmp_path / visit_id).exists()

    room.start_recording({"petition_number": "（2026）京01信123号"})
    started = time.time()
    await asyncio.sleep(4.0)
    room.stop_recording()
    stopped = time.time()
    sink.flush()
    await room.close()
    await pc.close()
    sink.close()

    state = load_state(tmp_path / visit_id)
    assert state is not None and state.state is RecordingState.queued
    assert state.details["petition_number"] == "（2026）京01信123号"
    assert sorted((t.kind, t.role, t.source) for t in state.tracks) == [
        ("audio", "judge", "microphone"),
        ("video", "judge", "camera"),
    ]
    for track in state.tracks:
        assert len(track.files) == 1 and track.gaps == []
        path = tmp_path / visit_id / track.files[0]
        probe = ffprobe(path)
        stream = probe["streams"][0]
        assert stream["codec_name"] == ("vp8" if track.kind == "video" else "opus")
        assert probe["format"]["tags"]["START_WALLCLOCK"].startswith(
            time.strftime("%Y-%m-%d", time.gmtime(started))
        )
        duration = float(probe["format"]["duration"])
        assert abs(duration - (stopped - started)) <= 0.5, (track.kind, duration)
        assert track.wall_start is not None and started <= track.wall_start <= started + 0.5
        assert decode_errors(path) == ""
        with av.open(str(path)) as container:
            payloads = [bytes(p) for p in container.demux() if p.size]
        assert len(payloads) == track.packets >= (100 if track.kind == "audio" else 60)
        # the very frames the relay received: no re-encoding
        assert {hashlib.sha256(p).hexdigest() for p in payloads} <= hashes.hashes[track.kind]


CRASHING_RECORDER = textwrap.dedent(
    """
    import asyncio, os, sys
    sys.path.insert(0, sys.argv[2])
    from media.room import Relay
    from media.transport import announce_addresses
    from recorder.sink import RecorderSink
    from tests.media_fixtures import publish_av

    async def main():
        announce_addresses(["127.0.0.1"])
        relay = Relay(sinks=[RecorderSink(sys.argv[1])])
        room = relay.room("b" * 32)
        room.describe("p1", "petitioner", "王某某")
        room.start_recording({})
        await publish_av(room, "p1")
        print("recording", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_a_killed_recorder_loses_seconds_not_the_visit(tmp_path: Path) -> None:
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_RECORDER)
    root = tmp_path / "recordings"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root), str(ROOT)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "recording"
        started = time.time()
        time.sleep(10)
        os.kill(proc.pid, 9)  # kill -9: no chance to close anything
        killed = time.time()
    finally:
        proc.kill()
        proc.wait()

    repaired = recover(root)
    assert [r.visit_id for r in repaired] == ["b" * 32]
    state = load_state(root / ("b" * 32))
    assert state is not None and state.state is RecordingState.interrupted
    assert state.interrupted_at is not None and killed - 2.5 <= state.interrupted_at <= killed
    assert {t.kind for t in state.tracks} == {"audio", "video"}
    for track in state.tracks:
        assert len(track.files) == 1 and len(track.interrupted_originals) == 1
        assert (root / ("b" * 32) / track.interrupted_originals[0]).exists()
        fixed = root / ("b" * 32) / track.files[0]
        assert fixed.stem.endswith("-repaired")
        duration = float(ffprobe(fixed)["format"]["duration"])
        assert duration >= killed - started - 2.5 >= 7.5, (track.kind, duration)
        assert decode_errors(fixed) == ""
    assert recover(root) == []  # once repaired, not again


async def test_a_full_disk_is_reported_and_the_relay_keeps_forwarding(tmp_path: Path) -> None:
    """Recordings on a small tmpfs that a filler leaves 16 KiB of: the disk fills; the
    failure is reported with the missing span, the subscriber keeps receiving, and once space
    is freed a new segment begins."""
    mount = tmp_path / "small"
    mount.mkdir()
    run = subprocess.run
    run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    tasks: list[asyncio.Future[None]] = []
    try:
        filler = mount / "filler"
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        filler.write_bytes(b"\0" * (free - 16 * 1024))
        announce_addresses(["127.0.0.1"])
        failures: list[tuple[str, str, str]] = []
        sink = RecorderSink(mount / "recordings", on_failure=lambda *a: failures.append(a))
        relay = Relay(sinks=[sink])
        visit_id = "c" * 32
        room = relay.room(visit_id)
        room.describe("p1", "petitioner", "王某某")
        room.start_recording()
        pc = await publish_av(room, "p1")
        subscriber = create_peer_connection()
        received: list[Any] = []

        @subscriber.on("track")
        def on_track(track: Any) -> None:
            receiver = next(r for r in subscriber.getReceivers() if r.track is track)
            tap_receiver(receiver)

            async def drain() -> None:
                while True:
                    received.append(await track.recv())

            tasks.append(asyncio.ensure_future(drain()))

        offer = await room.subscribe("p2")
        assert offer is not None
        await subscriber.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        await subscriber.setLocalDescription(await subscriber.createAnswer())
        await room.answer("p2", subscriber.localDescription.sdp)

        deadline = time.monotonic() + 60
        while not failures:
            assert time.monotonic() < deadline, "the disk never filled"
            await asyncio.sleep(0.1)
        assert "No space left" in failures[0][2] or "空间" in failures[0][2], failures[0]
        before = len(received)
        await asyncio.sleep(1.5)
        assert len(received) >= before + 30  # media still flows to the subscriber

        # an administrator frees space: writing resumes in a new segment, the gap is closed
        filler.unlink()
        deadline = time.monotonic() + 30
        while True:
            sink.flush()
            state = load_state(mount / "recordings" / visit_id)
            video = next(t for t in state.tracks if t.kind == "video") if state else None
            if video is not None and len(video.files) >= 2:
                break
            assert time.monotonic() < deadline, ([f[2] for f in failures], state)
            await asyncio.sleep(0.5)
        assert video.gaps and video.gaps[0].end is not None
        assert video.gaps[0].start < video.gaps[0].end
        room.stop_recording()
        sink.flush()
        await room.close()
        await pc.close()
        await subscriber.close()
        sink.close()
    finally:
        for task in tasks:
            task.cancel()
        run(["umount", "-l", str(mount)], check=False)


async def test_composite_shows_the_parties_and_the_overlay(tmp_path: Path) -> None:
    """Two parties recorded for 4 s → an H.264 + AAC MP4 of that length, decoding without
    errors, the parties' pictures side by side and the overlay drawn over its bottom band."""
    announce_addresses(["127.0.0.1"])
    sink = RecorderSink(tmp_path)
    relay = Relay(sinks=[sink])
    visit_id = "d" * 32
    room = relay.room(visit_id)
    room.describe("p1", "judge", "一中院接访法官")
    room.describe("p2", "petitioner", "王某某")
    room.start_recording({"petition_number": "（2026）京01信123号", "court_name": "东城区人民法院"})
    pcs = [
        await publish_av(room, "p1"),
        await publish_av(room, "p2"),
    ]
    await asyncio.sleep(4.0)
    room.stop_recording()
    sink.flush()
    await room.close()
    for pc in pcs:
        await pc.close()
    sink.close()

    state = load_state(tmp_path / visit_id)
    assert state is not None
    out = tmp_path / visit_id / "composite.mp4"
    result = await asyncio.to_thread(render, tmp_path / visit_id, state, out)
    probe = ffprobe(out)
    codecs = sorted(s["codec_name"] for s in probe["streams"])
    assert codecs == ["aac", "h264"]
    assert abs(float(probe["format"]["duration"]) - result["duration"]) <= 0.5
    assert 3.0 <= result["duration"] <= 5.0
    assert decode_errors(out) == ""
    with av.open(str(out)) as container:
        frame = next(f for i, f in enumerate(container.decode(video=0)) if i == 30)
        image = frame.to_ndarray(format="rgb24")
    band = image[-70:, :]  # the overlay: white text on a dark band
    assert (band > 200).all(axis=2).sum() > 500
    # aiortc's test pattern is green: both parties appear, side by side above the band
    top = image[: 720 - 90]
    green = (top[..., 1] > 100) & (top[..., 0] < 80)
    assert green[:, :640].sum() > 10_000 and green[:, 640:].sum() > 10_000


async def test_a_rejoin_continues_the_same_record_and_the_gap_stays_a_gap(
    tmp_path: Path,
) -> None:
    announce_addresses(["127.0.0.1"])
    sink = RecorderSink(tmp_path)
    relay = Relay(sinks=[sink])
    visit_id = "e" * 32
    room = relay.room(visit_id)
    room.describe("p1", "petitioner", "王某某")
    room.start_recording()
    first = await publish_av(room, "p1")
    await asyncio.sleep(2.5)
    await room.leave("p1")  # the connection dropped
    await first.close()
    await asyncio.sleep(2.0)
    room.describe("p2", "petitioner", "王某某")  # rejoined: same person, new participant
    second = await publish_av(room, "p2")
    await asyncio.sleep(2.5)
    room.stop_recording()
    sink.flush()
    await room.close()
    await second.close()
    sink.close()

    state = load_state(tmp_path / visit_id)
    assert state is not None
    videos = sorted((t for t in state.tracks if t.kind == "video"), key=lambda t: t.wall_start or 0)
    assert [t.participant_id for t in videos] == ["p1", "p2"]
    before, after = videos
    assert before.wall_end is not None and after.wall_start is not None
    assert after.wall_start - before.wall_end >= 1.5  # the gap is on record
    for track in videos:  # each file as long as its own stretch, nothing stretched
        duration = float(ffprobe(tmp_path / visit_id / track.files[0])["format"]["duration"])
        assert track.wall_start is not None and track.wall_end is not None
        assert abs(duration - (track.wall_end - track.wall_start)) <= 0.5
    composite = tmp_path / visit_id / "composite.mp4"
    result = await asyncio.to_thread(render, tmp_path / visit_id, state, composite)
    assert result["duration"] >= 6.5  # the visit's whole span, gap included


def test_composite_layouts_fit_every_party_count() -> None:
    """One to six cameras, with and without evidence, from sources of several sizes: every
    tile lands inside the picture in whole 4:2:0 blocks."""
    overlay = Overlay(["东城区人民法院", "案号"], None, ZoneInfo("UTC"))
    for width, height in ((640, 480), (1280, 720), (1920, 1080), (320, 240)):
        frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), "rgb24")
        for cameras in range(7):
            for evidence in (False, True):
                canvas = Planes.blank(1280, 720)
                for x, y, w, h in _layout(cameras, evidence, overlay.height):
                    assert x + w <= 1280 and y + h <= 720 - overlay.height
                    tile, dx, dy = _fit(frame, w, h)
                    assert tile.y.shape[0] <= h and tile.y.shape[1] <= w
                    canvas.paste(tile, x + dx, y + dy)
                overlay.draw(canvas, 0.0)
                assert canvas.frame().height == 720
