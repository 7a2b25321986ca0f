"""Shared pieces of the live-visit tests: a recording socket.io peer and a booked visit."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
import socketio
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from config.db import Database, utcnow
from config.keys import load_secret_key
from config.settings import Settings
from scheduler import booking as bk
from scheduler import lifecycle
from scheduler.codes import issue_visit_code
from scheduler.models import CodeRole, Role, VisitEvent, VisitEventKind
from scheduler.scope import Actor
from tests.helpers import Booking, local_time, login, next_weekday


class Peer:
    """A socket.io client on /visit that records every event it receives."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: dict[str, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)
        for name in (
            "lobby",
            "admitted",
            "refused",
            "participant_joined",
            "participant_left",
            "media_state",
            "tracks_changed",
            "ended",
            "error",
        ):
            self.sio.on(name, self._recorder(name), namespace="/visit")

    def _recorder(self, name: str) -> Any:
        async def record(data: Any) -> None:
            await self.events[name].put(data)

        return record

    async def connect(self, client: TestClient, cookie: str | None = None) -> Peer:
        headers = {"Cookie": f"vr_session={cookie}"} if cookie else {}
        await self.sio.connect(
            str(client.make_url("/")),
            namespaces=["/visit"],
            headers=headers,
            transports=["websocket"],
            wait_timeout=15,  # a loaded CI machine may take longer than the default 1 s
        )
        return self

    async def call(self, event: str, data: Any = None) -> dict[str, Any]:
        return await self.sio.call(event, data, namespace="/visit", timeout=30)  # type: ignore[no-any-return]

    async def next(self, event: str) -> Any:
        return await asyncio.wait_for(self.events[event].get(), timeout=30)

    async def close(self) -> None:
        await self.sio.disconnect()


def _cookie(client: TestClient) -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/"))["vr_session"].value


@pytest.fixture
async def visit(booking: Booking, migrated: Settings) -> dict[str, Any]:
    """A visit of petition a0, booked with judge_a and checked in, with codes."""
    w = booking.world
    actor = Actor(
        user_id=w.users["op_a"], username="op_a", role=Role.operator, court_id=w.courts["basic_a"]
    )
    start = local_time(next_weekday(0), 10)
    secret = load_secret_key(migrated)
    db = Database(migrated)
    try:
        async with db.writer() as s:
            v = await bk.book_visit(
                s,
                actor,
                migrated,
                petition_id=booking.petitions["a0"],
                receiving_court_id=w.courts["mid_a"],
                judge_id=w.users["judge_a"],
                room_id=w.rooms["basic_a"],
                starts_at=start,
            )
            await lifecycle.check_in(
                s, actor, v.id, document_type="other", document_number="X1234567"
            )
            other = await bk.book_visit(
                s,
                actor,
                migrated,
                petition_id=booking.petitions["a1"],
                receiving_court_id=w.courts["mid_a"],
                judge_id=w.users["judge_a"],
                room_id=w.rooms["basic_a"],
                starts_at=start + timedelta(hours=1),
            )
            codes = {}
            for name, visit_id, ttl in (
                ("petitioner", v.id, timedelta(hours=2)),
                ("spare", v.id, timedelta(hours=2)),
                ("expired", v.id, -timedelta(minutes=1)),
                ("other_visit", other.id, timedelta(hours=2)),
            ):
                issued = await issue_visit_code(
                    s,
                    secret=secret,
                    visit_id=visit_id,
                    role=CodeRole.petitioner,
                    ttl=ttl,
                    now=utcnow(),
                )
                codes[name] = issued.code
        return {"id": v.id, "other": other.id, "codes": codes}
    finally:
        await db.dispose()


async def admitted_call(
    make_client: Any, visit: dict[str, Any]
) -> tuple[Any, Peer, Peer, dict[str, Any]]:
    """The visit's judge (judge_a) in the call and its petitioner admitted: the client, the
    judge's peer, the petitioner's, and the petitioner's join answer."""
    staff = await make_client()
    await login(staff, "judge_a")
    judge = await Peer().connect(staff, _cookie(staff))
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    guest = await Peer().connect(staff)
    joined = await guest.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
    )
    assert (await judge.call("admit", {"participant_id": joined["participant_id"]}))["ok"]
    await guest.next("admitted")
    return staff, judge, guest, joined


async def room_events(settings: Settings, visit_id: str) -> list[VisitEvent]:
    """The visit's room events (joined, evidence shown, ...) in the order they happened."""
    database = Database(settings)
    try:
        async with database.reader() as db:
            return list(
                await db.scalars(
                    select(VisitEvent)
                    .where(VisitEvent.visit_id == visit_id, VisitEvent.kind == VisitEventKind.room)
                    .order_by(VisitEvent.id)
                )
            )
    finally:
        await database.dispose()
