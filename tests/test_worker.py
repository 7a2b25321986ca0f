"""With REDIS_URL, the server only queues a recording (arq, a real Redis) and a
``vreception worker`` process runs the pipeline against the shared PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from arq import create_pool
from arq.connections import RedisSettings

from config.db import Database
from config.settings import Settings
from media.room import Relay
from media.transport import announce_addresses
from recorder.jobs import Pipeline
from recorder.manifest import verify
from recorder.models import Recording, RecordingState
from recorder.sink import RecorderSink
from tests.conftest import PostgresServer, RedisServer
from tests.media_fixtures import publish_av

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> Settings:
    """Every fixture of this module runs on PostgreSQL with Redis (multi-node settings)."""
    return Settings(
        data_dir=tmp_path / "var",
        database_url=postgres_server.create_database(f"vr_worker_{uuid.uuid4().hex[:8]}"),
        redis_url=redis_server.url,
        transcribe_engine="none",
        secret_key="w" * 40,
    )


async def test_a_worker_process_runs_the_queued_pipeline(
    settings: Settings, visit: dict[str, Any]
) -> None:
    announce_addresses(["127.0.0.1"])
    sink = RecorderSink(settings.resolved_recordings_dir)
    relay = Relay(sinks=[sink])
    room = relay.room(visit["id"])
    room.describe("p1", "petitioner", "王某某")
    room.start_recording()
    pc = await publish_av(room, "p1")
    await asyncio.sleep(3)
    room.stop_recording()
    sink.flush()
    await room.close()
    await pc.close()
    sink.close()

    database = Database(settings)
    queue = await create_pool(RedisSettings.from_dsn(str(settings.redis_url)))
    pipeline = Pipeline(database, settings, queue=queue)
    worker = None
    try:
        await pipeline.recording_started(visit["id"])
        await pipeline.enqueue(visit["id"], {"petition_number": "（2026）京01信9号"})
        await pipeline.wait(visit["id"])
        await asyncio.sleep(1.0)
        async with database.reader() as db:
            row = await db.get(Recording, visit["id"])
            assert row is not None and row.state is RecordingState.queued  # nobody ran it here

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
        deadline = time.monotonic() + 240
        while True:
            async with database.reader() as db:
                row = await db.get(Recording, visit["id"])
                assert row is not None
                if row.state is RecordingState.ready:
                    break
                assert row.state is not RecordingState.failed, row.message
            assert worker.returncode is None, "the worker exited"
            assert time.monotonic() < deadline, row.state
            await asyncio.sleep(0.5)
        folder = settings.resolved_recordings_dir / visit["id"]
        assert (folder / "composite.mp4").stat().st_size > 0
        assert row.transcript.startswith("transcript unavailable: transcription is switched off")
        assert verify(folder).ok
    finally:
        if worker is not None:
            worker.terminate()
            await asyncio.wait_for(worker.wait(), timeout=30)
        await pipeline.close()
        await queue.aclose()
        await database.dispose()
