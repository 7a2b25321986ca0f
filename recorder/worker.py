"""``vreception worker``: processes recordings from the Redis queue (arq), for installs
with ``REDIS_URL``. Every worker needs the database, the recordings folder (shared storage
when the nodes are several machines) and the signing key of the install.

A job holds its recording through arq's in-progress key (``arq:in-progress:<job id>``),
which no other worker takes while it exists. arq would keep that key for the job's whole
time limit (+10 s) and never renew it, so a job lost with its worker (SIGKILL, a machine
gone) would wait that long before any worker took it up again. Here the key lasts one lease
(``JOB_LEASE_S``) and the running job renews it (``keep_lease``): a lost job is taken up
again within a lease. A worker that cannot renew its lease stops its step and exits at once,
before the lease can lapse, so two workers never process one recording together.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from arq import Worker
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix
from arq.worker import func
from redis.asyncio import Redis
from redis.exceptions import RedisError

from config.db import Database
from config.settings import Settings
from recorder.jobs import QUEUE, Pipeline, publish_step_runs

log = logging.getLogger("vreception.recorder")

# A job's hold on its recording without renewal: a job lost with its worker is run again by
# another worker (or the same one restarted) within this much.
JOB_LEASE_S = 300.0
# A job still alive (renewing its lease) is cancelled after this: a step that hangs. It no
# longer bounds how long a lost job waits (JOB_LEASE_S does).
JOB_LIMIT = timedelta(hours=6)
LEASE_LOST_EXIT = 75  # EX_TEMPFAIL: systemd starts the worker again (Restart=on-failure)


async def keep_lease(redis: Redis, job_id: str, lease_s: float) -> None:
    """Renew the job's in-progress key every fifth of the lease while the job runs. Returns
    when the lease cannot be kept: it was not renewed for half a lease (Redis unreachable,
    this process frozen: it may lapse, or have lapsed, and another worker take the job; the
    key holds no owner, so a late renewal could extend the other worker's), or the key is
    gone."""
    key = in_progress_key_prefix + job_id
    every = lease_s / 5
    renewed = time.monotonic()
    delay = every
    while True:
        await asyncio.sleep(delay)
        sent = time.monotonic()
        if sent - renewed >= lease_s / 2:
            log.error("job %s: its lease not renewed for %.1f s", job_id, sent - renewed)
            return
        try:
            kept = await asyncio.wait_for(
                redis.pexpire(key, int(lease_s * 1000)), timeout=every / 4
            )
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("job %s: its lease could not be renewed (%s)", job_id, exc or "timeout")
            delay = every / 6  # tried again soon: one blip must not cost the job
            continue
        delay = every
        if not kept:
            log.error("job %s: its lease is gone (another worker may run it)", job_id)
            return
        renewed = sent  # the key lives at least a lease from when the renewal was sent


def exit_now() -> None:
    """The lease is lost: leave at once, touching nothing of the job in Redis (finishing it
    would delete the keys of the worker that may run it now)."""
    logging.shutdown()
    os._exit(LEASE_LOST_EXIT)


async def process_recording(ctx: dict[str, Any], visit_id: str) -> None:
    pipeline: Pipeline = ctx["pipeline"]
    before = dict(pipeline.step_runs)
    work = asyncio.ensure_future(pipeline.process(visit_id))
    lease = asyncio.ensure_future(
        keep_lease(ctx["redis"], ctx["job_id"], float(ctx.get("lease_seconds", JOB_LEASE_S)))
    )
    try:
        await asyncio.wait({work, lease}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():  # the lease is lost: no step goes on writing the folder
            work.cancel()
            pipeline.stop_steps()
            lost: Callable[[], None] = ctx.get("lease_lost", exit_now)
            lost()
            raise RuntimeError(f"recording {visit_id}: the job's lease was lost")
        await work
    except asyncio.CancelledError:  # its time limit, or the worker stops (SIGTERM)
        work.cancel()
        pipeline.stop_steps()
        raise
    finally:
        lease.cancel()
        try:  # the steps' durations, for the server nodes' /metrics
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


def create_worker(settings: Settings, lease_seconds: float = JOB_LEASE_S) -> Worker:
    if settings.redis_url is None:
        raise ValueError("vreception worker needs REDIS_URL (embedded mode processes in-process)")
    worker = Worker(
        functions=[func(process_recording, timeout=JOB_LIMIT, max_tries=3)],
        queue_name=QUEUE,
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        on_startup=_startup,
        on_shutdown=_shutdown,
        ctx={"settings": settings, "lease_seconds": lease_seconds},
        max_jobs=1,
        keep_result=0,
        handle_signals=True,
    )
    # arq sets a job's in-progress key for its time limit + 10 s (6 h here) and never renews
    # it; one lease instead, which the job renews while it runs (keep_lease)
    worker.in_progress_timeout_s = lease_seconds
    return worker
