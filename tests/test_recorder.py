"""The recorder's sink: every track of a visit in progress is written as it arrives, the
relay's own encoded frames in WebM (no re-encode), checked with ffprobe; a recorder killed
with SIGKILL leaves files that ``recover`` makes playable and marks interrupted."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import av
import numpy as np
import pytest
from aiortc import RTCSessionDescription
from sqlalchemy import select

from config.audit import AuditEvent
from config.db import Database
from config.settings import Settings
from media.encoded import EncodedFrame, tap_receiver
from media.room import PublishedTrack, Relay
from media.transport import announce_addresses, create_peer_connection
from recorder import sink as sink_module
from recorder.composite import Overlay, Planes, _fit, _layout, render
from recorder.jobs import StillWriting, wait_closed
from recorder.models import Recording
from recorder.sink import CLUSTER_MS, RecorderSink, _Writer, recover
from recorder.state import RecordingState, TrackFile, VisitRecording, load_state, save_state
from tests.conftest import MakeClient
from tests.helpers import login, wait_for, wait_until
from tests.media_fixtures import PacketCounter, publish_av
from tests.visits import Peer, _cookie, admitted_call
from web.keys import VISITS

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

    def frame(self, track: PublishedTrack, frame: EncodedFrame, arrival: float) -> None:
        self.hashes[track.kind].add(hashlib.sha256(frame.data).hexdigest())

    def track_ended(self, track: PublishedTrack) -> None:
        return None


class LaterSink:
    """An injectable clock for a recorder sink: passes everything on, with the frames'
    arrival times ``offset`` seconds later."""

    def __init__(self, sink: RecorderSink) -> None:
        self.sink, self.offset = sink, 0.0

    def start(self, visit_id: str, details: dict[str, Any] | None = None) -> None:
        self.sink.start(visit_id, details)

    def stop(self, visit_id: str) -> None:
        self.sink.stop(visit_id)

    def track_started(self, visit_id: str, track: PublishedTrack) -> None:
        self.sink.track_started(visit_id, track)

    def frame(self, track: PublishedTrack, frame: EncodedFrame, arrival: float) -> None:
        self.sink.frame(track, frame, arrival + self.offset)

    def track_ended(self, track: PublishedTrack) -> None:
        self.sink.track_ended(track)


def written_seconds(path: Path) -> float:
    """Seconds of media in a file being written (up to its last complete frame)."""
    last = 0.0
    try:
        with av.open(str(path)) as container:
            for packet in container.demux():
                if packet.pts is not None and packet.time_base is not None:
                    last = max(last, float(packet.pts * packet.time_base))
    except (av.FFmpegError, OSError, EOFError):
        pass
    return last


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
    counter = PacketCounter()
    relay = Relay(sinks=[hashes, sink, counter])
    visit_id = "a" * 32
    room = relay.room(visit_id)
    room.describe("p1", "judge", "一中院接访法官")
    pc = await publish_av(room, "p1")
    # published before the visit is in progress: forwarded, not recorded
    tracks = room.tracks.values()
    await wait_for(_true(lambda: len(tracks) == 2 and min(t.packets for t in tracks) >= 15))
    await asyncio.to_thread(sink.flush)
    assert not (tmp_path / visit_id).exists()

    room.start_recording({"petition_number": "（2026）京01信123号"})
    started = time.time()
    await wait_for(counter.recorded(4.0, "p1"))
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


def test_a_track_file_holds_its_media_on_disk_within_a_tenth_of_a_second(
    tmp_path: Path,
) -> None:
    """While a track is being written, what it received is on disk within CLUSTER_MS
    (100 ms), not when the file closes or a one-second cluster ends: what a kill -9 or a
    disk that fills takes is that much, at most."""
    ffmpeg = tmp_path / "a.webm"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
         "-c:a", "libopus", str(ffmpeg)],
        check=True,
    )  # fmt: skip
    with av.open(str(ffmpeg)) as source:
        packets = [bytes(p) for p in source.demux(audio=0) if p.size]
    track = TrackFile(
        "a1", "p1", "petitioner", "王某某", "audio", "opus", "microphone", clock_rate=48000
    )
    writer = _Writer(tmp_path, "a1.webm", track, "2026-12-05T10:00:00", packets[0])
    try:
        for i, data in enumerate(packets[:25]):  # half a second of 20 ms frames
            writer.write(data, i * 960, True)
        assert CLUSTER_MS <= 100
        assert written_seconds(tmp_path / "a1.webm") >= 0.5 - 0.02 - 0.1
    finally:
        writer.close()


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
    folder = root / ("b" * 32)

    def written() -> float:
        """Seconds of media in the shortest track file written so far."""
        state = load_state(folder)
        if state is None or len([t for t in state.tracks if t.files]) < 2:
            return 0.0
        return min(written_seconds(folder / t.files[0]) for t in state.tracks)

    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "recording"
        started = time.time()
        seen = wait_until(lambda: (s := written()) >= 10.0 and s, timeout=60, what="10 s written")
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
        assert duration >= seen - 0.1 and killed - started >= 10.0, (track.kind, duration)
        assert decode_errors(fixed) == ""
    assert recover(root) == []  # once repaired, not again


def test_a_file_that_cannot_be_repaired_stays_out_of_the_playable_list(tmp_path: Path) -> None:
    """After a crash, a file with no complete frame (garbage, or empty) is not played: it is
    named in its track's ``unrepairable`` by its name in the recording's folder, its span is
    a gap, and no server path is written into recording.json."""
    root = tmp_path / "recordings"
    folder = root / ("f" * 32)
    (folder / "tracks").mkdir(parents=True)
    (folder / "tracks" / "petitioner-camera-v1.webm").write_bytes(os.urandom(4096))
    (folder / "tracks" / "petitioner-microphone-a1.webm").write_bytes(b"")
    started = time.time() - 30
    tracks = [
        TrackFile("v1", "p1", "petitioner", "王某某", "video", "vp8", "camera",
                  ["tracks/petitioner-camera-v1.webm"], started, 0, 90000, started + 20),
        TrackFile("a1", "p1", "petitioner", "王某某", "audio", "opus", "microphone",
                  ["tracks/petitioner-microphone-a1.webm"], started, 0, 48000, started + 20),
    ]  # fmt: skip
    save_state(folder, VisitRecording(visit_id="f" * 32, started_at=started, tracks=tracks))

    assert [r.visit_id for r in recover(root)] == ["f" * 32]
    state = load_state(folder)
    assert state is not None and state.state is RecordingState.interrupted
    for track, name in zip(state.tracks, [t.files[0] for t in tracks], strict=True):
        assert track.files == [] and track.interrupted_originals == []
        assert track.unrepairable == [name] and (folder / name).exists()  # kept, not played
        (gap,) = track.gaps
        assert gap.start == started and gap.end == started + 20
        assert gap.reason == f"录像文件 {name} 损坏，无法修复，此段无法播放"
    assert not list((folder / "tracks").glob("*-repaired*"))  # no half-made copy left
    assert str(tmp_path) not in (folder / "recording.json").read_text()


def test_a_signed_recording_is_never_rewritten_by_recovery_or_a_late_stop(
    tmp_path: Path,
) -> None:
    """A recording signed while its file still said ``recording`` (the pipeline stopped
    waiting for a room held elsewhere): neither the recovery at the next start nor the
    sink's late stop writes into it, so its signed files stay as signed."""
    root = tmp_path / "recordings"
    folder = root / ("d" * 32)
    (folder / "tracks").mkdir(parents=True)
    (folder / "tracks" / "petitioner-camera-v1.webm").write_bytes(os.urandom(4096))
    started = time.time() - 30
    track = TrackFile("v1", "p1", "petitioner", "王某某", "video", "vp8", "camera",
                      ["tracks/petitioner-camera-v1.webm"], started, 0, 90000)  # fmt: skip
    save_state(folder, VisitRecording(visit_id="d" * 32, started_at=started, tracks=[track]))
    (folder / "SHA256SUMS").write_text("signed\n")
    before = {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    assert recover(root) == []
    sink = RecorderSink(root)
    sink.start("d" * 32)
    sink.stop("d" * 32)
    sink.close()
    assert {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_the_ended_state_is_saved_once_the_disk_has_room_again(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The disk is full when the visit ends: its last recording.json (``queued``, the end
    time, every track ended) is saved again until it is on disk, instead of the pipeline
    taking the state of the last save that worked; the warning then clears."""
    root = tmp_path / "recordings"
    folder = root / ("e" * 32)
    full = [False]

    def save(where: Path, recording: VisitRecording) -> None:
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        save_state(where, recording)

    monkeypatch.setattr(sink_module, "save_state", save)
    failures: list[tuple[str, str, str, float]] = []
    recoveries: list[tuple[str, float, float]] = []
    sink = RecorderSink(
        root,
        on_failure=lambda *a: failures.append(a),
        on_recovered=lambda *a: recoveries.append(a),
    )
    sink.retry_seconds = 0.2
    try:
        sink.start("e" * 32)
        sink.flush()
        assert (recorded := load_state(folder)) is not None
        assert recorded.state is RecordingState.recording
        full[0] = True
        sink.stop("e" * 32)
        sink.flush()
        assert failures and "无法写入 recording.json" in failures[0][2]
        assert (stale := load_state(folder)) is not None
        assert stale.state is RecordingState.recording  # what the pipeline would take
        full[0] = False  # an administrator frees space
        saved = wait_until(
            lambda: (s := load_state(folder)) is not None and s.state is RecordingState.queued,
            timeout=10,
            what="the ended state on disk",
        )
        assert saved
        assert (ended := load_state(folder)) is not None and ended.stopped_at is not None
        wait_until(lambda: recoveries, timeout=10, what="the warning cleared")
        sink.flush()
        assert "e" * 32 not in sink._visits  # forgotten once saved
    finally:
        sink.close()


async def test_a_room_still_live_writes_no_track_into_a_signed_recording(tmp_path: Path) -> None:
    """The recording was signed while a node still held the visit's room (ended elsewhere):
    the tracks published there are not written into the signed folder."""
    announce_addresses(["127.0.0.1"])
    root = tmp_path / "recordings"
    folder = root / ("c" * 32)
    sink = RecorderSink(root)
    counter = PacketCounter()
    relay = Relay(sinks=[sink, counter])
    room = relay.room("c" * 32)
    room.describe("p1", "petitioner", "王某某")
    room.start_recording()
    sink.flush()
    (folder / "SHA256SUMS").write_text("signed\n")
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    pc = await publish_av(room, "p1")
    try:
        await wait_for(counter.recorded(2.0, "p1"))
        room.stop_recording()
        sink.flush()
        after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        assert after == before
    finally:
        await room.close()
        await pc.close()
        sink.close()


def test_a_crashed_track_never_ends_after_its_files_last_write(tmp_path: Path) -> None:
    """The first frame's arrival can lag the stream's pace; its arrival plus the media in
    the file would then put the interruption after the crash. The file's last write bounds
    it."""
    root = tmp_path / "recordings"
    folder = root / ("e" * 32)
    (folder / "tracks").mkdir(parents=True)
    path = folder / "tracks" / "petitioner-microphone-a1.webm"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=4",
         "-c:a", "libopus", str(path)],
        check=True,
    )  # fmt: skip
    last_write = time.time() - 10
    os.utime(path, (last_write, last_write))
    late_start = last_write - 3.9  # 4 s of media would end 0.1 s after the last write
    track = TrackFile("a1", "p1", "petitioner", "王某某", "audio", "opus", "microphone",
                      ["tracks/petitioner-microphone-a1.webm"], late_start, 0, 48000)  # fmt: skip
    save_state(folder, VisitRecording(visit_id="e" * 32, started_at=late_start, tracks=[track]))

    assert [r.visit_id for r in recover(root)] == ["e" * 32]
    state = load_state(folder)
    assert state is not None and state.interrupted_at is not None
    assert state.interrupted_at == state.tracks[0].wall_end == last_write


async def test_a_full_disk_is_reported_the_warning_clears_and_the_gap_is_on_record(
    tmp_path: Path, make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    """Recordings on a small tmpfs that a filler leaves 16 KiB of: the disk fills; the
    failure is reported (the technical reason, no server path), the subscriber keeps
    receiving; once space is freed writing resumes in a new segment and the recovery is
    reported, the segment the failure cut is repaired (the cut original kept), no part file
    is empty, and the missing span is in recording.json and in the recording's API."""
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
        failures: list[tuple[str, str, str, float]] = []
        recoveries: list[tuple[str, float, float]] = []
        sink = RecorderSink(
            mount / "recordings",
            on_failure=lambda *a: failures.append(a),
            on_recovered=lambda *a: recoveries.append(a),
        )
        relay = Relay(sinks=[sink])
        visit_id = visit["id"]
        folder = mount / "recordings" / visit_id
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

        await wait_for(_true(lambda: failures), within=60)  # the disk fills
        _, _, detail, since = failures[0]
        assert "[Errno 28]" in detail and str(mount) not in detail, detail
        before = len(received)
        await wait_for(_true(lambda: len(received) >= before + 30))  # media still flows

        # an administrator frees space: writing resumes in a new segment, the gap is closed,
        # and the pages are told (the red warning clears)
        filler.unlink()

        async def resumed() -> bool:
            await asyncio.to_thread(sink.flush)
            state = load_state(folder)
            return bool(
                recoveries
                and state is not None
                and any(t.gaps for t in state.tracks)
                and all(t.gaps[-1].end is not None for t in state.tracks if t.gaps)
            )

        await wait_for(resumed, within=60)
        room.stop_recording()
        sink.flush()
        await room.close()
        await pc.close()
        await subscriber.close()
        sink.close()
        assert recoveries[0][0] == visit_id and since <= recoveries[0][1] < recoveries[0][2]

        state = load_state(folder)
        assert state is not None
        record = (folder / "recording.json").read_text()
        assert str(mount) not in record  # relative names only
        assert [p.name for p in (folder / "tracks").iterdir() if p.stat().st_size == 0] == []
        cut = [t for t in state.tracks if t.interrupted_originals]
        assert cut, [(t.kind, t.files, t.gaps) for t in state.tracks]
        for track in (t for t in state.tracks if t.gaps):
            gap = track.gaps[0]
            assert gap.end is not None and gap.start < gap.end
            assert gap.reason == "磁盘空间不足，此段未能录下"
            assert track.files and track.unrepairable == []
            for name in track.files:
                assert (
                    folder / name
                ).stat().st_size > 0 and name not in track.interrupted_originals
        for track in cut:
            for original in track.interrupted_originals:
                assert (folder / original).exists()  # kept, as evidence
                repaired = original.replace(".webm", "-repaired.webm")
                assert repaired in track.files
                assert decode_errors(folder / repaired) == ""

        # the missing spans in the recording's API, as staff see it
        async with Database(migrated).writer() as db:
            db.add(
                Recording(
                    visit_id=visit_id,
                    state=RecordingState.recording,
                    folder=str(folder),
                    details={},
                )
            )
        judge = await make_client()
        await login(judge, "judge_a")
        answer = await judge.get(f"/api/v1/visits/{visit_id}/recording")
        assert answer.status == 200
        text = await answer.text()
        assert str(mount) not in text
        gaps = json.loads(text)["gaps"]
        assert sorted(g["kind"] for g in gaps) == sorted(t.kind for t in state.tracks if t.gaps)
        for gap in gaps:
            assert gap["role"] == "petitioner" and gap["reason"] == "磁盘空间不足，此段未能录下"
            assert gap["start"] < gap["end"]
    finally:
        for task in tasks:
            task.cancel()
        run(["umount", "-l", str(mount)], check=False)


async def test_the_pages_see_a_plain_warning_that_clears_when_writing_resumes(
    make_client: MakeClient, app_server: Any, visit: dict[str, Any], migrated: Settings
) -> None:
    """The server's recorder reports a write failure and then its recovery (as the sink does
    from its writer thread): every page of the visit gets ``recording_state`` with a plain
    Chinese message naming the time (no errno text), then ``ok: true`` naming the missing
    span; the technical reason and the recovery are in the audit trail."""
    staff = await make_client()
    await login(staff, "judge_a")
    judge = Peer()
    judge.sio.on("recording_state", judge._recorder("recording_state"), namespace="/visit")
    await judge.connect(staff, _cookie(staff))
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    (sink,) = app_server.app[VISITS].relay.sinks
    assert isinstance(sink, RecorderSink) and sink.on_failure and sink.on_recovered
    since = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC, 2026-05-29 04:26:40 in court time
    detail = "OSError [Errno 28] No space left on device"
    try:
        await asyncio.to_thread(sink.on_failure, visit["id"], "t1", detail, since)
        warning = await judge.next("recording_state")
        assert warning == {
            "recording": True,
            "ok": False,
            "message": "录像写入暂时中断（自 04:26:40 起），系统正在恢复",
        }
        await asyncio.to_thread(sink.on_recovered, visit["id"], since, since + 12)
        cleared = await judge.next("recording_state")
        assert cleared == {
            "recording": True,
            "ok": True,
            "message": "录像已恢复写入；04:26:40—04:26:52 的内容未能录下",
        }
    finally:
        await judge.close()

    async def audited() -> dict[str, dict[str, Any]]:
        async with Database(migrated).reader() as db:
            rows = await db.scalars(select(AuditEvent).where(AuditEvent.target_id == visit["id"]))
            return {e.action: e.detail for e in rows if e.action.startswith("recording.write")}

    await wait_for(lambda: _has(audited, "recording.write_resumed"))
    events = await audited()
    assert events["recording.write_failed"] == {"track": "t1", "message": detail}
    assert events["recording.write_resumed"] == {
        "missing_from": "2026-05-29T04:26:40+08:00",
        "missing_to": "2026-05-29T04:26:52+08:00",
    }


async def test_someone_joining_a_call_whose_recording_fails_sees_the_warning_and_clears_it_for_none(
    make_client: MakeClient, app_server: Any, visit: dict[str, Any]
) -> None:
    """The recorder cannot write; someone joins the call meanwhile (the judge again, from a
    new tab): the newcomer is shown the warning, and nobody's warning is cleared by the
    join: the next state the others get is the recorder's own recovery."""
    staff, judge, guest, _ = await admitted_call(make_client, visit)
    for peer in (judge, guest):
        peer.sio.on("recording_state", peer._recorder("recording_state"), namespace="/visit")
    (sink,) = app_server.app[VISITS].relay.sinks
    assert isinstance(sink, RecorderSink) and sink.on_failure and sink.on_recovered
    since = 1_780_000_000.0
    again = Peer()
    try:
        await asyncio.to_thread(sink.on_failure, visit["id"], "t1", "OSError", since)
        warning = await guest.next("recording_state")
        assert warning["ok"] is False
        again.sio.on("recording_state", again._recorder("recording_state"), namespace="/visit")
        await again.connect(staff, _cookie(staff))
        assert (await again.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
        assert await again.next("recording_state") == warning
        await asyncio.to_thread(sink.on_recovered, visit["id"], since, since + 12)
        cleared = await guest.next("recording_state")
        assert cleared["ok"] is True and cleared["message"].startswith("录像已恢复写入")
    finally:
        for peer in (again, judge, guest):
            await peer.close()


async def _has(read: Callable[[], Awaitable[dict[str, Any]]], key: str) -> bool:
    return key in await read()


def _true(predicate: Callable[[], object]) -> Callable[[], Awaitable[bool]]:
    """A synchronous condition for ``wait_for``."""

    async def check() -> bool:
        return bool(predicate())

    return check


async def test_composite_shows_the_parties_and_the_overlay(tmp_path: Path) -> None:
    """Two parties recorded for 4 s → an H.264 + AAC MP4 of that length, decoding without
    errors, the parties' pictures side by side and the overlay drawn over its bottom band."""
    announce_addresses(["127.0.0.1"])
    sink = RecorderSink(tmp_path)
    counter = PacketCounter()
    relay = Relay(sinks=[sink, counter])
    visit_id = "d" * 32
    room = relay.room(visit_id)
    room.describe("p1", "judge", "一中院接访法官")
    room.describe("p2", "petitioner", "王某某")
    room.start_recording({"petition_number": "（2026）京01信123号", "court_name": "东城区人民法院"})
    pcs = [
        await publish_av(room, "p1"),
        await publish_av(room, "p2"),
    ]
    await wait_for(counter.recorded(4.0, "p1", "p2"))
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
    clock = LaterSink(sink)  # the recorder's clock, moved on while the petitioner is away
    counter = PacketCounter()
    relay = Relay(sinks=[clock, counter])
    visit_id = "e" * 32
    room = relay.room(visit_id)
    room.describe("p1", "petitioner", "王某某")
    room.start_recording()
    first = await publish_av(room, "p1")
    await wait_for(counter.recorded(2.5, "p1"))
    await room.leave("p1")  # the connection dropped
    await first.close()
    clock.offset = 2.0  # away for two seconds
    room.describe("p2", "petitioner", "王某某")  # rejoined: same person, new participant
    second = await publish_av(room, "p2")
    await wait_for(counter.recorded(2.5, "p2"))
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


def test_a_recording_saved_again_without_files_after_finalize_is_still_signed_as_empty(
    tmp_path: Path,
) -> None:
    """Nobody published: the pipeline, waiting in vain for recording.json, wrote an empty
    one and finalized it; the sink's own last save (``queued``, no track) lands after that.
    The later steps still see nothing to composite (a composite of nothing has no file to
    rename), and the recording is signed as empty."""
    from recorder.jobs import run_step
    from recorder.manifest import verify

    folder = tmp_path / "recordings" / "visit-late-save"
    folder.mkdir(parents=True)
    save_state(folder, VisitRecording(visit_id=folder.name, state=RecordingState.empty))
    config = {"data_dir": str(tmp_path), "timezone": "Asia/Shanghai"}
    assert run_step("finalize", str(folder), config)["empty"] is True
    late = VisitRecording(visit_id=folder.name, state=RecordingState.queued)
    late.stopped_at = time.time()
    save_state(folder, late)  # the sink's queued save, written late

    assert run_step("composite", str(folder), config)["skipped"] is True
    assert run_step("transcribe", str(folder), config)["available"] is False
    assert run_step("sign", str(folder), config)["empty"] is True
    state = load_state(folder)
    assert state is not None and state.state is RecordingState.empty
    assert not (folder / "composite.mp4").exists()
    assert verify(folder).ok


def test_finalize_does_not_sign_files_that_are_still_being_written(tmp_path: Path) -> None:
    """Still marked recording after the wait: a folder whose files still grow (the node
    holding the room cut off from the others, still recording) is not finalized, so it is
    not signed while it changes; one where nothing moves (that node died) is repaired and
    marked interrupted (recover_folder), then finalized."""
    folder = tmp_path / "visit"
    (folder / "tracks").mkdir(parents=True)
    save_state(folder, VisitRecording(visit_id="v", state=RecordingState.recording))
    track = folder / "tracks" / "judge-camera-1.webm"
    track.write_bytes(b"\x1a\x45\xdf\xa3")
    writing = threading.Event()
    stop = threading.Event()

    def record() -> None:  # the other node's sink, a frame every 20 ms
        while not stop.is_set():
            with track.open("ab") as fh:
                fh.write(b"frame")
            writing.set()
            stop.wait(0.02)

    writer = threading.Thread(target=record)
    writer.start()
    try:
        assert writing.wait(10)
        with pytest.raises(StillWriting, match="仍在写入"):
            wait_closed(folder, timeout=0.1, quiet=0.5)
    finally:
        stop.set()
        writer.join()
    left = wait_closed(folder, timeout=0.1, quiet=0.2)
    assert left.state is RecordingState.interrupted  # its node is gone: repaired here
