"""With REDIS_URL, the server only queues a recording (arq, a real Redis) and a
``vreception worker`` process runs the pipeline against the shared PostgreSQL database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from arq.jobs import Job, JobStatus
from redis import Redis as SyncRedis

from config.db import Database
from config.settings import Settings
from media.room import Relay
from media.transport import announce_addresses
from recorder.jobs import (
    EMPTY_REASON,
    MAX_ATTEMPTS,
    QUEUE,
    STEP_RUNS,
    UNWRITTEN_REASON,
    Pipeline,
    empty_reason,
    read_step_runs,
)
from recorder.manifest import load_signing_key, verify
from recorder.models import STEPS, Integrity, Recording, RecordingState
from recorder.sink import RecorderSink
from recorder.state import Gap, TrackFile, VisitRecording, load_state, save_state
from tests.conftest import PostgresServer, RedisServer
from tests.helpers import wait_for
from tests.media_fixtures import PacketCounter, publish_av

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> Settings:
    """Every fixture of this module runs on PostgreSQL with Redis (multi-node settings),
    starting from an empty Redis (other tests share the server and may leave jobs)."""
    with SyncRedis.from_url(redis_server.url) as redis:
        redis.flushdb()
    return Settings(
        data_dir=tmp_path / "var",
        database_url=postgres_server.create_database(f"vr_worker_{uuid.uuid4().hex[:8]}"),
        redis_url=redis_server.url,
        transcribe_engine="none",
        secret_key="w" * 40,
    )


def test_the_worker_process_loads_no_media_stack() -> None:
    """``vreception worker`` reads recordings through recorder.state: importing it in a
    fresh interpreter loads neither aiortc nor our media package."""
    probe = (
        "import sys, recorder.worker; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiortc', 'media')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


async def _jobs_in_redis(queue: ArqRedis) -> list[str]:
    return [j.decode() for j in await queue.zrange(QUEUE, 0, -1)]


async def test_with_a_queue_the_server_only_queues_and_a_worker_process_runs_the_pipeline(
    settings: Settings, visit: dict[str, Any]
) -> None:
    announce_addresses(["127.0.0.1"])
    sink = RecorderSink(settings.resolved_recordings_dir)
    counter = PacketCounter()
    relay = Relay(sinks=[sink, counter])
    room = relay.room(visit["id"])
    room.describe("p1", "petitioner", "王某某")
    room.start_recording()
    pc = await publish_av(room, "p1")
    await wait_for(counter.recorded(3.0, "p1"))
    room.stop_recording()
    sink.flush()
    await room.close()
    await pc.close()
    sink.close()

    database = Database(settings)
    queue = await create_pool(RedisSettings.from_dsn(str(settings.redis_url)))
    await queue.delete(STEP_RUNS)  # the session's Redis: totals of earlier tests
    pipeline = Pipeline(database, settings, queue=queue)
    worker = None
    try:
        await pipeline.recording_started(visit["id"])
        await pipeline.enqueue(visit["id"], {"petition_number": "（2026）京01信9号"})
        await pipeline.wait(visit["id"])
        # the job is in Redis, on the recordings queue, for the workers; nothing ran here
        assert await _jobs_in_redis(queue) == [f"recording:{visit['id']}"]
        job = Job(f"recording:{visit['id']}", queue, _queue_name=QUEUE)
        assert await job.status() is JobStatus.queued
        assert (await job.info()) is not None and (await job.info()).args == (visit["id"],)  # type: ignore[union-attr]
        assert pipeline._executor is None  # no in-process pool was ever started
        async with database.reader() as db:
            row = await db.get(Recording, visit["id"])
            assert row is not None and row.state is RecordingState.queued

        load_signing_key(settings.data_dir)  # a cluster's machines share it; none makes its own
        env = {
            **os.environ,
            "VRECEPTION_DATA_DIR": str(settings.data_dir),
            "DATABASE_URL": str(settings.database_url),
            "REDIS_URL": str(settings.redis_url),
            "VRECEPTION_SECRET_KEY": "w" * 40,
            "VRECEPTION_TRANSCRIBE_ENGINE": "none",
        }
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "web.cli",
            "worker",
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        async def processed() -> bool:
            async with database.reader() as db:
                row = await db.get(Recording, visit["id"])
            assert row is not None
            assert row.state is not RecordingState.failed, row.message
            assert worker is not None and worker.returncode is None, "the worker exited"
            return row.state is RecordingState.ready

        await wait_for(processed, within=240)
        async with database.reader() as db:
            row = await db.get(Recording, visit["id"])
        assert row is not None
        folder = settings.resolved_recordings_dir / visit["id"]
        assert (folder / "composite.mp4").stat().st_size > 0
        assert row.transcript == "转写不可用：未启用语音转写（transcribe_engine = none）"
        assert verify(folder).ok
        assert await _jobs_in_redis(queue) == []  # taken off the queue by the worker

        async def timed() -> bool:  # each step's duration, for the nodes' /metrics
            runs = await read_step_runs(queue)
            return sorted(runs) == [(step, "done") for step in sorted(STEPS)] and all(
                count == 1 and seconds > 0 for count, seconds in runs.values()
            )

        await wait_for(timed, within=30)
    finally:
        if worker is not None:
            worker.terminate()
            await asyncio.wait_for(worker.wait(), timeout=30)
        await pipeline.close()
        await queue.aclose()
        await database.dispose()


@pytest.mark.parametrize("sink_started", [True, False], ids=["recorded", "no-folder"])
async def test_a_visit_without_media_is_signed_as_an_empty_recording_in_process(
    settings: Settings, visit: dict[str, Any], sink_started: bool
) -> None:
    """A visit ended before anybody published: no composite, no transcript, a timeline and a
    signed manifest that verifies, and the state ``empty`` (not ``failed``), whether the
    sink wrote a recording.json without tracks or nothing at all. Without a queue the
    pipeline runs in this process: nothing goes to Redis."""
    folder = settings.resolved_recordings_dir / visit["id"]
    if sink_started:
        sink = RecorderSink(settings.resolved_recordings_dir)
        sink.start(visit["id"])
        sink.stop(visit["id"])
        sink.close()
        assert (folder / "recording.json").exists()
    database = Database(settings)
    queue = await create_pool(RedisSettings.from_dsn(str(settings.redis_url)))
    pipeline = Pipeline(database, settings)  # embedded: no queue
    try:
        await pipeline.recording_started(visit["id"])
        await pipeline.enqueue(visit["id"], {"petition_number": "（2026）京01信9号"})
        await pipeline.wait(visit["id"])
        assert await _jobs_in_redis(queue) == []
        async with database.reader() as db:
            row = await db.get(Recording, visit["id"])
        assert row is not None
        assert row.state is RecordingState.empty, (row.state, row.message)
        assert row.integrity == Integrity.signed.value
        assert row.message == "接访结束前没有任何一方发布音视频，未生成合成录像和转写"
        assert row.transcript.startswith("转写不可用：接访结束前没有任何一方发布音视频")
        state = load_state(folder)
        assert state is not None and state.state is RecordingState.empty and state.tracks == []
        timeline = json.loads((folder / "timeline.json").read_text())
        assert timeline["visit_id"] == visit["id"] and timeline["tracks"] == []
        assert not (folder / "composite.mp4").exists()
        result = verify(folder)
        assert result.ok, result.failed
        assert {"timeline.json", "recording.json"} <= set(result.checked)
    finally:
        await pipeline.close()
        await queue.aclose()
        await database.dispose()


async def _processed(
    settings: Settings, visit_id: str, tracks: list[TrackFile]
) -> tuple[Recording, Path]:
    """A recording with ``tracks``, closed by the sink, run through the pipeline in this
    process: its row once done, and its folder."""
    folder = settings.resolved_recordings_dir / visit_id
    folder.mkdir(parents=True, exist_ok=True)
    save_state(
        folder, VisitRecording(visit_id=visit_id, state=RecordingState.queued, tracks=tracks)
    )
    database = Database(settings)
    pipeline = Pipeline(database, settings)
    try:
        await pipeline.recording_started(visit_id)
        await pipeline.enqueue(visit_id, {})
        await pipeline.wait(visit_id)
        async with database.reader() as db:
            row = await db.get(Recording, visit_id)
        assert row is not None
        return row, folder
    finally:
        await pipeline.close()
        await database.dispose()


async def test_ending_a_visit_again_leaves_its_signed_recording_untouched(
    settings: Settings, visit: dict[str, Any]
) -> None:
    """A second end (an operator's stale list after the judge ended it): the signed
    recording is not queued again, its end time and signed manifest stay as they were; a
    recording in any later state (processing, failed, deleted) is left alone too."""
    folder = settings.resolved_recordings_dir / visit["id"]
    database = Database(settings)
    pipeline = Pipeline(database, settings)
    try:
        await pipeline.recording_started(visit["id"])
        await pipeline.enqueue(visit["id"], {"petition_number": "（2026）京01信9号"})
        await pipeline.wait(visit["id"])
        async with database.reader() as db:
            first = await db.get(Recording, visit["id"])
        assert first is not None and first.state is RecordingState.empty
        manifest = (folder / "SHA256SUMS").read_bytes()

        await pipeline.enqueue(visit["id"], {"petition_number": "改动"})
        await pipeline.wait(visit["id"])
        async with database.reader() as db:
            again = await db.get(Recording, visit["id"])
        assert again is not None
        assert (again.state, again.ended_at, again.attempts, again.details) == (
            first.state,
            first.ended_at,
            first.attempts,
            first.details,
        )
        assert (folder / "SHA256SUMS").read_bytes() == manifest
        assert verify(folder).ok

        for state in (RecordingState.processing, RecordingState.failed, RecordingState.deleted):
            async with database.writer() as db:
                row = await db.get(Recording, visit["id"])
                assert row is not None
                row.state, row.step = state, "transcribe"
            await pipeline.enqueue(visit["id"], {})
            async with database.reader() as db:
                row = await db.get(Recording, visit["id"])
            assert row is not None and (row.state, row.step) == (state, "transcribe")
    finally:
        await pipeline.close()
        await database.dispose()


async def test_a_worker_process_that_dies_is_replaced_and_the_step_runs_again(
    settings: Settings, visit: dict[str, Any]
) -> None:
    """The step's worker process is killed mid-step (as the kernel does when memory runs
    out): the pipeline starts a new worker and runs the step again, and the recording is
    signed; before, the broken pool refused every later recording until a restart."""
    folder = settings.resolved_recordings_dir / visit["id"]
    # the sink is still writing: finalize waits for it in the worker
    folder.mkdir(parents=True)
    save_state(folder, VisitRecording(visit_id=visit["id"], state=RecordingState.recording))
    database = Database(settings)
    pipeline = Pipeline(database, settings)
    try:
        await pipeline.recording_started(visit["id"])
        await pipeline.enqueue(visit["id"], {})

        def worker_pids() -> set[int]:
            pool = pipeline._executor
            return set(pool._processes or {}) if isinstance(pool, ProcessPoolExecutor) else set()

        async def working() -> bool:
            return bool(worker_pids())

        await wait_for(working, within=30)
        first = worker_pids()
        for pid in first:
            os.kill(pid, signal.SIGKILL)

        async def tried_again() -> bool:
            async with database.reader() as db:
                row = await db.get(Recording, visit["id"])
            return row is not None and row.attempts == 1 and bool(worker_pids() - first)

        await wait_for(tried_again, within=30)
        async with database.reader() as db:
            row = await db.get(Recording, visit["id"])
        assert row is not None and row.state is RecordingState.processing
        assert row.message == "整理失败：处理进程意外终止（可能内存不足）"
        # the sink closes its files: the new worker finalizes and the recording is signed
        save_state(folder, VisitRecording(visit_id=visit["id"], state=RecordingState.queued))
        await pipeline.wait(visit["id"])
        async with database.reader() as db:
            row = await db.get(Recording, visit["id"])
        assert row is not None
        assert row.state is RecordingState.empty, (row.state, row.message)
        assert row.integrity == Integrity.signed.value and verify(folder).ok
        assert "失败" not in row.message  # the crash was overcome
    finally:
        await pipeline.close()
        await database.dispose()


async def test_a_recording_whose_every_write_failed_is_not_called_unpublished(
    settings: Settings, visit: dict[str, Any]
) -> None:
    """Both parties published but the disk refused every file (full from the start): the
    recording has no file, as when nobody published, but its record says the media could
    not be written (the gaps say when), never that nobody published."""
    now = time.time()
    track = TrackFile(
        "v1", "p1", "petitioner", "王某某", "video", "vp8", "camera", [], now - 10, 0, 90000,
        now, gaps=[Gap(now - 10, now, "磁盘空间不足，此段未录制")],
    )  # fmt: skip
    row, folder = await _processed(settings, visit["id"], [track])
    assert row.state is RecordingState.empty, row.message
    why = "各方发布的音视频均未能写入录像文件（缺失时段及原因见时间轴）"
    assert row.message == f"{why}，未生成合成录像和转写"
    assert row.transcript.startswith(f"转写不可用：{why}")
    timeline = json.loads((folder / "timeline.json").read_text())
    assert timeline["tracks"][0]["gaps"][0]["reason"] == "磁盘空间不足，此段未录制"
    assert verify(folder).ok


def test_a_recording_without_files_says_whether_nobody_published_or_writing_failed() -> None:
    """No file at all: "nobody published" unless a track's gaps record failed writes (a
    track published but never carrying a frame has no gap)."""
    now = time.time()
    silent = TrackFile("v1", "p1", "petitioner", "王某某", "video", "vp8", "camera")
    failed = TrackFile(
        "a1", "p1", "petitioner", "王某某", "audio", "opus", "microphone",
        gaps=[Gap(now - 10, now, "磁盘空间不足，此段未录制")],
    )  # fmt: skip
    assert empty_reason(VisitRecording("x", tracks=[])) == EMPTY_REASON
    assert empty_reason(VisitRecording("x", tracks=[silent])) == EMPTY_REASON
    assert empty_reason(VisitRecording("x", tracks=[silent, failed])) == UNWRITTEN_REASON


async def test_a_failed_step_names_the_recordings_own_files_never_a_server_path(
    settings: Settings, visit: dict[str, Any]
) -> None:
    """The composite cannot be written (a directory stands in its place): the step fails,
    the row's message says which step and which file, by its name in the recording's
    folder, and the originals and the timeline are signed as they are."""
    folder = settings.resolved_recordings_dir / visit["id"]
    (folder / "composite.mp4").mkdir(parents=True)
    now = time.time()
    track = TrackFile(
        "v1", "p1", "petitioner", "王某某", "video", "vp8", "camera",
        ["tracks/petitioner-camera-v1.webm"], now - 10, 0, 90000, now,
    )  # fmt: skip
    row, _ = await _processed(settings, visit["id"], [track])
    assert row.state is RecordingState.failed
    assert row.message == (
        "合成失败：[Errno 21] Is a directory: 'composite.mp4.tmp' -> 'composite.mp4'"
        "；原始录像文件缺失或无法读取：tracks/petitioner-camera-v1.webm（已按现状签名）"
        "；原始录像与时间轴已签名"
    )
    # whatever becomes of the composite, the recording as it is can be proven untouched;
    # no half-made composite is left, let alone signed
    assert row.integrity == Integrity.signed.value
    result = verify(folder)
    assert result.ok and "timeline.json" in result.checked
    assert not (folder / "composite.mp4.tmp").exists()
    assert not [n for n in result.checked if "composite" in n]
    assert row.verifiable  # the archive's check (POST .../verify) accepts it


async def test_a_recording_whose_signing_failed_is_signed_without_waiting_for_a_restart(
    settings: Settings, visit: dict[str, Any]
) -> None:
    """The sign step fails (its manifest cannot be written: the disk full for a moment,
    here a directory in its place); once the cause is gone the pipeline signs the recording
    by itself, instead of leaving it unsigned until the server next starts."""
    folder = settings.resolved_recordings_dir / visit["id"]
    (folder / "manifest.json").mkdir(parents=True)
    save_state(folder, VisitRecording(visit_id=visit["id"], state=RecordingState.queued))
    database = Database(settings)
    pipeline = Pipeline(database, settings)
    pipeline.retry_after = (1.0, 1.0)

    async def state() -> Recording:
        async with database.reader() as db:
            row = await db.get(Recording, visit["id"])
        assert row is not None
        return row

    try:
        await pipeline.recording_started(visit["id"])
        await pipeline.enqueue(visit["id"], {})
        await pipeline.wait(visit["id"])
        failed = await state()
        assert failed.state is RecordingState.failed and failed.message.startswith("签名失败")
        assert failed.integrity == Integrity.unsigned.value
        (folder / "manifest.json").rmdir()  # the cause is gone

        async def signed() -> bool:
            row = await state()
            return row.state is RecordingState.empty and row.integrity == Integrity.signed.value

        await wait_for(signed, within=30)
        assert (await state()).message == ""
        assert verify(folder).ok
    finally:
        await pipeline.close()
        await database.dispose()


async def test_a_lost_or_damaged_original_is_on_the_record_and_in_the_signed_manifest(
    settings: Settings, visit: dict[str, Any]
) -> None:
    """recording.json lists a file that is gone and one that is not media (lost on shared
    storage, damaged): the recording is signed as found, and the row and the signed
    manifest say which originals are missing and why, instead of certifying it complete."""
    folder = settings.resolved_recordings_dir / visit["id"]
    (folder / "tracks").mkdir(parents=True)
    (folder / "tracks" / "judge-microphone-a1.webm").write_bytes(b"\x00garbage" * 50)
    now = time.time()
    lost = TrackFile(
        "v1", "p1", "petitioner", "王某某", "video", "vp8", "camera",
        ["tracks/petitioner-camera-v1.webm"], now - 10, 0, 90000, now,
    )  # fmt: skip
    damaged = TrackFile(
        "a1", "j1", "judge", "李法官", "audio", "opus", "microphone",
        ["tracks/judge-microphone-a1.webm"], now - 10, 0, 48000, now,
    )  # fmt: skip
    row, _ = await _processed(settings, visit["id"], [lost, damaged])
    assert row.integrity == Integrity.signed.value
    assert "原始录像文件缺失或无法读取：tracks/petitioner-camera-v1.webm、" in row.message
    assert "tracks/judge-microphone-a1.webm（已按现状签名）" in row.message
    manifest = json.loads((folder / "manifest.json").read_text())
    why = {m["file"]: m["why"] for m in manifest["missing_originals"]}
    assert why["tracks/petitioner-camera-v1.webm"] == "文件不存在"
    assert why["tracks/judge-microphone-a1.webm"].startswith("无法读取")
    assert verify(folder).ok


async def test_signing_is_tried_again_after_the_attempts_the_other_steps_get(
    settings: Settings, visit: dict[str, Any]
) -> None:
    """Composite and transcribe stop after MAX_ATTEMPTS (signed as they are); signing, without
    which the record is not proven, is tried again until it works."""
    folder = settings.resolved_recordings_dir / visit["id"]
    (folder / "manifest.json").mkdir(parents=True)  # the proof cannot be written
    save_state(folder, VisitRecording(visit_id=visit["id"], state=RecordingState.queued))
    database = Database(settings)
    pipeline = Pipeline(database, settings)
    pipeline.retry_after = (0.2, 0.2)

    async def state() -> Recording:
        async with database.reader() as db:
            row = await db.get(Recording, visit["id"])
        assert row is not None
        return row

    try:
        await pipeline.recording_started(visit["id"])
        await pipeline.enqueue(visit["id"], {})

        async def past_the_limit() -> bool:
            return (await state()).attempts > MAX_ATTEMPTS

        await wait_for(past_the_limit, within=60)
        row = await state()
        assert row.state is RecordingState.failed and row.step == "sign"
        assert row.integrity == Integrity.unsigned.value
        (folder / "manifest.json").rmdir()  # the cause is gone

        async def signed() -> bool:
            return (await state()).integrity == Integrity.signed.value

        await wait_for(signed, within=30)
        assert verify(folder).ok
    finally:
        await pipeline.close()
        await database.dispose()


async def test_a_recording_whose_processing_stopped_short_is_taken_up_without_a_restart(
    settings: Settings, visit: dict[str, Any]
) -> None:
    """A recording left processing with nothing running it (its worker's job cancelled at
    its time limit, lost with its worker): the server's sweep takes it up again and signs
    it, instead of leaving it unsigned until the next restart."""
    folder = settings.resolved_recordings_dir / visit["id"]
    folder.mkdir(parents=True)
    save_state(folder, VisitRecording(visit_id=visit["id"], state=RecordingState.queued))
    database = Database(settings)
    pipeline = Pipeline(database, settings)
    sweeping = asyncio.create_task(pipeline.sweep(every=0.2))
    try:
        async with database.writer() as db:  # as a cancelled job leaves it
            db.add(
                Recording(
                    visit_id=visit["id"],
                    state=RecordingState.processing,
                    step="finalize",
                    folder=str(folder),
                    details={},
                )
            )

        async def signed() -> bool:
            async with database.reader() as db:
                row = await db.get(Recording, visit["id"])
            return row is not None and row.integrity == Integrity.signed.value

        await wait_for(signed, within=60)
        assert verify(folder).ok
    finally:
        sweeping.cancel()
        await pipeline.close()
        await database.dispose()
