"""``vreception worker``: processes recordings from the Redis queue (arq), for installs
with ``REDIS_URL``. Every worker needs the database, the recordings folder (shared storage
when the nodes are several machines) and the signing key of the install."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from arq import Worker
from arq.connections import RedisSettings
from arq.worker import func

from config.db import Database
from config.settings import Settings
from recorder.jobs import QUEUE, Pipeline, publish_step_runs

log = logging.getLogger("vreception.recorder")


async def process_recording(ctx: dict[str, Any], visit_id: str) -> None:
    pipeline: Pipeline = ctx["pipeline"]
    before = dict(pipeline.step_runs)
    try:
        await pipeline.process(visit_id)
    finally:  # the steps' durations, for the server nodes' /metrics
        try:
            await publish_step_runs(ctx["redis"], before, pipeline.step_runs)
        except Exception as exc:  # monitoring must not fail the job
            log.warning("cannot publish the pipeline's step durations: %s", exc)


async def _startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx["settings"]
    ctx["database"] = Database(settings)
    # the queue, for its timed retries of a failed step: one job per recording at a time,
    # whichever worker takes it (a retry run here could overlap one queued meanwhile)
    ctx["pipeline"] = Pipeline(ctx["database"], settings, queue=ctx["redis"])
    log.info("recording worker ready (queue %s)", QUEUE)


async def _shutdown(ctx: dict[str, Any]) -> None:
    await ctx["pipeline"].close()
    await ctx["database"].dispose()


def create_worker(settings: Settings) -> Worker:
    if settings.redis_url is None:
        raise ValueError("vreception worker needs REDIS_URL (embedded mode processes in-process)")
    return Worker(
        functions=[func(process_recording, timeout=timedelta(hours=6), max_tries=3)],
        queue_name=QUEUE,
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        on_startup=_startup,
        on_shutdown=_shutdown,
        ctx={"settings": settings},
        max_jobs=1,
        keep_result=0,
        handle_signals=True,
    )
