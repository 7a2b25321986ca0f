"""With REDIS_URL: two nodes share the login throttle through a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio
from aiohttp.test_utils import TestClient

from config.settings import Settings
from tests.conftest import RedisServer
from tests.helpers import PASSWORD, Booking, World, local_time, login, next_weekday
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


async def test_notification_crosses_nodes_through_redis(
    aiohttp_client: Any, redis_server: RedisServer, migrated: Settings, booking: Booking
) -> None:
    """An operator books on node A; the judge's page connected to node B is told."""
    shared = migrated.model_copy(update={"redis_url": redis_server.url, "secret_key": "s" * 40})
    node_a: TestClient = await aiohttp_client(create_app(shared))
    node_b: TestClient = await aiohttp_client(create_app(shared))
    csrf = await login(node_a, "op_a")
    await login(node_b, "judge_a")
    cookie = node_b.session.cookie_jar.filter_cookies(node_b.make_url("/"))["vr_session"].value
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sio = socketio.AsyncClient(reconnection=False)
    sio.on("notification", received.put_nowait, namespace="/notify")
    await sio.connect(
        str(node_b.make_url("/")),
        namespaces=["/notify"],
        headers={"Cookie": f"vr_session={cookie}"},
        transports=["websocket"],
    )
    try:
        w = booking.world
        r = await node_a.post(
            "/api/v1/visits",
            headers={"X-CSRF-Token": csrf},
            json={
                "petition_id": booking.petitions["a0"],
                "receiving_court_id": w.courts["mid_a"],
                "judge_id": w.users["judge_a"],
                "room_id": w.rooms["basic_a"],
                "starts_at": local_time(next_weekday(2), 10).isoformat(),
            },
        )
        assert r.status == 201, await r.text()
        pushed = await asyncio.wait_for(received.get(), timeout=30)
        assert pushed["kind"] == "visit_booked" and pushed["visit_id"] == (await r.json())["id"]
    finally:
        await sio.disconnect()
