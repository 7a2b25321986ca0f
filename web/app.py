"""The aiohttp application factory: database, Redis, throttle and metrics as cleanup contexts."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import socketio
from aiohttp import web
from arq import create_pool
from arq.connections import RedisSettings
from prometheus_client import CollectorRegistry, Counter, Histogram

from config.audit import audit_time, record_audit
from config.db import Database
from config.keys import load_secret_key
from config.redis import create_redis
from config.settings import Settings
from media.room import Relay
from media.transport import announce_addresses, use_port_range
from recorder.jobs import Pipeline
from recorder.sink import (
    RecorderSink,
    failure_message,
    recover,
    recovery_message,
    still_recording,
)
from recorder.transcribe import create_transcriber
from scheduler.housekeeping import housekeeping
from scheduler.notify import push_all, take_outbox
from scheduler.portal import identity as portal_identity
from scheduler.stats import figures as stats_figures
from signaling.gateway import RejoinTokens
from signaling.namespace import VisitNamespace
from signaling.placement import LocalPlacement, RedisPlacement, RoomPlacement
from signaling.server import (
    NotificationNamespace,
    SocketNotifier,
    StaffSockets,
    create_sio,
)
from web import handlers as _handlers  # noqa: F401  (registers the API routes)
from web import metrics as server_metrics
from web import pages
from web.auth import (
    create_login_throttle,
    purge_expired_sessions,
)
from web.errors import error_middleware
from web.handlers import meta, notifications
from web.keys import (
    DB,
    GATEWAY,
    METRICS,
    NOTIFIER,
    PIPELINE,
    REDIS,
    SECRET,
    SETTINGS,
    STAFF_SOCKETS,
    THROTTLE,
    VISITS,
)
from web.routes import api
from web.visit_gateway import DatabaseVisitGateway

log = logging.getLogger("vreception.web")

REQUESTS = web.AppKey("metric_requests", Counter)
LATENCY = web.AppKey("metric_latency", Histogram)


async def _database(app: web.Application) -> AsyncIterator[None]:
    database = Database(app[SETTINGS])
    app[DB] = database
    try:
        async with database.writer() as db:
            purged = await purge_expired_sessions(db)
        if purged:
            log.info("removed %d expired sessions", purged)
    except Exception as exc:  # the database may come up later; /readyz reports it
        log.warning("database not reachable at start-up: %s", exc)
    checkpoints = asyncio.create_task(database.checkpoints(), name="wal-checkpoints")
    yield
    checkpoints.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await checkpoints
    await database.dispose()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    redis = create_redis(app[SETTINGS])
    app[REDIS] = redis
    app[THROTTLE] = create_login_throttle(redis)
    yield
    if redis is not None:
        await redis.aclose()


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[REQUESTS].labels(request.method, route, str(status)).inc()
        request.app[LATENCY].labels(request.method, route).observe(time.perf_counter() - started)


async def _housekeeping(app: web.Application) -> AsyncIterator[None]:
    """No-shows, reminders, the walk-in queue, visits left without their judge and the
    statistics' monthly store, every ``housekeeping_seconds``."""
    settings = app[SETTINGS]

    async def loop() -> None:
        while True:
            await asyncio.sleep(settings.housekeeping_seconds)
            try:
                async with app[DB].writer() as db:
                    done = await housekeeping(db, settings)
                    await purge_expired_sessions(db)
                    await portal_identity.purge(db)
                    outbox = take_outbox(db)
                await push_all(app[NOTIFIER], outbox)
                abandoned = await app[GATEWAY].reap_abandoned()
                if any(done.values()) or abandoned:
                    log.info("housekeeping: %s; ended as abandoned: %s", done, abandoned)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping failed; will retry")
            try:
                await stats_figures.refresh_due(
                    app[DB], settings.tz, timedelta(seconds=settings.stats_refresh_seconds)
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("refreshing the statistics failed; will retry")

    task = asyncio.create_task(loop(), name="housekeeping")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _network_notices(visits: VisitNamespace, app: web.Application) -> AsyncIterator[None]:
    """Tell the pages whose downlink is too thin for video (网络较差), while serving."""
    task = asyncio.create_task(visits.watch_networks(), name="network-notices")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def held_elsewhere(placement: RoomPlacement, visit_ids: Iterable[str]) -> set[str]:
    """Of ``visit_ids``, those whose room another node holds now (it may still be writing
    their folders, on the shared storage), or whose holder cannot be told (Redis not
    reachable): not this node's to repair at start-up. Their folders are repaired when a
    node opens their room again (RecorderSink.start) or when the pipeline finalizes them
    (recorder/jobs.py wait_closed). Embedded, every room is this node's."""
    elsewhere: set[str] = set()
    for visit_id in visit_ids:
        try:
            owner = await placement.owner(visit_id)
        except Exception as exc:
            log.warning("visit %s: who holds its room is unknown (%s); not repaired", visit_id, exc)
            elsewhere.add(visit_id)
            continue
        if owner is not None and owner != placement.node_url:
            elsewhere.add(visit_id)
    return elsewhere


async def _recorder(
    recorder: RecorderSink,
    visits: VisitNamespace,
    placement: RoomPlacement,
    app: web.Application,
) -> AsyncIterator[None]:
    """Repair what a crash interrupted; report write failures live and in the audit trail."""
    loop = asyncio.get_running_loop()
    settings = app[SETTINGS]
    queue = None
    if settings.redis_url is not None:  # processed by `vreception worker` processes
        queue = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    pipeline = Pipeline(app[DB], settings, queue=queue)
    app[PIPELINE] = pipeline
    problem = create_transcriber(
        settings.transcribe_engine,
        settings.transcribe_model_dir,
        settings.transcribe_grammar,
        threads=settings.transcribe_threads,
        language=settings.transcribe_language,
    ).problem()
    if problem is not None:  # the start-up check: jobs will record it on each transcript
        log.warning("转写不可用 (transcripts unavailable): %s", problem)
    else:
        log.info(
            "transcription: engine %s, model %s, language %s",
            settings.transcribe_engine,
            settings.transcribe_model_dir or "bundled",
            settings.transcribe_language,
        )
    # files first; a folder whose room another node holds is that node's (still written)
    unfinished = await loop.run_in_executor(None, still_recording, recorder.root)
    skip = await held_elsewhere(placement, unfinished)
    repaired = await loop.run_in_executor(None, functools.partial(recover, recorder.root, skip))

    async def audit(visit_id: str, action: str, **detail: Any) -> None:
        """What the recorder itself did or suffered, in the audit trail."""
        async with app[DB].writer() as db:
            record_audit(
                db,
                action=action,
                actor_type="system",
                target_type="visit",
                target_id=visit_id,
                detail=detail,
            )

    async def interrupted(visit_id: str, at: float | None, resumed: bool = False) -> None:
        """A recording found interrupted (repaired here): on its row and the audit trail."""
        await pipeline.interrupted(visit_id, at, resumed=resumed)
        at_local = None if at is None else audit_time(datetime.fromtimestamp(at, UTC), settings.tz)
        await audit(visit_id, "recording.interrupted", interrupted_at=at_local)

    async def on_record() -> None:
        """Put the repairs on record and resume unfinished processing, once the database
        answers (it may come up after this node)."""
        while True:
            try:
                for recording in list(repaired):
                    await interrupted(recording.visit_id, recording.interrupted_at)
                    repaired.remove(recording)
                resumed = await pipeline.resume()
                if resumed:
                    log.info("resuming the processing of %d recordings", resumed)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("recordings: database not reachable (%s); retrying in 30 s", exc)
                await asyncio.sleep(30)

    starting = asyncio.create_task(on_record(), name="recordings-on-record")
    reported: set[tuple[str, str]] = set()

    async def failed(visit_id: str, track_id: str, detail: str, since: float) -> None:
        """Pages get a plain message; the technical reason goes to the audit trail."""
        await visits.recording_failed(visit_id, failure_message(since, settings.tz))
        if (visit_id, track_id) in reported:  # one audit event per track and failure
            return
        reported.add((visit_id, track_id))
        await audit(visit_id, "recording.write_failed", track=track_id, message=detail)

    async def recovered(visit_id: str, start: float, end: float) -> None:
        reported.difference_update({r for r in reported if r[0] == visit_id})
        await visits.recording_recovered(visit_id, recovery_message(start, end, settings.tz))
        tz = settings.tz
        await audit(
            visit_id,
            "recording.write_resumed",
            missing_from=datetime.fromtimestamp(start, tz).isoformat(timespec="seconds"),
            missing_to=datetime.fromtimestamp(end, tz).isoformat(timespec="seconds"),
        )

    def on_failure(visit_id: str, track_id: str, detail: str, since: float) -> None:  # writer
        loop.call_soon_threadsafe(
            lambda: _background(app, failed(visit_id, track_id, detail, since))
        )

    def on_recovered(visit_id: str, start: float, end: float) -> None:  # writer thread
        loop.call_soon_threadsafe(lambda: _background(app, recovered(visit_id, start, end)))

    def on_interrupted(visit_id: str, at: float | None) -> None:  # writer thread
        # a room taken over from a node that died: its recording goes on here
        loop.call_soon_threadsafe(lambda: _background(app, interrupted(visit_id, at, resumed=True)))

    recorder.on_failure, recorder.on_recovered = on_failure, on_recovered
    recorder.on_interrupted = on_interrupted
    sweeping = asyncio.create_task(pipeline.sweep(), name="recordings-sweep")
    yield
    for task in (starting, sweeping):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await pipeline.close()
    if queue is not None:
        await queue.aclose()
    await loop.run_in_executor(None, recorder.close)


_tasks: set[asyncio.Task[None]] = set()


def _background(app: web.Application, work: Awaitable[None]) -> None:
    async def run() -> None:
        try:
            await work
        except Exception:
            log.exception("recorder failure report failed")

    task = asyncio.ensure_future(run())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _placement(settings: Settings) -> RoomPlacement:
    """Embedded: every room here; with Redis: rooms pinned to nodes (signaling/placement.py)."""
    redis = create_redis(settings)
    if redis is None:
        return LocalPlacement(settings.node_url)
    return RedisPlacement(redis, settings.node_url)


async def _close_placement(placement: RoomPlacement, app: web.Application) -> AsyncIterator[None]:
    yield
    await placement.close()


async def _stop_signaling(
    sio: socketio.AsyncServer, visits: VisitNamespace, app: web.Application
) -> None:
    """Shutdown, before the cleanup contexts: the rooms close (their recordings are
    finalized, their pages told), then every socket.io connection is closed at the
    engine.io level (not the socket.io one), so the pages reconnect by themselves, and
    their websockets end now rather than holding the shutdown."""
    try:
        await visits.shutdown()
    except Exception:
        log.exception("closing the rooms at shutdown failed")
    await sio.shutdown()
    connections = list(sio.eio.sockets.values())
    if connections:
        await sio.eio.disconnect()
    for connection in connections:
        # wake engine.io's writer, which then closes the websocket at once instead of
        # waiting out the ping timeout for a next packet
        connection.queue.put_nowait(None)


def create_app(settings: Settings) -> web.Application:
    """The whole web application for ``settings``."""
    sio = create_sio(settings)
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[sio.polling_guard(), metrics_middleware, error_middleware],
    )
    app[SETTINGS] = settings
    app[SECRET] = load_secret_key(settings)
    registry = CollectorRegistry()
    app[METRICS] = registry
    app[REQUESTS] = Counter(
        "vreception_http_requests",
        "HTTP requests",
        ["method", "route", "status"],
        registry=registry,
    )
    app[LATENCY] = Histogram(
        "vreception_http_request_seconds",
        "HTTP request latency",
        ["method", "route"],
        registry=registry,
    )
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_redis)
    app.cleanup_ctx.append(_housekeeping)
    gateway = DatabaseVisitGateway(app)
    app[GATEWAY] = gateway
    sio.register_namespace(NotificationNamespace(gateway.staff))
    announce_addresses(settings.media_announced_addresses)
    use_port_range(settings.media_udp_ports)
    recorder = RecorderSink(settings.resolved_recordings_dir)
    relay = Relay(
        ice_servers=settings.ice_servers(),
        sinks=[recorder],
        allowed_networks=settings.media_networks,
        max_video_kbps=settings.media_max_video_kbps,
        poor_network_kbps=settings.media_poor_network_kbps,
    )
    server_metrics.install(app, registry, relay, recorder)
    placement = _placement(settings)
    app.cleanup_ctx.append(functools.partial(_close_placement, placement))
    visits = VisitNamespace(gateway, RejoinTokens(app[SECRET]), relay, placement=placement)
    sio.register_namespace(visits)
    app[VISITS] = visits
    app.cleanup_ctx.append(functools.partial(_recorder, recorder, visits, placement))
    app.cleanup_ctx.append(functools.partial(_network_notices, visits))
    sio.attach(app)
    app.on_shutdown.append(functools.partial(_stop_signaling, sio, visits))
    app[NOTIFIER] = SocketNotifier(sio)
    app[STAFF_SOCKETS] = StaffSockets(sio)
    api.add_to(app)
    notifications.add_routes(app)
    meta.add_routes(app)
    pages.add_routes(app)
    return app
