"""The aiohttp application factory: database, Redis, throttle and metrics as cleanup contexts."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from config.db import create_engine, create_sessionmaker
from config.keys import load_secret_key
from config.redis import create_redis
from config.settings import Settings
from web import handlers as _handlers  # noqa: F401  (registers the API routes)
from web import pages
from web.auth import create_login_throttle, purge_expired_sessions
from web.errors import error_middleware
from web.handlers import meta
from web.keys import ENGINE, METRICS, REDIS, SECRET, SESSIONMAKER, SETTINGS, THROTTLE
from web.routes import api

log = logging.getLogger("vreception.web")

REQUESTS = web.AppKey("metric_requests", Counter)
LATENCY = web.AppKey("metric_latency", Histogram)


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS])
    app[ENGINE] = engine
    app[SESSIONMAKER] = create_sessionmaker(engine)
    try:
        async with app[SESSIONMAKER]() as db, db.begin():
            purged = await purge_expired_sessions(db)
        if purged:
            log.info("removed %d expired sessions", purged)
    except Exception as exc:  # the database may come up later; /readyz reports it
        log.warning("database not reachable at start-up: %s", exc)
    yield
    await engine.dispose()


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


def create_app(settings: Settings) -> web.Application:
    """The whole web application for ``settings``."""
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[metrics_middleware, error_middleware],
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
    api.add_to(app)
    meta.add_routes(app)
    pages.add_routes(app)
    return app
