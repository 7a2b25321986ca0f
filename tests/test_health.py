"""/healthz, /readyz (checks the database) and /metrics."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from config.settings import Settings
from tests.helpers import free_port
from web.app import create_app


async def test_health_ready_metrics(client: TestClient) -> None:
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["checks"]["database"] == "ok"
    await client.get("/api/v1/courts")
    metrics = await (await client.get("/metrics")).text()
    assert "vreception_http_requests_total" in metrics
    assert 'route="/api/v1/courts"' in metrics and 'status="401"' in metrics


async def test_readyz_reports_unreachable_database(aiohttp_client: Any, tmp_path: Any) -> None:
    dead = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none"
    app = create_app(Settings(data_dir=tmp_path, database_url=dead))
    c = await aiohttp_client(app)
    assert (await c.get("/healthz")).status == 200
    ready = await c.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["database"] == "unavailable"
    api = await c.get("/api/v1/auth/me", cookies={"vr_session": "some-token"})
    assert api.status == 503 and (await api.json())["error"]["code"] == "database_unavailable"
