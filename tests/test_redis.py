"""With REDIS_URL: two nodes share the login throttle through a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config.settings import Settings
from tests.conftest import RedisServer
from tests.helpers import PASSWORD, World
from web.app import create_app

pytestmark = pytest.mark.redis


async def test_two_nodes_share_throttle_and_sessions(
    aiohttp_client: Any, redis_server: RedisServer, migrated: Settings, world: World
) -> None:
    shared = migrated.model_copy(update={"redis_url": redis_server.url, "secret_key": "s" * 40})
    node_a: TestClient = await aiohttp_client(create_app(shared))
    node_b: TestClient = await aiohttp_client(create_app(shared))
    ready = await (await node_a.get("/readyz")).json()
    assert ready["checks"] == {"database": "ok", "redis": "ok"}
    for _ in range(shared.login_max_failures_per_account):
        r = await node_a.post("/api/v1/auth/login", json={"username": "judge_b", "password": "x"})
        assert r.status == 401
    blocked = await node_b.post(
        "/api/v1/auth/login", json={"username": "judge_b", "password": PASSWORD}
    )
    assert blocked.status == 429
    # a session opened on node B is valid on node A (the database is the source of truth)
    r = await node_b.post("/api/v1/auth/login", json={"username": "judge_a", "password": PASSWORD})
    assert r.status == 200
    cookie = r.cookies["vr_session"].value
    me = await node_a.get("/api/v1/auth/me", cookies={"vr_session": cookie})
    assert me.status == 200 and (await me.json())["username"] == "judge_a"
