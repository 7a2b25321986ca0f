"""The post-visit pipeline: finalize the originals (timeline.json) → composite → transcripts
→ signed manifest. Each step runs in a worker process (never in the relay's event loop),
is idempotent, and its completion is written to the ``recordings`` row before the next one
starts, so a restart resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import audit_time, record_audit
from config.db import Database, utcnow
from config.settings import Settings
from recorder.models import STEPS, Integrity, Recording
from recorder.search import index_texts
from recorder.state import (
    CLOSED_STATES,
    ENDABLE_STATES,
    SIGNED_STATES,
    RecordingState,
    VisitRecording,
    load_state,
    recover_folder,
    save_state,
)

log = logging.getLogger("vreception.recorder")


def step_executor() -> ProcessPoolExecutor:
    """The worker process the pipeline's steps run in (spawned: no copy of the relay's
    event loop or sockets), which ends when the server does, even killed."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=exit_with_parent,
    )


def exit_with_parent() -> None:
    """In a step worker: end the worker when the process that started it is gone, killed
    included. A spawned worker holds both ends of its task queue's pipe, so it would
    otherwise wait on that queue forever, orphaned; and a server restarted after a kill
    resumes the step in a worker of its own, which must not meet the old one still
    writing the same folder."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


MAX_ATTEMPTS = 3
# a failed step is tried again this long after its first failure, its second (an unsigned
# recording must not wait for the next restart: a disk full for a moment, say)
RETRY_AFTER_S = (60.0, 600.0)
# how often a server looks for recordings whose processing stopped short (Pipeline.sweep)
SWEEP_S = 600.0
# Without these two the record is not proven: after MAX_ATTEMPTS they are still tried again,
# every RETRY_AFTER_S[-1] (composite and transcribe stop; what there is was signed as is).
NEEDED_STEPS = ("finalize", "sign")
# a step's worker process ended abruptly (the step is tried again in a new one)
WORKER_DIED = "处理进程意外终止（可能内存不足）"
# a step after finalize failed for now: what there is was signed meanwhile
SIGNED_AS_IS = "原始录像与时间轴已签名"


def _stamp(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


EMPTY_REASON = "接访结束前没有任何一方发布音视频"
# published, but not one file could be written (a full or failed disk): not "nobody
# published"; the tracks' gaps say when and why
UNWRITTEN_REASON = "各方发布的音视频均未能写入录像文件（缺失时段及原因见时间轴）"


def empty_reason(recording: VisitRecording) -> str:
    """Why a recording without any file has none: its tracks' gaps are the writes that
    failed (a track published but never carrying a frame has none)."""
    return UNWRITTEN_REASON if any(t.gaps for t in recording.tracks) else EMPTY_REASON


STEP_NAMES = {"finalize": "整理", "composite": "合成", "transcribe": "转写", "sign": "签名"}


class StillWriting(RuntimeError):
    """The recording is still marked as recording and its files are still growing."""


def _files_state(folder: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p), st.st_size, st.st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and (st := p.stat())
    )


# how long finalize waits for the sink to close the files, and for how long nothing in the
# folder must change before a recording still marked recording is taken as its node's death
CLOSE_WAIT_S = 60.0
QUIET_S = 10.0


def wait_closed(
    folder: Path, timeout: float = CLOSE_WAIT_S, missing: float = 5.0, quiet: float = QUIET_S
) -> VisitRecording:
    """The recording once the sink has closed its files (a state of ``CLOSED_STATES``).

    No recording.json after ``missing`` seconds: the sink never recorded this visit (it saves
    the file when recording starts), so nobody published media; the folder and an ``empty``
    recording.json are made here. Still marked recording after ``timeout``: when nothing in
    the folder changed for ``quiet`` seconds, the node that held the room died and nobody
    else will repair its files: they are repaired here and the recording is marked
    interrupted at their last frames (``recover_folder``, as a node's start-up recovery
    does), so the composite and the duration cover what the files hold; raises
    :class:`StillWriting` when files still grow (a node cut off from the others still
    records the call): signing now would certify files that go on changing, so the step is
    tried again later."""
    return _closed(folder, timeout, missing, quiet)[0]


def _closed(
    folder: Path, timeout: float, missing: float, quiet: float
) -> tuple[VisitRecording, bool]:
    """:func:`wait_closed`, and whether it repaired the folder of a node that died."""
    now = time.monotonic()
    deadline, gone = now + timeout, now + missing
    while True:
        recording = load_state(folder)
        if recording is not None and recording.state in CLOSED_STATES:
            return recording, False
        if recording is None and time.monotonic() > gone:
            recording = VisitRecording(visit_id=folder.name, state=RecordingState.empty)
            folder.mkdir(parents=True, exist_ok=True)
            save_state(folder, recording)
            return recording, False
        if time.monotonic() > deadline:
            assert recording is not None
            before = _files_state(folder)
            time.sleep(quiet)
            again = load_state(folder)
            if again is not None and again.state in CLOSED_STATES:
                return again, False
            if _files_state(folder) != before:
                raise StillWriting("录像文件仍在写入（承载该接访的服务器仍在录制），稍后再整理")
            # still marked recording, nothing moves: its node is gone; repaired here
            repaired = recover_folder(folder)
            if repaired is not None:
                return repaired, True
            return again or recording, False  # signed already: as it is
        time.sleep(0.2)


def _without_paths(text: str, folder: Path) -> str:
    """A message for the record: the recording's own files by their relative names, and no
    other server path."""
    text = text.replace(str(folder) + "/", "").replace(str(folder), "")
    return re.sub(r"(?<![\w.])/[^\s'\"，：:]+", "…", text)


# an original the recording lists that finalize could not find or open (signed as found)
MISSING_ORIGINALS = "原始录像文件缺失或无法读取"


def _missing_notice(row: Recording) -> str:
    """What the row's message keeps saying whatever the later steps do: the originals
    finalize found lost or unreadable."""
    missing = (row.details or {}).get("missing_originals") or []
    return f"{MISSING_ORIGINALS}：{'、'.join(missing)}（已按现状签名）"[:400] if missing else ""


def missing_originals(folder: Path, recording: VisitRecording) -> list[dict[str, str]]:
    """The files ``recording.json`` lists that are not there, are empty or do not open as
    media (a lost or damaged original must be on the record, not signed as complete)."""
    import av

    missing: list[dict[str, str]] = []
    for track in recording.tracks:
        for name in dict.fromkeys([*track.files, *track.interrupted_originals]):
            path = folder / name
            why = ""
            if not path.is_file():
                why = "文件不存在"
            elif path.stat().st_size == 0:
                why = "文件为空"
            else:
                try:
                    with av.open(str(path)) as container:
                        if not container.streams:
                            why = "文件中没有音视频流"
                except (av.FFmpegError, OSError) as exc:
                    why = f"无法读取（{_without_paths(str(exc), folder)}）"[:200]
            if why:
                missing.append({"file": name, "track_id": track.track_id, "why": why})
    return missing


def write_timeline(folder: Path, recording: VisitRecording) -> dict[str, Any]:
    """timeline.json: every file on the visit's wall clock, gaps and room events."""
    from recorder.composite import visit_end, visit_start

    start, end = visit_start(recording), visit_end(recording)
    timeline = {
        "visit_id": recording.visit_id,
        "start": start,
        "end": end,
        "start_iso": datetime.fromtimestamp(start, UTC).isoformat(timespec="milliseconds"),
        "duration": max(0.0, end - start),
        "interrupted_at": recording.interrupted_at,
        "tracks": [
            {
                "track_id": t.track_id,
                "participant_id": t.participant_id,
                "role": t.role,
                "name": t.name,
                "kind": t.kind,
                "codec": t.codec,
                "source": t.source,
                "files": t.files,
                "interrupted_originals": t.interrupted_originals,
                "offset": (t.wall_start - start) if t.wall_start is not None else None,
                "wall_start": t.wall_start,
                "wall_end": t.wall_end,
                "clock_rate": t.clock_rate,
                "packets": t.packets,
                "gaps": [{"start": g.start, "end": g.end, "reason": g.reason} for g in t.gaps],
            }
            for t in recording.tracks
        ],
        "events": recording.details.get("events", []),
        "notes": recording.details.get("notes", []),
        "missing_originals": missing_originals(folder, recording),
    }
    (folder / "timeline.json").write_text(json.dumps(timeline, ensure_ascii=False, indent=1))
    return timeline


def run_step(step: str, folder_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """One pipeline step, in a worker process. ``config``: plain values from Settings and the
    visit's details (what the web side knows: court, petition, notes, room events)."""
    folder = Path(folder_name)
    recovered = False
    recording: VisitRecording | None
    if step == "finalize":
        recording, recovered = _closed(folder, CLOSE_WAIT_S, 5.0, QUIET_S)
    else:
        recording = load_state(folder)
    if recording is None:
        raise RuntimeError("录像目录中没有 recording.json")
    recording.details.update(config.get("details", {}))
    tz = ZoneInfo(config.get("timezone", "Asia/Shanghai"))
    if recording.empty and recording.state is not RecordingState.empty:
        # nothing to composite or transcribe; checked at every step, for the file can be
        # saved again after finalize (the sink's last save came after the pipeline, tired
        # of waiting, wrote an empty one: a composite of nothing has no file to rename)
        recording.state = RecordingState.empty
        save_state(folder, recording)
    if step == "finalize":
        timeline = write_timeline(folder, recording)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        return {
            "duration": timeline["duration"],
            "start": timeline["start"],
            "end": timeline["end"],
            "interrupted_at": recording.interrupted_at,
            "size": size,
            "empty": recording.state is RecordingState.empty,
            "missing_originals": timeline["missing_originals"],
            # repaired here: the node holding the room died and nobody else repaired it
            "recovered": recovered,
        }
    if recording.state is RecordingState.empty and step in ("composite", "transcribe"):
        why = empty_reason(recording)
        return {"skipped": True, "available": False, "why": why, "reason": f"{why}，无可转写的录音"}
    if step == "composite":
        from recorder.composite import render

        return render(
            folder, recording, folder / "composite.mp4", font_path=config.get("font"), tz=tz
        )
    if step == "transcribe":
        from recorder.composite import visit_start
        from recorder.transcribe import create_transcriber, transcribe_recording

        transcriber = create_transcriber(
            config.get("engine", "none"),
            Path(config["model_dir"]) if config.get("model_dir") else None,
            Path(config["grammar"]) if config.get("grammar") else None,
            threads=int(config.get("threads", 1)),
            language=str(config.get("language", "zh")),
        )
        return transcribe_recording(
            folder, recording, transcriber, visit_start=visit_start(recording), tz=tz
        )
    if step == "sign":
        from recorder.manifest import load_signing_key, sign_folder

        timeline = json.loads((folder / "timeline.json").read_text())
        details = {
            "visit_id": recording.visit_id,
            "visit": recording.details,
            "timeline": {k: timeline[k] for k in ("start_iso", "duration", "interrupted_at")},
            # an original listed but lost or unreadable when finalized: the proof says so
            "missing_originals": timeline.get("missing_originals", []),
        }
        manifest = sign_folder(folder, load_signing_key(Path(config["data_dir"])), details)
        return {
            "files": len(manifest["files"]),
            "key_id": manifest["key_id"],
            "empty": recording.state is RecordingState.empty,
        }
    raise ValueError(f"unknown step {step}")


QUEUE = "vreception:recordings"
STEP_RUNS = "vreception:pipeline:step-runs"  # hash "step:outcome:runs|seconds" → total

StepRuns = dict[tuple[str, str], tuple[int, float]]  # (step, outcome) → (runs, seconds)


async def publish_step_runs(redis: Redis, before: StepRuns, after: StepRuns) -> None:
    """Add what a worker ran since ``before`` to the install's totals in Redis (monitoring:
    the server nodes report them, web/metrics.py)."""
    pipe = redis.pipeline(transaction=False)
    for (step, outcome), (runs, seconds) in after.items():
        done, spent = before.get((step, outcome), (0, 0.0))
        if runs > done:
            pipe.hincrby(STEP_RUNS, f"{step}:{outcome}:runs", runs - done)
            pipe.hincrbyfloat(STEP_RUNS, f"{step}:{outcome}:seconds", seconds - spent)
    await pipe.execute()


async def read_step_runs(redis: Redis) -> StepRuns:
    """The install's step totals that workers published."""
    totals: dict[tuple[str, str], list[float]] = {}
    stored: dict[bytes | str, bytes | str] = await redis.hgetall(STEP_RUNS)  # type: ignore[misc]
    for key, value in stored.items():
        step, outcome, what = (key.decode() if isinstance(key, bytes) else key).split(":")
        entry = totals.setdefault((step, outcome), [0.0, 0.0])  # runs, seconds
        entry[1 if what == "seconds" else 0] = float(value)
    return {key: (int(runs), seconds) for key, (runs, seconds) in totals.items()}


class Pipeline:
    """Runs recordings through the steps, one at a time, in a pool of worker processes.

    Embedded (no Redis): in this process's pool. With ``queue`` (an arq pool, when
    ``REDIS_URL`` is set) a recording is only queued here, and ``vreception worker``
    processes run it (recorder/worker.py), with the same code and the same database rows.
    """

    def __init__(
        self,
        database: Database,
        settings: Settings,
        executor: Executor | None = None,
        queue: ArqRedis | None = None,
    ) -> None:
        self.db = database
        self.settings = settings
        self._executor = executor
        self._own_executor = executor is None
        self._queue = queue
        self._gate = asyncio.Semaphore(1)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.retry_after = RETRY_AFTER_S
        self._retries: dict[str, asyncio.TimerHandle] = {}
        # for monitoring: (step, "done" | "failed") → (runs, seconds) in this process
        self.step_runs: StepRuns = {}

    def _ran(self, step: str, outcome: str, started: float) -> None:
        runs, seconds = self.step_runs.get((step, outcome), (0, 0.0))
        self.step_runs[(step, outcome)] = (runs + 1, seconds + time.monotonic() - started)

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = step_executor()
        return self._executor

    def folder(self, visit_id: str) -> Path:
        return self.settings.resolved_recordings_dir / visit_id

    def _config(self, row: Recording) -> dict[str, Any]:
        s = self.settings
        return {
            "timezone": s.timezone,
            "engine": s.transcribe_engine,
            "model_dir": str(s.transcribe_model_dir) if s.transcribe_model_dir else None,
            "grammar": str(s.transcribe_grammar) if s.transcribe_grammar else None,
            "threads": s.transcribe_threads,
            "language": s.transcribe_language,
            "font": s.overlay_font,
            "data_dir": str(s.data_dir),
            "details": row.details,
        }

    async def recording_started(self, visit_id: str) -> None:
        """The visit is in progress: its recording exists (shown as 录像中)."""
        async with self.db.writer() as db:
            row = await db.get(Recording, visit_id)
            if row is None:
                db.add(
                    Recording(
                        visit_id=visit_id,
                        state=RecordingState.recording,
                        folder=str(self.folder(visit_id)),
                        started_at=utcnow(),
                        details={},
                    )
                )
            elif row.state is not RecordingState.recording:
                row.state, row.step, row.progress = RecordingState.recording, "", 0

    async def interrupted(self, visit_id: str, at: float | None, resumed: bool = False) -> None:
        """A crash cut the recording (its files were repaired on restart): on record, and
        ``interrupted`` until the visit ends and the pipeline takes it. ``resumed``: found
        when another node took the room over and records on (the row stays ``recording``)."""
        async with self.db.writer() as db:
            row = await db.get(Recording, visit_id)
            if row is not None:
                row.interrupted_at = _stamp(at)
                if row.state is RecordingState.recording and not resumed:
                    row.state = RecordingState.interrupted

    async def enqueue(self, visit_id: str, details: dict[str, Any]) -> None:
        """The visit ended: process its recording. Once only: a recording already queued,
        processed (signed) or deleted is left as it is, so ending a visit again never
        resets it, re-signs it or moves its end time."""
        async with self.db.writer() as db:
            row = await db.get(Recording, visit_id)
            if row is not None and row.state not in ENDABLE_STATES:
                log.info("recording %s: already %s; the end changes nothing", visit_id, row.state)
                return
            if row is None:
                if not self.folder(visit_id).exists():
                    return  # nothing was recorded (the petitioner never came in)
                row = Recording(
                    visit_id=visit_id,
                    state=RecordingState.queued,
                    folder=str(self.folder(visit_id)),
                    details={},
                )
                db.add(row)
            row.state, row.step, row.progress, row.attempts = (
                RecordingState.queued,
                STEPS[0],
                0,
                0,
            )
            row.ended_at = utcnow()
            row.details = {**(row.details or {}), **details}
        self._schedule(visit_id)

    async def resume(self) -> int:
        """At start-up (and every ``SWEEP_S``): every recording whose processing had not
        finished, but those waiting for their timed retry here."""
        async with self.db.reader() as db:
            ids = (
                await db.scalars(
                    select(Recording.visit_id).where(
                        Recording.state.in_((RecordingState.queued, RecordingState.processing))
                        | (
                            (Recording.state == RecordingState.failed)
                            & (
                                (Recording.attempts < MAX_ATTEMPTS)
                                | Recording.step.in_(NEEDED_STEPS)
                            )
                        )
                    )
                )
            ).all()
        ids = [visit_id for visit_id in ids if visit_id not in self._retries]
        for visit_id in ids:
            self._schedule(visit_id)
        return len(ids)

    async def sweep(self, every: float = SWEEP_S) -> None:
        """Every ``every`` seconds, what ``resume`` takes at start-up: a recording whose
        processing stopped short without failing (its worker's job cancelled at its time
        limit, or lost with its worker) is taken up again without waiting for a restart
        (a step already queued or running is not run twice: one task per recording here,
        one job per recording in the queue, one step at a time in the worker process)."""
        while True:
            await asyncio.sleep(every)
            try:
                if taken := await self.resume():
                    log.info("recordings: %d taken up again", taken)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("recordings: looking for unfinished processing failed (%s)", exc)

    def _schedule(self, visit_id: str) -> None:
        if visit_id in self._tasks and not self._tasks[visit_id].done():
            return
        work = self._enqueue(visit_id) if self._queue is not None else self.process(visit_id)
        self._tasks[visit_id] = asyncio.create_task(work)

    async def _enqueue(self, visit_id: str) -> None:
        """Put the recording on the Redis queue (one job per recording at a time)."""
        assert self._queue is not None
        await self._queue.enqueue_job(
            "process_recording", visit_id, _job_id=f"recording:{visit_id}", _queue_name=QUEUE
        )
        log.info("recording %s: queued for a worker", visit_id)

    async def wait(self, visit_id: str) -> None:
        task = self._tasks.get(visit_id)
        if task is not None:
            await asyncio.shield(task)

    async def process(self, visit_id: str) -> None:
        """Run the recording's remaining steps (here, or in a worker)."""
        async with self._gate:
            loop = asyncio.get_running_loop()
            while True:
                async with self.db.writer() as db:
                    row = await db.get(Recording, visit_id)
                    if row is None or row.state in (
                        *SIGNED_STATES,
                        RecordingState.recording,
                        RecordingState.interrupted,
                    ):
                        return
                    step = row.step if row.step in STEPS else STEPS[0]
                    row.state, row.step = RecordingState.processing, step
                    config = self._config(row)
                    folder = row.folder
                log.info("recording %s: %s", visit_id, step)
                started = time.monotonic()
                try:
                    result = await loop.run_in_executor(
                        self.executor, run_step, step, folder, config
                    )
                except Exception as exc:
                    self._ran(step, "failed", started)
                    log.exception("recording %s: %s failed", visit_id, step)
                    crashed = isinstance(exc, BrokenProcessPool)
                    if crashed:
                        self._replace_executor()
                    async with self.db.writer() as db:
                        row = await db.get(Recording, visit_id)
                        if row is None:
                            return
                        row.attempts += 1
                        reason = WORKER_DIED if crashed else _without_paths(str(exc), Path(folder))
                        notice = _missing_notice(row)
                        row.message = "；".join(
                            m for m in (f"{STEP_NAMES[step]}失败：{reason}", notice) if m
                        )[:512]
                        if crashed and row.attempts < MAX_ATTEMPTS:
                            continue  # the step again, in a new worker process
                        row.state = RecordingState.failed
                        attempts = row.attempts
                    if step in ("composite", "transcribe"):
                        await self._sign_as_is(visit_id, folder, config)
                    if attempts < MAX_ATTEMPTS or step in NEEDED_STEPS:
                        self._retry_later(visit_id, attempts)
                    return
                self._ran(step, "done", started)
                async with self.db.writer() as db:
                    row = await db.get(Recording, visit_id)
                    if row is None:
                        return
                    if row.message.startswith(f"{STEP_NAMES[step]}失败："):
                        # an earlier attempt's failure, now overcome
                        row.message = _missing_notice(row)
                    row.attempts = 0  # each step has its own MAX_ATTEMPTS
                    self._apply(row, step, result)
                    if step == "finalize" and result.get("recovered"):
                        self._audit_interrupted(db, visit_id, result.get("interrupted_at"))
                    if step == "sign":
                        await self._index(db, row)
                    index = STEPS.index(step)
                    row.progress = round(100 * (index + 1) / len(STEPS))
                    if index + 1 == len(STEPS):
                        row.state = (
                            RecordingState.empty if result["empty"] else RecordingState.ready
                        )
                        row.step = "done"
                        log.info("recording %s: %s", visit_id, row.state.value)
                        return
                    row.step = STEPS[index + 1]

    def _audit_interrupted(self, db: AsyncSession, visit_id: str, at: float | None) -> None:
        """Finalize repaired the files of a node that died while holding the room: on the
        audit trail as a node's start-up recovery puts it."""
        when = None if at is None else audit_time(datetime.fromtimestamp(at, UTC), self.settings.tz)
        record_audit(
            db,
            action="recording.interrupted",
            actor_type="system",
            target_type="visit",
            target_id=visit_id,
            detail={"interrupted_at": when},
        )
        log.warning("recording %s: its node died; repaired, interrupted at %s", visit_id, when)

    @staticmethod
    async def _index(db: AsyncSession, row: Recording) -> None:
        """Put the transcript's lines and the notes into the archive's full-text index."""
        path = Path(row.folder) / "transcript.json"
        transcript = json.loads(path.read_text()) if path.exists() else {}
        notes = transcript.get("notes") or (row.details or {}).get("notes", [])
        count = await index_texts(db, row.visit_id, transcript, notes)
        log.info("recording %s: %d lines and notes indexed", row.visit_id, count)

    @staticmethod
    def _apply(row: Recording, step: str, result: dict[str, Any]) -> None:
        if step == "finalize":
            row.duration_seconds = float(result["duration"])
            row.size_bytes = int(result["size"])
            row.started_at = _stamp(result["start"]) or row.started_at
            row.interrupted_at = _stamp(result.get("interrupted_at")) or row.interrupted_at
            missing = [m["file"] for m in result.get("missing_originals", [])]
            row.details = {**(row.details or {}), "missing_originals": missing}
            row.message = _missing_notice(row)
        elif step == "composite" and result.get("skipped"):
            row.message = f"{result.get('why', EMPTY_REASON)}，未生成合成录像和转写"
        elif step == "transcribe":
            row.transcript = (
                "ok" if result.get("available") else f"转写不可用：{result.get('reason', '')}"
            )[:512]
        elif step == "sign":
            row.integrity = Integrity.signed.value
            folder = Path(row.folder)
            row.size_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

    async def _sign_as_is(self, visit_id: str, folder: str, config: dict[str, Any]) -> None:
        """A step after finalize failed: the originals and the timeline are signed as they
        are, so the record can be proven untouched whatever becomes of the composite or the
        transcript (a retry signs again once they exist)."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.executor, run_step, "sign", folder, config)
        except Exception as exc:
            log.exception("recording %s: signing the originals after the failure failed", visit_id)
            if isinstance(exc, BrokenProcessPool):
                self._replace_executor()
            return
        async with self.db.writer() as db:
            row = await db.get(Recording, visit_id)
            if row is not None:
                self._apply(row, "sign", result)
                row.message = f"{row.message}；{SIGNED_AS_IS}"[:512]
        log.info("recording %s: originals and timeline signed after the failure", visit_id)

    def _retry_later(self, visit_id: str, attempts: int) -> None:
        """Try the failed step again after ``retry_after[attempts - 1]`` seconds."""
        delay = self.retry_after[min(attempts, len(self.retry_after)) - 1]
        previous = self._retries.pop(visit_id, None)
        if previous is not None:
            previous.cancel()
        log.info("recording %s: the failed step is tried again in %.0f s", visit_id, delay)
        self._retries[visit_id] = asyncio.get_running_loop().call_later(
            delay, self._retry, visit_id
        )

    def _retry(self, visit_id: str) -> None:
        self._retries.pop(visit_id, None)
        self._schedule(visit_id)

    def stop_steps(self) -> None:
        """Kill the worker process of the step running now (if this pipeline started it):
        its job was cancelled (its time limit, SIGTERM) or lost its lease, and another
        worker may take the recording up, so no step may go on writing its folder. The next
        step gets a new worker process."""
        executor = self._executor
        if not self._own_executor or not isinstance(executor, ProcessPoolExecutor):
            return
        processes: dict[int, Any] = getattr(executor, "_processes", None) or {}
        for process in list(processes.values()):
            with contextlib.suppress(Exception):
                process.kill()
        self._replace_executor()

    def _replace_executor(self) -> None:
        """The worker process died (killed for lack of memory, say): a broken pool refuses
        every later step, so the next step gets a new worker. An executor passed in by the
        caller is the caller's to manage."""
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def close(self) -> None:
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        for task in self._tasks.values():
            task.cancel()
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
