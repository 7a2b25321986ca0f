"""Health, readiness, metrics and the OpenAPI document (outside the role checks)."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from web.keys import DB, METRICS, REDIS
from web.routes import api, openapi_document

log = logging.getLogger("vreception.web")

VERSION = "0.1.0"


async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The process can serve: the database (and Redis, when configured) answer."""
    checks: dict[str, str] = {}
    status = 200
    try:
        async with request.app[DB].reader() as db:
            await db.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("readiness: database check failed: %s", exc)
        checks["database"] = "unavailable"
        status = 503
    redis = request.app[REDIS]
    if redis is not None:
        try:
            await redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            log.warning("readiness: redis check failed: %s", exc)
            checks["redis"] = "unavailable"
            status = 503
    return web.json_response(
        {"status": "ok" if status == 200 else "unavailable", "checks": checks}, status=status
    )


async def metrics(request: web.Request) -> web.Response:
    data = generate_latest(request.app[METRICS])
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(api, "vreception API", VERSION))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/openapi.json", openapi)
