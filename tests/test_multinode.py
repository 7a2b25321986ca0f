"""Two server processes sharing PostgreSQL and a real Redis: a visit's room is pinned to the
node its first participant reached; a participant who reaches the other node is sent there
(before their one-time code is spent), and the pin is released when the visit ends."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from recorder.manifest import load_signing_key
from signaling.placement import RedisPlacement
from tests.conftest import (
    LiveServer,
    PostgresServer,
    RedisServer,
    start_live_server,
    stop_live_server,
)
from tests.helpers import wait_for
from tests.live import Client, checked_in_visit, http_login

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


@pytest.fixture
def nodes(
    tmp_path: Path, redis_server: RedisServer, postgres_server: PostgresServer
) -> Iterator[tuple[LiveServer, LiveServer]]:
    env = {
        "DATABASE_URL": postgres_server.create_database("vr_multinode"),
        "REDIS_URL": redis_server.url,
        "VRECEPTION_SECRET_KEY": "m" * 40,
    }
    # one signing key, copied into each node's data_dir (nodes refuse to start without it)
    load_signing_key(tmp_path / "signing")
    for node in ("a", "b"):
        (tmp_path / node / "var").mkdir(parents=True)
        shutil.copy2(tmp_path / "signing" / "signing-key.pem", tmp_path / node / "var")
    a = start_live_server(tmp_path / "a" / "var", env)
    b = start_live_server(tmp_path / "b" / "var", env)
    try:
        yield a, b
    finally:
        stop_live_server(b)
        stop_live_server(a)


async def test_a_visit_is_held_on_one_node(
    nodes: tuple[LiveServer, LiveServer], redis_server: RedisServer
) -> None:
    a, b = nodes
    assert a.passwords, "node A seeds the demo data and prints the passwords"
    visit_id, code = await checked_in_visit(b, a.passwords)
    redis = Redis.from_url(redis_server.url)
    clients: list[Client] = []
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await http_login(http, a, "judge", a.passwords["judge"])
            cookie = next(c.value for c in http.cookie_jar if c.key == "vr_session")
        judge = await Client().connect(a, cookie)
        clients.append(judge)
        joined = await judge.call("join", {"v": 1, "visit_id": visit_id})
        assert joined["ok"], joined
        assert await redis.get(f"vreception:room:{visit_id}") == a.url.encode()

        # the petitioner's page reached node B: sent to node A, the code still unspent
        wrong = await Client().connect(b)
        clients.append(wrong)
        moved = await wrong.call("join", {"v": 1, "visit_id": visit_id, "code": code})
        assert moved["ok"] is False and moved["error"]["code"] == "wrong_node"
        assert moved["error"]["details"] == {"node": a.url}

        guest = await Client().connect(a)
        clients.append(guest)
        entered = await guest.call("join", {"v": 1, "visit_id": visit_id, "code": code})
        assert entered["ok"] and entered["admitted"] is False, entered
        waiting = await asyncio.wait_for(judge.lobby.get(), timeout=30)
        while not waiting["waiting"]:
            waiting = await asyncio.wait_for(judge.lobby.get(), timeout=30)
        admitted = await judge.call("admit", {"participant_id": entered["participant_id"]})
        assert admitted["ok"], admitted

        # the judge's staff page on node B is sent to A as well
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            csrf_b = await http_login(http, b, "judge", a.passwords["judge"])
            cookie_b = next(c.value for c in http.cookie_jar if c.key == "vr_session")
        judge_b = await Client().connect(b, cookie_b)
        clients.append(judge_b)
        assert (await judge_b.call("join", {"v": 1, "visit_id": visit_id}))["error"][
            "code"
        ] == "wrong_node"

        assert (await judge.call("end"))["ok"]
        assert await redis.get(f"vreception:room:{visit_id}") is None

        # that second session logs out through node A: its socket on node B closes at once
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                a.url + "/api/v1/auth/logout",
                headers={"X-CSRF-Token": csrf_b, "Cookie": f"vr_session={cookie_b}"},
            ) as r,
        ):
            assert r.status == 200, await r.text()

        async def closed_on_b() -> bool:
            return "/visit" not in judge_b.sio.namespaces

        await wait_for(closed_on_b, within=30)
        assert "/visit" in judge.sio.namespaces  # the first session is still logged in
    finally:
        for client in clients:
            await client.close()
        await redis.aclose()


async def test_room_leases_are_renewed_while_held_and_lapse_otherwise(
    redis_server: RedisServer,
) -> None:
    x = RedisPlacement(Redis.from_url(redis_server.url), "http://x", lease_seconds=0.6)
    y = RedisPlacement(Redis.from_url(redis_server.url), "http://y", lease_seconds=0.6)
    redis = Redis.from_url(redis_server.url)
    try:
        assert await x.claim("1" * 32) == "http://x"
        assert await y.claim("1" * 32) == "http://x"

        async def lapsed() -> bool:  # claimed, never held (the join failed): the claim lapses
            return not await redis.exists(RedisPlacement.key("1" * 32))

        await wait_for(lapsed, within=10)
        assert await y.claim("1" * 32) == "http://y"

        assert await x.claim("2" * 32) == "http://x"
        x.hold("2" * 32)
        renewals, last = 0, await redis.pttl(RedisPlacement.key("2" * 32))

        async def renewed_past_a_lease() -> bool:  # a renewal every third of the lease
            nonlocal renewals, last
            now = await redis.pttl(RedisPlacement.key("2" * 32))
            assert now > 0, "the held claim lapsed"
            renewals, last = renewals + (now > last), now
            return renewals >= 4

        await wait_for(renewed_past_a_lease, within=10)
        assert await y.claim("2" * 32) == "http://x"
        await y.release("2" * 32)  # only the owner can release
        assert await y.claim("2" * 32) == "http://x"
        await x.release("2" * 32)
        assert await y.claim("2" * 32) == "http://y"
    finally:
        await x.close()
        await y.close()
        await redis.aclose()


async def test_a_held_room_whose_lease_vanished_is_claimed_again_by_its_node(
    redis_server: RedisServer,
) -> None:
    """Redis lost the key of a room that still lives on node x (a restart, a failover, x cut
    off for a lease): x's next renewal takes it again, so another node neither opens a second
    room for the visit nor finds it held by nobody (and ends it as abandoned); a lease
    another node took meanwhile is left to it."""
    x = RedisPlacement(Redis.from_url(redis_server.url), "http://x", lease_seconds=0.6)
    y = RedisPlacement(Redis.from_url(redis_server.url), "http://y", lease_seconds=0.6)
    redis = Redis.from_url(redis_server.url)
    key = RedisPlacement.key("3" * 32)
    try:
        assert await x.claim("3" * 32) == "http://x"
        x.hold("3" * 32)
        await redis.delete(key)

        async def taken_again() -> bool:
            return await redis.get(key) == b"http://x"

        await wait_for(taken_again, within=10)
        assert await y.claim("3" * 32) == "http://x" and await y.held("3" * 32)

        await redis.set(key, b"http://y", px=60_000)  # taken by y while x was cut off

        async def given_up() -> bool:
            return "3" * 32 not in x._held

        await wait_for(given_up, within=10)
        assert await redis.get(key) == b"http://y"
    finally:
        await x.close()
        await y.close()
        await redis.aclose()
