"""50 concurrent requests for the same slot: exactly one 201 and 49 × 409, on SQLite and on
PostgreSQL; the database holds one booking and its locks."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from aiohttp import ClientSession, CookieJar
from sqlalchemy import func, select

from config.db import create_engine, create_sessionmaker
from config.settings import Settings
from scheduler.models import BookingLock, Visit
from tests.helpers import PASSWORD, local_time, next_weekday, seed_booking, seed_world
from web.app import create_app

N = 50


async def test_fifty_concurrent_bookings_one_wins(aiohttp_server: Any, backend: Settings) -> None:
    engine = create_engine(backend)
    async with create_sessionmaker(engine)() as db, db.begin():
        world = await seed_world(db)
        booking = await seed_booking(db, world, petitions_a=N)
    server = await aiohttp_server(create_app(backend))
    monday = next_weekday(0)
    jar = CookieJar(unsafe=True)  # keep cookies for 127.0.0.1
    async with ClientSession(base_url=str(server.make_url("/")), cookie_jar=jar) as http:
        r = await http.post("/api/v1/auth/login", json={"username": "op_a", "password": PASSWORD})
        csrf = (await r.json())["csrf_token"]

        async def book(i: int) -> int:
            body = {
                "petition_id": booking.petitions[f"a{i}"],
                "receiving_court_id": world.courts["mid_a"],
                "judge_id": world.users["judge_a"],
                "room_id": world.rooms["basic_a"],
                "starts_at": local_time(monday, 10).isoformat(),
            }
            resp = await http.post("/api/v1/visits", json=body, headers={"X-CSRF-Token": csrf})
            payload = await resp.json()
            if resp.status == 409:
                assert payload["error"]["code"] == "double_booking", payload
            return resp.status

        statuses = Counter(await asyncio.gather(*(book(i) for i in range(N))))
    assert statuses == {201: 1, 409: N - 1}
    async with create_sessionmaker(engine)() as db:
        assert await db.scalar(select(func.count()).select_from(Visit)) == 1
        locks = await db.scalar(select(func.count()).select_from(BookingLock))
        assert locks == 3 * 6  # judge, room, petitioner × six 5-minute units
    await engine.dispose()
