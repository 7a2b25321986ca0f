"""What is on record of one visit's recording, in its folder's ``recording.json`` and in the
database: the one ``RecordingState`` both use, and the file's model; and the repair of a
folder whose recorder stopped writing without closing it (``recover_folder``).

This module imports nothing from ``media`` (nor aiortc): the worker process, the archive and
the pipeline read recordings through it without loading the media stack. Only the repair
loads av, when it runs (the sink at start-up or on taking a room over, finalize when the
node that held the room is gone).
"""

from __future__ import annotations

import enum
import errno
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.vocabulary import define, label_of

log = logging.getLogger("vreception.recorder")

STATE_FILE = "recording.json"
SUMS = "SHA256SUMS"  # the signed manifest's list of hashes (recorder/manifest.py)


def role_name(role: str) -> str:
    """A party's role as the composite, transcripts and case files name it."""
    return label_of("participant_role", role)


class RecordingState(enum.StrEnum):
    """Where a recording stands, in ``recording.json`` and in the ``recordings`` row alike.

    The sink writes ``recording``, ``interrupted`` and ``queued`` into the file, the
    pipeline ``empty`` when nothing was recorded; the row moves on from ``queued``
    (docs/architecture.md has the table)::

        recording ─┬─ (visit ends, files closed) ──────────────→ queued → processing
                   └─ (server crash, repaired on restart) → interrupted ─┘    │
        processing → ready | empty | failed;   ready | empty → deleted (retention)
    """

    recording = "recording"  # the visit is in progress, files being written
    interrupted = "interrupted"  # a crash cut the recording; its files were repaired
    queued = "queued"  # ended, files closed; waiting for the pipeline
    processing = "processing"
    ready = "ready"  # composite, transcripts and signed manifest done
    empty = "empty"  # nobody published media: timeline and signed manifest only
    failed = "failed"  # a step failed (message says which); retried on the next start
    deleted = "deleted"  # media removed after retention; manifest and deletion record kept


define(
    "recording_state",
    RecordingState,
    {
        RecordingState.recording: "录像中",
        RecordingState.interrupted: "录像曾中断",
        RecordingState.queued: "录像待处理",
        RecordingState.processing: "录像处理中",
        RecordingState.ready: "录像已归档",
        RecordingState.empty: "无音视频",
        RecordingState.failed: "录像处理失败",
        RecordingState.deleted: "已按期删除",
    },
)


# processing is over and the manifest is signed: the archive may verify it
SIGNED_STATES = (RecordingState.ready, RecordingState.empty)
# the visit has not yet ended for the pipeline: its end queues the recording (a later end
# of the same visit, e.g. from a stale list, leaves a queued, processed or deleted one alone)
ENDABLE_STATES = (RecordingState.recording, RecordingState.interrupted)
# the sink has closed the files: the pipeline may finalize them
CLOSED_STATES = (RecordingState.queued, RecordingState.interrupted, RecordingState.empty)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


@dataclass
class Gap:
    """A span of a track that is not in its files (a write failure). ``reason`` is plain
    Chinese for the people who read the record; never a server path or an errno text."""

    start: float
    end: float | None = None
    reason: str = ""


@dataclass
class TrackFile:
    """One recorded track (possibly in several segment files after a write failure).

    Every name is relative to the recording's folder. ``files`` are the playable ones, in
    order; ``interrupted_originals`` are files as a crash or a full disk cut them (kept as
    evidence, each replaced in ``files`` by its repaired copy); ``unrepairable`` are files
    that could not be repaired (kept, never played)."""

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
    unrepairable: list[str] = field(default_factory=list)


@dataclass
class VisitRecording:
    """What is known of one visit's recording; saved as recording.json."""

    visit_id: str
    state: RecordingState = RecordingState.recording
    started_at: float = field(default_factory=time.time)
    stopped_at: float | None = None
    interrupted_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    tracks: list[TrackFile] = field(default_factory=list)
    # the recorder (one sink of one process, recorder/sink.py) that saved it as
    # ``recording``: another one finding it so knows its writer is gone (or lost the room)
    writer: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
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
        state = str(fields.get("state", RecordingState.recording))
        # written before the file and the database shared one state: "stopped"
        fields["state"] = RecordingState.queued if state == "stopped" else RecordingState(state)
        return cls(**fields)

    @property
    def empty(self) -> bool:
        """Nothing was recorded: no track has a file."""
        return not any(t.files for t in self.tracks)


def is_signed(folder: Path) -> bool:
    """The recording's folder has its manifest: its files are the court's record and are
    never written again (only verified, exported, or deleted after retention)."""
    return (folder / SUMS).exists()


def load_state(folder: Path) -> VisitRecording | None:
    try:
        return VisitRecording.from_json(json.loads((folder / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def replace_files(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (name → content) into ``folder`` all or none: each is written in full
    to ``<name>.tmp`` and synced before any replaces its old version, in the order given (a
    full disk leaves every old file as it was; a crash between the renames leaves a set the
    next write replaces). ``.tmp`` files are neither signed nor checked."""
    written: list[tuple[Path, Path]] = []
    try:
        for name, data in files.items():
            tmp = folder / (name + ".tmp")
            written.append((tmp, folder / name))
            with tmp.open("wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in written:
        tmp.replace(path)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)  # the renames themselves
    finally:
        os.close(fd)


def save_state(folder: Path, recording: VisitRecording) -> None:
    """Write recording.json atomically (a crash leaves the old or the new one)."""
    data = json.dumps(recording.to_json(), ensure_ascii=False, indent=1).encode()
    replace_files(folder, {STATE_FILE: data})


# ------------------------------------------------------------------ after a crash


def repair_file(path: Path) -> tuple[Path, int, float]:
    """Copy an interrupted file's complete frames (no re-encode) into a playable file beside
    it; returns the new file, its packet count and its duration in seconds. A file with no
    frame to copy, or a copy that fails (a full disk), raises and leaves no copy behind. The
    copy is written under a name of its own and renamed when complete, so two recoveries of
    one folder at once (two nodes) never write into the same file."""
    import av

    target = path.with_name(path.stem + "-repaired" + path.suffix)
    partial = target.with_name(f"{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    packets, last = 0, 0.0
    try:
        with av.open(str(path)) as source:
            stream = source.streams[0]
            fmt = "webm" if path.suffix == ".webm" else "matroska"
            with av.open(str(partial), "w", format=fmt) as out:
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
        if not packets:
            raise av.InvalidDataError(errno.EINVAL, "no complete frame to repair")
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target, packets, last


def last_frame_at(original: Path, wall_start: float, duration: float) -> float:
    """When a crashed file's last frame arrived: its first frame's arrival plus the media it
    holds, but never later than the file's last write. The first frame's arrival can lag
    the stream's pace (it waited for the connection), which would put the end after the
    crash itself."""
    end = wall_start + duration
    try:
        return min(end, original.stat().st_mtime)
    except OSError:
        return end


def recover_folder(folder: Path) -> VisitRecording | None:
    """One recording still marked ``recording`` whose recorder is gone (a crash, a kill, a
    node that died): make its files playable and mark it interrupted at the last frame
    written; returns it as saved, or None when the folder is not marked ``recording`` (or is
    signed, and so never written again).

    A file that cannot be repaired stays on disk but out of the playable list: it is named
    (relative to the recording's folder) in its track's ``unrepairable``, and its span is a
    gap of the track."""
    import av

    recording = load_state(folder)
    if recording is None or recording.state is not RecordingState.recording:
        return None
    if is_signed(folder):  # signed while still marked recording: never rewritten
        log.error(
            "visit %s: recording marked as still recording but already signed; left as signed",
            recording.visit_id,
        )
        return None
    interrupted_at = recording.started_at
    for track in recording.tracks:
        files = []
        for name in track.files:
            original = folder / name
            if Path(name).stem.endswith("-repaired"):
                continue
            try:
                fixed, count, duration = repair_file(original)
            except (av.FFmpegError, OSError, IndexError) as exc:
                log.error(
                    "visit %s: cannot repair %s: %s %s",
                    recording.visit_id,
                    name,
                    type(exc).__name__,
                    getattr(exc, "strerror", None) or "",
                )
                track.unrepairable.append(name)
                track.gaps.append(
                    Gap(
                        start=track.wall_start or recording.started_at,
                        end=track.wall_end,
                        reason=f"录像文件 {name} 损坏，无法修复，此段无法播放",
                    )
                )
                continue
            files.append(fixed.relative_to(folder).as_posix())
            track.interrupted_originals.append(name)
            if track.wall_start is not None:
                track.wall_end = last_frame_at(original, track.wall_start, duration)
                interrupted_at = max(interrupted_at, track.wall_end)
            track.packets = count
        # the playable copies stand in the timeline; the originals stay, as evidence
        kept = set(track.interrupted_originals) | set(track.unrepairable)
        track.files = [f for f in track.files if f not in kept]
        track.files += [f for f in files if f not in track.files]
        track.ended = True
    recording.state = RecordingState.interrupted
    recording.interrupted_at = interrupted_at
    save_state(folder, recording)
    log.warning(
        "visit %s: recording was interrupted at %s; repaired",
        recording.visit_id,
        iso(interrupted_at),
    )
    return recording
