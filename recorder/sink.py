"""一案一录: every published track of a visit is written as it arrives, encoded frames muxed
as they are (no decode, no encode), one Matroska/WebM file per track.

The relay calls the sink on its event loop; the sink only copies each frame into a queue.
One writer thread per sink does all file work, so a slow or full disk never stalls media.
Each packet is flushed to the file as it is written (``flush_packets``), so a ``kill -9``
loses at most the frame in hand; ``recover`` makes interrupted files playable on the next
start. A visit's folder holds ``tracks/`` and ``recording.json`` (state, tracks, gaps), the
visit's one timeline: every track's first frame has its wall-clock time, and the files keep
the RTP timing, so any instant of any track maps to wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from media.room import PublishedTrack

log = logging.getLogger("vreception.recorder")

STATE_FILE = "recording.json"
ROLE_NAMES = {  # as the composite, transcripts and case files name the parties
    "judge": "接访法官",
    "petitioner": "信访人",
    "lawyer": "律师",
    "mediator": "调解员",
    "operator": "操作员",
}
RETRY_SECONDS = 5.0
BATCH_SECONDS = 0.05


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


@dataclass
class Gap:
    """A span of a track that is not in its files (a write failure)."""

    start: float
    end: float | None = None
    reason: str = ""


@dataclass
class TrackFile:
    """One recorded track (possibly in several segment files after a write failure)."""

    track_id: str
    participant_id: str
    role: str
    name: str
    kind: str
    codec: str
    source: str
    files: list[str] = field(default_factory=list)
    wall_start: float | None = None  # arrival time of the first recorded frame
    pts_start: int | None = None  # RTP timestamp of that frame
    clock_rate: int = 90000
    wall_end: float | None = None
    packets: int = 0
    bytes: int = 0
    gaps: list[Gap] = field(default_factory=list)
    ended: bool = False
    interrupted_originals: list[str] = field(default_factory=list)  # as a crash left them


@dataclass
class VisitRecording:
    """What is known of one visit's recording; saved as recording.json."""

    visit_id: str
    state: str = "recording"  # recording → stopped | interrupted
    started_at: float = field(default_factory=time.time)
    stopped_at: float | None = None
    interrupted_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    tracks: list[TrackFile] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started_at", "stopped_at", "interrupted_at"):
            if data[key] is not None:
                data[key + "_iso"] = iso(data[key])
        for track in data["tracks"]:
            if track["wall_start"] is not None:
                track["wall_start_iso"] = iso(track["wall_start"])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VisitRecording:
        tracks = []
        for t in data.get("tracks", []):
            t = {k: v for k, v in t.items() if k in TrackFile.__dataclass_fields__}
            t["gaps"] = [Gap(**g) for g in t.get("gaps", [])]
            tracks.append(TrackFile(**t))
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["tracks"] = tracks
        return cls(**fields)


def load_state(folder: Path) -> VisitRecording | None:
    try:
        return VisitRecording.from_json(json.loads((folder / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def save_state(folder: Path, recording: VisitRecording) -> None:
    """Write recording.json atomically (a crash leaves the old or the new one)."""
    tmp = folder / (STATE_FILE + ".tmp")
    with tmp.open("w") as fh:
        json.dump(recording.to_json(), fh, ensure_ascii=False, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(folder / STATE_FILE)


def vp8_size(keyframe: bytes) -> tuple[int, int]:
    """Width and height from a VP8 keyframe header (RFC 6386 §9.1); (0, 0) if not one."""
    if len(keyframe) < 10 or keyframe[3:6] != b"\x9d\x01\x2a":
        return 0, 0
    return (
        int.from_bytes(keyframe[6:8], "little") & 0x3FFF,
        int.from_bytes(keyframe[8:10], "little") & 0x3FFF,
    )


FailureHandler = Callable[[str, str, str], None]  # visit id, track id, message


class _Writer:
    """One open file of one track (runs in the writer thread only)."""

    def __init__(self, path: Path, track: TrackFile, started: str, first: bytes) -> None:
        fmt = "webm" if track.codec in ("vp8", "vp9", "opus") else "matroska"
        # flush_packets: every packet reaches the file at once; clusters of at most 1 s
        self.container: Any = av.open(
            str(path), "w", format=fmt, options={"flush_packets": "1", "cluster_time_limit": "1000"}
        )
        self.container.metadata["START_WALLCLOCK"] = started
        self.container.metadata["TITLE"] = f"{track.role} {track.source} {track.track_id}"
        self.stream: Any
        if track.kind == "audio":
            # an encoder context only so that WebM gets its OpusHead; it never encodes
            self.stream = self.container.add_stream("libopus", rate=48000)
            self.stream.layout = "stereo"
        else:
            width, height = vp8_size(first) if track.codec == "vp8" else (0, 0)
            self.stream = self.container.add_mux_stream(
                track.codec, width=width or 640, height=height or 480
            )
        self.time_base = Fraction(1, track.clock_rate)

    def write(self, data: bytes, pts: int, keyframe: bool) -> None:
        packet = av.Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = self.time_base
        packet.is_keyframe = keyframe
        packet.stream = self.stream
        self.container.mux(packet)

    def close(self) -> None:
        self.container.close()


class RecorderSink:
    """The relay's hidden subscriber: records every track of the visits being recorded."""

    def __init__(self, root: Path, on_failure: FailureHandler | None = None) -> None:
        self.root = Path(root)
        self.on_failure = on_failure
        self._live: dict[str, dict[str, PublishedTrack]] = {}  # visit → track id → track
        self._recording: dict[str, VisitRecording] = {}  # visits being recorded
        self._visits: dict[str, VisitRecording] = {}  # and those still being closed
        self._files: dict[str, TrackFile] = {}  # track id → its record (recorded visits)
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
        self._thread.start()
        self._writers: dict[str, _Writer] = {}  # writer thread only
        self._keyframe: dict[str, Callable[[], None]] = {}  # track id → ask for a keyframe
        self._retry_at: dict[str, float] = {}  # writer thread only

    # ------------------------------------------------------------ relay side (event loop)

    def folder(self, visit_id: str) -> Path:
        return self.root / visit_id

    def start(self, visit_id: str, details: dict[str, Any] | None = None) -> None:
        """The visit is in progress: record all its tracks, those live and those to come."""
        if visit_id in self._recording:
            return
        # the same record again (a rejoin after the room emptied, a restart): the one still
        # in memory is newer than its file, whose last save may still be queued
        recording = (
            self._visits.get(visit_id)
            or load_state(self.folder(visit_id))
            or VisitRecording(visit_id=visit_id)
        )
        recording.state, recording.stopped_at = "recording", None
        recording.details.update(details or {})
        self._recording[visit_id] = self._visits[visit_id] = recording
        self._queue.put(("save", visit_id))
        for track in self._live.get(visit_id, {}).values():
            self._open(recording, track)
        log.info("visit %s: recording", visit_id)

    def stop(self, visit_id: str) -> VisitRecording | None:
        """The visit ended: close its files; recording.json says ``stopped``."""
        recording = self._recording.pop(visit_id, None)
        if recording is None:
            return None
        for track in recording.tracks:
            if not track.ended:
                self._files.pop(track.track_id, None)
                self._queue.put(("close", track.track_id, time.time()))
        recording.state, recording.stopped_at = "stopped", time.time()
        self._queue.put(("save", visit_id))
        self._queue.put(("forget", visit_id))
        log.info("visit %s: recording stopped", visit_id)
        return recording

    def track_started(self, visit_id: str, track: PublishedTrack) -> None:
        self._live.setdefault(visit_id, {})[track.id] = track
        recording = self._recording.get(visit_id)
        if recording is not None:
            self._open(recording, track)

    def _open(self, recording: VisitRecording, track: PublishedTrack) -> None:
        if track.id in self._files:
            return
        entry = TrackFile(
            track_id=track.id,
            participant_id=track.participant_id,
            role=track.role,
            name=track.name,
            kind=track.kind,
            codec=track.codec,
            source=track.source.value,
            clock_rate=48000 if track.kind == "audio" else 90000,
        )
        recording.tracks.append(entry)
        self._files[track.id] = entry
        if track.kind == "video":
            loop = asyncio.get_running_loop()
            request = track.request_keyframe

            def from_writer() -> None:
                loop.call_soon_threadsafe(request)

            self._keyframe[track.id] = from_writer
            request()  # the file must start on a keyframe

    def packet(self, track: PublishedTrack, packet: av.Packet[Any], arrival: float) -> None:
        entry = self._files.get(track.id)
        if entry is None:
            return
        # a copy of the bytes: the packet object is shared with the subscribers' senders
        self._queue.put(
            ("packet", track.visit_id, entry, bytes(packet), int(packet.pts or 0),
             bool(packet.is_keyframe), arrival)
        )  # fmt: skip

    def track_ended(self, track: PublishedTrack) -> None:
        self._live.get(track.visit_id, {}).pop(track.id, None)
        if not self._live.get(track.visit_id):
            self._live.pop(track.visit_id, None)
        entry = self._files.pop(track.id, None)
        self._keyframe.pop(track.id, None)
        if entry is not None:
            self._queue.put(("close", track.id, time.time()))
            self._queue.put(("save", track.visit_id))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until the writer thread has done everything queued so far."""
        done = threading.Event()
        self._queue.put(("call", done.set))
        if not done.wait(timeout):
            raise TimeoutError("recorder writer did not catch up")

    def close(self) -> None:
        for visit_id in list(self._recording):
            self.stop(visit_id)
        self._queue.put(None)
        self._thread.join(timeout=30)

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        # Work in batches: waking this thread for every frame would hand the GIL back and
        # forth with the relay's event loop (measured: most of the recorder's cost). A frame
        # waits at most BATCH_SECONDS before it is written, and is flushed when written.
        while True:
            batch = [self._queue.get()]
            time.sleep(BATCH_SECONDS)
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._queue.get_nowait())
            for item in batch:
                if item is None:
                    self._close_all()
                    return
                try:
                    self._handle(item)
                except Exception:  # never let the writer die: log, go on
                    log.exception("recorder: %s failed", item[0])

    def _close_all(self) -> None:
        for writer in self._writers.values():
            with contextlib.suppress(Exception):
                writer.close()

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "packet":
            _, visit_id, entry, data, pts, keyframe, arrival = item
            self._write(visit_id, entry, data, pts, keyframe, arrival)
        elif kind == "close":
            _, track_id, at = item
            writer = self._writers.pop(track_id, None)
            if writer is not None:
                writer.close()
            entry = self._entry(track_id)
            if entry is not None:
                entry.ended = True
                entry.wall_end = entry.wall_end or at
        elif kind == "save":
            self._save(item[1])
        elif kind == "forget":
            if item[1] not in self._recording:
                self._visits.pop(item[1], None)
        elif kind == "call":
            item[1]()

    def _save(self, visit_id: str) -> None:
        recording = self._visits.get(visit_id)
        if recording is None:
            return
        folder = self.folder(visit_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            save_state(folder, recording)
        except OSError as exc:
            self._failed(visit_id, "", f"无法写入录像状态：{exc}")

    def _entry(self, track_id: str) -> TrackFile | None:
        for recording in list(self._visits.values()):
            for entry in recording.tracks:
                if entry.track_id == track_id:
                    return entry
        return None

    def _write(
        self, visit_id: str, entry: TrackFile, data: bytes, pts: int, keyframe: bool, at: float
    ) -> None:
        writer = self._writers.get(entry.track_id)
        if writer is None:
            if time.monotonic() < self._retry_at.get(entry.track_id, 0.0):
                return  # after a failure, try again only every RETRY_SECONDS
            if entry.kind == "video" and not keyframe:
                if entry.track_id in self._retry_at:  # resuming: ask for a keyframe
                    self._keyframe.get(entry.track_id, lambda: None)()  # (rate-limited)
                return  # a file starts on a keyframe
            writer = self._open_file(visit_id, entry, at, data)
            if writer is None:
                return
        first = entry.pts_start is None
        if entry.pts_start is None:
            entry.pts_start, entry.wall_start = pts, at
        if pts < entry.pts_start:
            return  # older than the file's first frame (reordered): cannot be placed
        try:
            # the relay's pts are RTP ticks rebased to the stream's start (wrap-safe)
            writer.write(data, pts - entry.pts_start, keyframe)
        except (OSError, av.FFmpegError) as exc:
            self._writers.pop(entry.track_id, None)
            with contextlib.suppress(Exception):
                writer.close()
            entry.gaps.append(Gap(start=at, reason=str(exc)))
            self._retry_at[entry.track_id] = time.monotonic() + RETRY_SECONDS
            self._failed(visit_id, entry.track_id, f"录像写入失败：{exc}")
            self._save(visit_id)
            return
        entry.packets += 1
        entry.bytes += len(data)
        entry.wall_end = at
        if first:
            self._save(visit_id)  # the file and its wall-clock start are on record at once

    def _open_file(
        self, visit_id: str, entry: TrackFile, at: float, first: bytes
    ) -> _Writer | None:
        folder = self.folder(visit_id) / "tracks"
        ext = "webm" if entry.codec in ("vp8", "vp9", "opus") else "mkv"
        name = f"{entry.role or 'party'}-{entry.source}-{entry.track_id}"
        if entry.files:
            name += f"-part{len(entry.files) + 1}"
        path = folder / f"{name}.{ext}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            writer = _Writer(path, entry, iso(at), first)
        except (OSError, av.FFmpegError) as exc:
            if not entry.gaps or entry.gaps[-1].end is not None:
                entry.gaps.append(Gap(start=at, reason=str(exc)))
            self._retry_at[entry.track_id] = time.monotonic() + RETRY_SECONDS
            self._failed(visit_id, entry.track_id, f"无法创建录像文件：{exc}")
            return None
        self._retry_at.pop(entry.track_id, None)
        if entry.gaps and entry.gaps[-1].end is None:
            entry.gaps[-1].end = at  # writing again: the missing span ends here
        entry.files.append(str(path.relative_to(self.folder(visit_id))))
        self._writers[entry.track_id] = writer
        if entry.pts_start is not None:
            self._save(visit_id)  # a new segment after a failure
        return writer

    def _failed(self, visit_id: str, track_id: str, message: str) -> None:
        log.error("visit %s: recording failure on %s: %s", visit_id, track_id or "-", message)
        if self.on_failure is not None:
            self.on_failure(visit_id, track_id, message)


# ------------------------------------------------------------------ after a crash


def repair_file(path: Path) -> tuple[Path, int, float]:
    """Copy an interrupted file's complete frames (no re-encode) into a playable file beside
    it; returns the new file, its packet count and its duration in seconds."""
    target = path.with_name(path.stem + "-repaired" + path.suffix)
    packets, last = 0, 0.0
    with av.open(str(path)) as source:
        stream = source.streams[0]
        fmt = "webm" if path.suffix == ".webm" else "matroska"
        with av.open(str(target), "w", format=fmt) as out:
            out.metadata.update(source.metadata)
            copy = out.add_stream_from_template(stream)
            try:
                for packet in source.demux(stream):
                    if packet.dts is None:
                        continue  # the demuxer's end-of-stream marker
                    if packet.pts is not None and packet.time_base is not None:
                        end = float((packet.pts + int(packet.duration or 0)) * packet.time_base)
                        last = max(last, end)
                    packet.stream = copy
                    out.mux(packet)
                    packets += 1
            except (av.FFmpegError, EOFError):  # the frame the crash cut short
                pass
    return target, packets, last


def recover(root: Path) -> list[VisitRecording]:
    """On start: every recording still marked ``recording`` was interrupted (a crash or a
    kill). Make its files playable and mark it interrupted at the last frame written."""
    repaired: list[VisitRecording] = []
    if not root.is_dir():
        return repaired
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        recording = load_state(folder)
        if recording is None or recording.state != "recording":
            continue
        interrupted_at = recording.started_at
        for track in recording.tracks:
            files = []
            for name in track.files:
                original = folder / name
                if not original.exists() or original.stem.endswith("-repaired"):
                    continue
                try:
                    fixed, count, duration = repair_file(original)
                except (av.FFmpegError, OSError) as exc:
                    log.error("visit %s: cannot repair %s: %s", recording.visit_id, name, exc)
                    track.gaps.append(Gap(start=track.wall_start or 0.0, reason=str(exc)))
                    continue
                files.append(str(fixed.relative_to(folder)))
                track.interrupted_originals.append(name)
                if track.wall_start is not None:
                    track.wall_end = track.wall_start + duration
                    interrupted_at = max(interrupted_at, track.wall_end)
                track.packets = count
            # the playable copies stand in the timeline; the originals stay, as evidence
            track.files = [f for f in track.files if f not in track.interrupted_originals]
            track.files += [f for f in files if f not in track.files]
            track.ended = True
        recording.state = "interrupted"
        recording.interrupted_at = interrupted_at
        save_state(folder, recording)
        log.warning(
            "visit %s: recording was interrupted at %s; repaired",
            recording.visit_id,
            iso(interrupted_at),
        )
        repaired.append(recording)
    return repaired
