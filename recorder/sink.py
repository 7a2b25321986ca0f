"""一案一录: every published track of a visit is written as it arrives, encoded frames muxed
as they are (no decode, no encode), one Matroska/WebM file per track.

The relay calls the sink on its event loop; the sink only copies each frame into a queue.
One writer thread per sink does all file work, so a slow or full disk never stalls media.
Each track file is written in Matroska clusters of at most ``CLUSTER_MS`` (100 ms), each
flushed as it closes (Matroska holds the open cluster in memory), so a ``kill -9`` loses at
most that much of each track; ``recover`` makes interrupted files playable on the next
start. A visit's folder holds ``tracks/`` and ``recording.json`` (state, tracks, gaps), the
visit's one timeline: every track's first frame has its wall-clock time, and the files keep
the RTP timing, so any instant of any track maps to wall-clock time.

Several nodes can write one visit's folder (shared storage): the room moved to another node
(its node died, or lost the room's lease). Each sink saves its own tracks merged with those
the file already holds (by track id), never the whole file as it alone knows it; and a sink
that opens a room whose folder is still marked ``recording`` by another recorder repairs the
folder first and marks it interrupted (``recover_folder``), as the start-up ``recover`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable, Collection
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import av

from media.encoded import EncodedFrame
from media.room import PublishedTrack
from recorder.state import (
    Gap,
    RecordingState,
    TrackFile,
    VisitRecording,
    is_signed,
    iso,
    load_state,
    recover_folder,
    repair_file,
    save_state,
)

log = logging.getLogger("vreception.recorder")

RETRY_SECONDS = 5.0
# while frames are written, recording.json is saved at least this often (the tracks' ends
# so far): a node that dies leaves its record this far behind at most, and another node
# that took its room over sees within this that it still records
SAVE_SECONDS = 5.0
CLUSTER_MS = 100  # media held in memory per track file, at most (see _Writer)
BATCH_SECONDS = 0.05


def vp8_size(keyframe: bytes) -> tuple[int, int]:
    """Width and height from a VP8 keyframe header (RFC 6386 §9.1); (0, 0) if not one."""
    if len(keyframe) < 10 or keyframe[3:6] != b"\x9d\x01\x2a":
        return 0, 0
    return (
        int.from_bytes(keyframe[6:8], "little") & 0x3FFF,
        int.from_bytes(keyframe[8:10], "little") & 0x3FFF,
    )


FailureHandler = Callable[[str, str, str, float], None]  # visit, track, detail, since
RecoveryHandler = Callable[[str, float, float], None]  # visit id, missing span start, end
# visit id, when it was interrupted: a room taken over found its folder's recorder gone
InterruptionHandler = Callable[[str, float | None], None]


def failure_detail(exc: BaseException) -> str:
    """The technical reason of a write failure, for the log and the audit trail: the error
    and its errno text, never the file's server path."""
    code, text = getattr(exc, "errno", None), getattr(exc, "strerror", None)
    if text:
        return (
            f"{type(exc).__name__} [Errno {code}] {text}"
            if code
            else f"{type(exc).__name__} {text}"
        )
    return type(exc).__name__


def gap_reason(exc: BaseException) -> str:
    """Why a span is missing, as the record and the pages say it (plain Chinese)."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return "磁盘空间不足，此段未能录下"
    return "录像文件写入失败，此段未能录下"


def failure_message(since: float, tz: ZoneInfo) -> str:
    """What every page of the visit shows while the recorder cannot write."""
    return f"录像写入暂时中断（自 {datetime.fromtimestamp(since, tz):%H:%M:%S} 起），系统正在恢复"


def recovery_message(start: float, end: float, tz: ZoneInfo) -> str:
    """What the pages show once writing has resumed: the span that is missing."""
    first, last = datetime.fromtimestamp(start, tz), datetime.fromtimestamp(end, tz)
    return f"录像已恢复写入；{first:%H:%M:%S}—{last:%H:%M:%S} 的内容未能录下"


class _Writer:
    """One open file of one track (runs in the writer thread only)."""

    def __init__(
        self, folder: Path, name: str, track: TrackFile, started: str, first: bytes
    ) -> None:
        self.folder, self.name = folder, name  # the visit's folder; the file relative to it
        self.path = folder / name
        self.packets = 0  # written so far; a file with none is removed, never listed
        fmt = "webm" if track.codec in ("vp8", "vp9", "opus") else "matroska"
        # Matroska keeps a cluster in memory until it closes, whatever flush_packets says:
        # clusters of at most CLUSTER_MS, each flushed as it closes, bound what a kill -9
        # (or a disk that fills) can lose to that much media
        self.container: Any = av.open(
            str(self.path),
            "w",
            format=fmt,
            options={"flush_packets": "1", "cluster_time_limit": str(CLUSTER_MS)},
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
        self.packets += 1

    def close(self) -> None:
        self.container.close()


class RecorderSink:
    """The relay's hidden subscriber: records every track of the visits being recorded."""

    def __init__(
        self,
        root: Path,
        on_failure: FailureHandler | None = None,
        on_recovered: RecoveryHandler | None = None,
        on_interrupted: InterruptionHandler | None = None,
    ) -> None:
        self.root = Path(root)
        self.on_failure = on_failure
        self.on_recovered = on_recovered
        self.on_interrupted = on_interrupted
        # this recorder, in the recording.json it saves while recording (``writer``)
        self.writer_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._owned: set[str] = set()  # track ids this sink records (its to save)
        self._live: dict[str, dict[str, PublishedTrack]] = {}  # visit → track id → track
        self._recording: dict[str, VisitRecording] = {}  # visits being recorded
        self._visits: dict[str, VisitRecording] = {}  # and those still being closed
        self._files: dict[str, TrackFile] = {}  # track id → its record (recorded visits)
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._writers: dict[str, _Writer] = {}  # writer thread only
        self._keyframe: dict[str, Callable[[], None]] = {}  # track id → ask for a keyframe
        self._retry_at: dict[str, float] = {}  # writer thread only
        self.retry_seconds = RETRY_SECONDS  # after a failed write, try again this much later
        self._unsaved: dict[str, float] = {}  # visit → when to save recording.json again
        self.save_seconds = SAVE_SECONDS  # while writing, recording.json saved this often
        self._saved_at: dict[str, float] = {}  # visit → its last save (writer thread)
        self._written: set[str] = set()  # visits with frames written since (writer thread)
        self._forget: set[str] = set()  # stopped visits kept until their state is saved
        self._failing: dict[str, dict[str, float]] = {}  # visit → track id → since (writer)
        self._outage: dict[str, float] = {}  # visit → since when it cannot write (writer)
        self._cut: dict[str, list[tuple[Path, str]]] = {}  # track id → segments a failure cut
        # for monitoring (web/metrics.py); written by the writer thread only
        self.bytes_written = 0  # frame bytes written into track files since start
        self.write_failures = 0  # failures reported (once per track until it recovers)
        self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
        self._thread.start()

    @property
    def recording_visits(self) -> int:
        """Visits being recorded now."""
        return len(self._recording)

    @property
    def failing_visits(self) -> int:
        """Visits whose recording cannot be written now (a failure not yet recovered)."""
        return len(self._failing)

    @property
    def open_files(self) -> int:
        return len(self._writers)

    # ------------------------------------------------------------ relay side (event loop)

    def folder(self, visit_id: str) -> Path:
        return self.root / visit_id

    def start(self, visit_id: str, details: dict[str, Any] | None = None) -> None:
        """The visit is in progress: record all its tracks, those live and those to come."""
        if visit_id in self._recording:
            return
        # the same record again (a rejoin after the room emptied, a restart): the one still
        # in memory is newer than its file, whose last save may still be queued
        recording = self._visits.get(visit_id)
        taken_over = False
        if recording is None:
            recording = load_state(self.folder(visit_id))
            # still marked recording by another recorder: the node that held the room died
            # (or lost it): its files are repaired and the outage put on record first
            taken_over = (
                recording is not None
                and recording.state is RecordingState.recording
                and recording.writer != self.writer_id
                and not self._still_saved(visit_id)
            )
        recording = recording or VisitRecording(visit_id=visit_id)
        recording.state, recording.stopped_at = RecordingState.recording, None
        recording.writer = self.writer_id
        recording.details.update(details or {})
        self._recording[visit_id] = self._visits[visit_id] = recording
        if taken_over:  # in the writer thread (a repair takes a while), before anything else
            self._queue.put(("recover", visit_id))
        self._queue.put(("save", visit_id))
        for track in self._live.get(visit_id, {}).values():
            self._open(recording, track)
        log.info("visit %s: recording", visit_id)

    def stop(self, visit_id: str) -> VisitRecording | None:
        """The visit ended: close its files; recording.json says ``queued`` (for the
        pipeline)."""
        recording = self._recording.pop(visit_id, None)
        if recording is None:
            return None
        for track in recording.tracks:
            # another recorder's tracks (a room taken over) are not this sink's to end
            if not track.ended and track.track_id in self._owned:
                self._files.pop(track.track_id, None)
                self._queue.put(("close", track.track_id, time.time()))
        recording.state, recording.stopped_at = RecordingState.queued, time.time()
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
        self._owned.add(track.id)
        recording.tracks.append(entry)
        self._files[track.id] = entry
        if track.kind == "video":
            loop = asyncio.get_running_loop()
            request = track.request_keyframe

            def from_writer() -> None:
                loop.call_soon_threadsafe(request)

            self._keyframe[track.id] = from_writer
            request()  # the file must start on a keyframe

    def frame(self, track: PublishedTrack, frame: EncodedFrame, arrival: float) -> None:
        entry = self._files.get(track.id)
        if entry is None:
            return
        self._queue.put(
            ("packet", track.visit_id, entry, frame.data, frame.pts, frame.is_keyframe, arrival)
        )

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
            batch: list[tuple[Any, ...] | None] = []
            if self._unsaved:  # a recording.json to save again: wake for it
                wait = max(0.0, min(self._unsaved.values()) - time.monotonic())
                with contextlib.suppress(queue.Empty):
                    batch.append(self._queue.get(timeout=wait))
            else:
                batch.append(self._queue.get())
            if batch:
                time.sleep(BATCH_SECONDS)
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._queue.get_nowait())
            try:
                self._save_again()
            except Exception:  # never let the writer die: log, go on
                log.exception("recorder: saving recording.json again failed")
            for item in batch:
                if item is None:
                    self._close_all()
                    return
                try:
                    self._handle(item)
                except Exception:  # never let the writer die: log, go on
                    log.exception("recorder: %s failed", item[0])
            try:
                self._save_written()
            except Exception:  # never let the writer die: log, go on
                log.exception("recorder: saving recording.json failed")

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
                try:
                    writer.close()
                except (OSError, av.FFmpegError) as exc:  # the disk filled on the last frames
                    log.error("recorder: closing %s failed: %s", writer.name, failure_detail(exc))
                    if writer.packets:
                        self._cut.setdefault(track_id, []).append((writer.folder, writer.name))
                if not writer.packets:
                    self._discard(writer)
            found = self._entry(track_id)
            if found is not None:
                visit_id, entry = found
                entry.ended = True
                entry.wall_end = entry.wall_end or at
                if entry.gaps and entry.gaps[-1].end is None:
                    entry.gaps[-1].end = at  # the track ended before writing resumed
                self._repair_cut(entry)
                self._resumed(visit_id, track_id, at)
            for _, name in self._cut.pop(track_id, []):  # the last chance has passed
                log.error("recorder: %s stays as the failure cut it (not repaired)", name)
            self._retry_at.pop(track_id, None)
        elif kind == "save":
            self._save(item[1])
        elif kind == "recover":
            self._take_over(item[1])
        elif kind == "forget":
            if item[1] in self._unsaved:  # its last state is not on disk yet: keep it
                self._forget.add(item[1])
            elif item[1] not in self._recording:
                self._forgotten(item[1])
        elif kind == "call":
            item[1]()

    def _save_written(self) -> None:
        """Save the recording.json of each visit written to since its last save, once that
        save is ``save_seconds`` old: the tracks' ends on disk never lag far behind."""
        if not self._written:
            return
        now = time.monotonic()
        for visit_id in list(self._written):
            if now - self._saved_at.get(visit_id, 0.0) >= self.save_seconds:
                self._written.discard(visit_id)
                if visit_id in self._recording and visit_id not in self._unsaved:
                    self._save(visit_id)

    def _save(self, visit_id: str) -> None:
        recording = self._visits.get(visit_id)
        if recording is None:
            return
        self._saved_at[visit_id] = time.monotonic()
        folder = self.folder(visit_id)
        if is_signed(folder):
            # processed and signed already (the visit ended on another node while this one
            # still held its room): the record is not rewritten
            log.error("recorder: visit %s is signed already; its late state is not saved", visit_id)
            self._settled(visit_id)
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            save_state(folder, self._merged(folder, recording))
        except OSError as exc:
            detail = f"无法写入 recording.json：{failure_detail(exc)}"
            self._failed(visit_id, "", detail, time.time())
            # saved again until it is on disk: after the visit ended no frame comes to save
            # it, and the pipeline would take the state of the last save that worked
            self._unsaved[visit_id] = time.monotonic() + self.retry_seconds
            return
        self._settled(visit_id)
        self._resumed(visit_id, "", time.time())

    def _merged(self, folder: Path, recording: VisitRecording) -> VisitRecording:
        """What to save: this sink's own tracks as it knows them, every other track as the
        file has it (another node's, written there while the room moved, or repaired after
        its node died), so no save drops a track another recorder listed. While another
        recorder still records into the folder (its tracks not ended), the folder stays
        marked ``recording`` when this sink stops."""
        disk = load_state(folder)
        if disk is None or disk.visit_id != recording.visit_id:
            return recording
        # a track may have several entries (its files before and after a restart of the
        # recording): every entry of an own track is this sink's, as it knows them
        memory = list(recording.tracks)
        others = [t for t in disk.tracks if t.track_id not in self._owned]
        listed = {t.track_id for t in others}
        tracks = others + [t for t in memory if t.track_id not in listed]
        state, writer = recording.state, recording.writer
        if (
            state is not RecordingState.recording
            and disk.state is RecordingState.recording
            and any(not t.ended and t.track_id not in self._owned for t in tracks)
        ):
            state, writer = RecordingState.recording, disk.writer
        ends = [t for t in (recording.interrupted_at, disk.interrupted_at) if t is not None]
        return dataclasses.replace(
            recording,
            state=state,
            writer=writer,
            started_at=min(recording.started_at, disk.started_at),
            interrupted_at=max(ends) if ends else None,
            details={**disk.details, **recording.details},
            tracks=tracks,
        )

    def _still_saved(self, visit_id: str) -> bool:
        """The folder's recording.json was saved lately (its writer saves every
        ``save_seconds`` while frames come): that recorder is alive (it lost the room, it did
        not die), so its files are not repaired under it; the saves merge instead."""
        try:
            saved = (self.folder(visit_id) / "recording.json").stat().st_mtime
        except OSError:
            return False
        return time.time() - saved < 3 * self.save_seconds

    def _take_over(self, visit_id: str) -> None:
        """The room opened here while the folder was still marked ``recording`` by another
        recorder (its node died, or lost the room): its files are repaired and the folder
        marked interrupted at their last frames, before this sink records into it; the
        interruption is reported (``on_interrupted``) as the start-up recovery's are."""
        recovered = recover_folder(self.folder(visit_id))
        if recovered is None:
            return
        recording = self._visits.get(visit_id)
        if recording is not None:
            repaired = {t.track_id: t for t in recovered.tracks}
            for index, track in enumerate(list(recording.tracks)):
                if track.track_id not in self._owned and track.track_id in repaired:
                    recording.tracks[index] = repaired[track.track_id]
            recording.interrupted_at = recovered.interrupted_at
        log.warning(
            "visit %s: taken over from %s, whose recording was interrupted at %s",
            visit_id,
            recovered.writer or "an earlier recorder",
            iso(recovered.interrupted_at or recovered.started_at),
        )
        if self.on_interrupted is not None:
            self.on_interrupted(visit_id, recovered.interrupted_at)

    def _settled(self, visit_id: str) -> None:
        """Nothing of the visit's state is left to save: a stopped visit is forgotten."""
        self._unsaved.pop(visit_id, None)
        if visit_id in self._forget:
            self._forget.discard(visit_id)
            if visit_id not in self._recording:
                self._forgotten(visit_id)

    def _forgotten(self, visit_id: str) -> None:
        self._saved_at.pop(visit_id, None)
        self._written.discard(visit_id)
        recording = self._visits.pop(visit_id, None)
        if recording is not None:
            self._owned.difference_update(t.track_id for t in recording.tracks)

    def _save_again(self) -> None:
        """Save the recording.json of each visit whose last save failed, once it is due."""
        now = time.monotonic()
        for visit_id in [v for v, at in self._unsaved.items() if at <= now]:
            if visit_id in self._visits:
                self._save(visit_id)
            else:
                self._unsaved.pop(visit_id, None)

    def _entry(self, track_id: str) -> tuple[str, TrackFile] | None:
        for visit_id, recording in list(self._visits.items()):
            for entry in recording.tracks:
                if entry.track_id == track_id:
                    return visit_id, entry
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
        pts_start = entry.pts_start if entry.pts_start is not None else pts
        if pts < pts_start:
            return  # older than the track's first frame (reordered): cannot be placed
        try:
            # the relay's pts are RTP ticks rebased to the stream's start (wrap-safe)
            writer.write(data, pts - pts_start, keyframe)
        except (OSError, av.FFmpegError) as exc:
            self._writers.pop(entry.track_id, None)
            with contextlib.suppress(Exception):
                writer.close()
            if writer.packets:  # cut short: repaired once there is room again
                self._cut.setdefault(entry.track_id, []).append((writer.folder, writer.name))
            else:  # not one frame in it: no file
                self._discard(writer)
            self._gap_opens(visit_id, entry, at, exc)
            self._save(visit_id)
            return
        entry.packets += 1
        entry.bytes += len(data)
        self.bytes_written += len(data)
        entry.wall_end = at
        self._written.add(visit_id)
        if writer.packets == 1:  # the file's first frame: now it is on record
            self._listed(visit_id, entry, writer, pts, at)

    def _listed(
        self, visit_id: str, entry: TrackFile, writer: _Writer, pts: int, at: float
    ) -> None:
        """A file got its first frame: list it; after a failure the missing span ends here,
        the segment the failure cut is repaired, and the pages are told."""
        if entry.pts_start is None:
            entry.pts_start, entry.wall_start = pts, at
        entry.files.append(writer.name)
        if entry.gaps and entry.gaps[-1].end is None:
            entry.gaps[-1].end = at  # writing again: the missing span ends here
        self._retry_at.pop(entry.track_id, None)
        self._repair_cut(entry)
        self._save(visit_id)  # the file and its wall-clock start are on record at once
        self._resumed(visit_id, entry.track_id, at)

    def _resumed(self, visit_id: str, key: str, at: float) -> None:
        """``key`` (a track, or "" for recording.json) writes again; once nothing of the
        visit is failing, the pages are told, with the span that is missing."""
        failing = self._failing.get(visit_id)
        if not failing or failing.pop(key, None) is None or failing:
            return
        self._failing.pop(visit_id, None)
        since = self._outage.pop(visit_id, at)
        log.warning("visit %s: recording resumed; %s to %s missing", visit_id, iso(since), iso(at))
        if self.on_recovered is not None:
            self.on_recovered(visit_id, since, at)

    def _gap_opens(self, visit_id: str, entry: TrackFile, at: float, exc: BaseException) -> None:
        if not entry.gaps or entry.gaps[-1].end is not None:
            entry.gaps.append(Gap(start=at, reason=gap_reason(exc)))
        self._retry_at[entry.track_id] = time.monotonic() + self.retry_seconds
        self._failed(visit_id, entry.track_id, failure_detail(exc), entry.gaps[-1].start)

    def _discard(self, writer: _Writer) -> None:
        """A file that could not get its first frame written is removed, never listed."""
        try:
            writer.path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("recorder: cannot remove the empty %s: %s", writer.path.name, exc)

    def _repair_cut(self, entry: TrackFile) -> None:
        """Segments a write failure cut short: a playable copy takes each one's place in
        ``files``; the cut original stays, as evidence (as after a crash). Needs room on the
        disk, so it runs once writing works again (or when the track ends)."""
        cut = self._cut.get(entry.track_id)
        if not cut:
            return
        for folder, name in list(cut):
            try:
                fixed, _, _ = repair_file(folder / name)
            except (OSError, av.FFmpegError) as exc:
                log.error("recorder: cannot repair the cut %s yet: %s", name, failure_detail(exc))
                continue
            cut.remove((folder, name))
            if name in entry.files:
                entry.files[entry.files.index(name)] = fixed.relative_to(folder).as_posix()
            entry.interrupted_originals.append(name)
        if not cut:
            self._cut.pop(entry.track_id, None)

    def _open_file(
        self, visit_id: str, entry: TrackFile, at: float, first: bytes
    ) -> _Writer | None:
        folder = self.folder(visit_id)
        if is_signed(folder):
            # the visit ended and its recording was signed while this node still held the
            # room: nothing more is written into the record (this track's frames are dropped)
            log.error(
                "recorder: visit %s is signed already; track %s is not written",
                visit_id,
                entry.track_id,
            )
            self._retry_at[entry.track_id] = float("inf")
            return None
        ext = "webm" if entry.codec in ("vp8", "vp9", "opus") else "mkv"
        base = f"tracks/{entry.role or 'party'}-{entry.source}-{entry.track_id}"
        name, part = f"{base}.{ext}", 1
        while (folder / name).exists():  # a segment after a failure: the next part number
            part += 1
            name = f"{base}-part{part}.{ext}"
        try:
            (folder / "tracks").mkdir(parents=True, exist_ok=True)
            writer = _Writer(folder, name, entry, iso(at), first)
        except (OSError, av.FFmpegError) as exc:
            with contextlib.suppress(OSError):
                (folder / name).unlink(missing_ok=True)
            self._gap_opens(visit_id, entry, at, exc)
            return None
        self._writers[entry.track_id] = writer
        return writer

    def _failed(self, visit_id: str, track_id: str, detail: str, since: float) -> None:
        """Report a write failure once per track until it has recovered."""
        failing = self._failing.setdefault(visit_id, {})
        if track_id in failing:
            return
        failing[track_id] = since
        self.write_failures += 1
        self._outage.setdefault(visit_id, since)
        log.error("visit %s: recording failure on %s: %s", visit_id, track_id or "-", detail)
        if self.on_failure is not None:
            self.on_failure(visit_id, track_id, detail, since)


# ------------------------------------------------------------------ after a crash


def still_recording(root: Path) -> list[str]:
    """The visits whose folder under ``root`` is still marked ``recording`` (what the
    start-up ``recover`` would repair)."""
    if not root.is_dir():
        return []
    return [
        folder.name
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        if (state := load_state(folder)) is not None and state.state is RecordingState.recording
    ]


def recover(root: Path, skip: Collection[str] = ()) -> list[VisitRecording]:
    """On start: every recording still marked ``recording`` was interrupted (a crash or a
    kill). Make its files playable and mark it interrupted at the last frame written
    (``recover_folder``). ``skip``: visits whose folder is not this node's to repair (their
    room is held by another node, which may still be writing it)."""
    repaired: list[VisitRecording] = []
    if not root.is_dir():
        return repaired
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name in skip:
            log.info("visit %s: its room is held by another node; not repaired here", folder.name)
            continue
        recording = recover_folder(folder)
        if recording is not None:
            repaired.append(recording)
    return repaired
