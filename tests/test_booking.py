"""Booking over the API: free slots, conflicts (409), rules (4xx), reschedule, cancel,
check-in, states, walk-ins, housekeeping, notifications (socket.io), iCalendar feeds."""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
import socketio
from aiohttp.test_utils import TestClient
from icalendar import Calendar
from sqlalchemy import Engine, event, func, select

from config.audit import AuditEvent
from config.db import create_engine, create_sessionmaker
from config.errors import ConflictError
from config.settings import Settings
from scheduler import booking as bk
from scheduler import lifecycle, walkins
from scheduler.housekeeping import housekeeping
from scheduler.models import (
    BookingLock,
    Notification,
    Petition,
    Petitioner,
    Role,
    Visit,
    VisitState,
    WalkIn,
    WalkInStatus,
)
from scheduler.scope import Actor
from tests.conftest import MakeClient
from tests.helpers import Booking, local_time, login, next_weekday, query_plans
from web.cli import setup_logging

MONDAY = next_weekday(0)


async def _client(make_client: MakeClient, username: str) -> tuple[TestClient, dict[str, str]]:
    c = await make_client()
    return c, {"X-CSRF-Token": await login(c, username)}


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _visit(b: Booking, petition: str, hour: int, minute: int = 0, **extra: Any) -> dict[str, Any]:
    body = {
        "petition_id": b.petitions[petition],
        "receiving_court_id": b.world.courts["mid_a"],
        "judge_id": b.world.users["judge_a"],
        "room_id": b.world.rooms["basic_a"],
        "starts_at": local_time(MONDAY, hour, minute).isoformat(),
    }
    body.update(extra)
    return {k: v for k, v in body.items() if v is not None}


async def _count(settings: Settings, model: Any) -> int:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as db:
            return int(await db.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        await engine.dispose()


async def test_book_conflicts_and_free_slots(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    op, h = await _client(make_client, "op_a")
    w = booking.world
    params: dict[str, Any] = {
        "room_id": w.rooms["basic_a"],
        "receiving_court_id": w.courts["mid_a"],
        "first": MONDAY.isoformat(),
        "days": 1,
        "limit": 3,
    }
    slots = await (await op.get("/api/v1/free-slots", params=params)).json()
    assert [_at(s["starts_at"]) for s in slots] == [
        local_time(MONDAY, 8),
        local_time(MONDAY, 8, 30),
        local_time(MONDAY, 9),
    ]
    assert slots[0]["judge_id"] == w.users["judge_a"]

    r = await op.post("/api/v1/visits", json=_visit(booking, "a0", 8), headers=h)
    assert r.status == 201, await r.text()
    first = await r.json()
    assert first["state"] == "scheduled" and first["judge_name"] == "judge_a"
    assert first["history"][0]["kind"] == "booked"

    # same judge and room, another petitioner: refused, naming what conflicts
    r = await op.post("/api/v1/visits", json=_visit(booking, "a1", 8, 15), headers=h)
    assert r.status == 409
    err = (await r.json())["error"]
    assert err["code"] == "double_booking"
    assert {c["resource"] for c in err["details"]["conflicts"]} == {"judge", "room"}
    assert {c["visit_id"] for c in err["details"]["conflicts"]} == {first["id"]}
    # another judge, same room: the room conflicts
    r = await op.post(
        "/api/v1/visits",
        headers=h,
        json=_visit(
            booking, "a1", 8, receiving_court_id=w.courts["high"], judge_id=booking.judge_high
        ),
    )
    assert r.status == 409
    assert [c["resource"] for c in (await r.json())["error"]["details"]["conflicts"]] == ["room"]
    # the same petitioner in another room with another judge: the petitioner conflicts
    admin, ah = await _client(make_client, "admin")
    room2 = await (
        await admin.post(
            "/api/v1/rooms",
            headers=ah,
            json={"court_id": w.courts["basic_a"], "name": "第二接访室"},
        )
    ).json()
    await admin.post(
        "/api/v1/room-hours",
        headers=ah,
        json={"room_id": room2["id"], "weekday": 0, "start": "08:00", "end": "20:00"},
    )
    r = await op.post(
        "/api/v1/visits",
        headers=h,
        json=_visit(
            booking,
            "a0",
            8,
            receiving_court_id=w.courts["high"],
            judge_id=booking.judge_high,
            room_id=room2["id"],
        ),
    )
    assert r.status == 409
    assert [c["resource"] for c in (await r.json())["error"]["details"]["conflicts"]] == [
        "petitioner"
    ]
    # without a judge the system picks a free one of the court
    r = await op.post(
        "/api/v1/visits",
        headers=h,
        json=_visit(
            booking,
            "a1",
            8,
            receiving_court_id=w.courts["high"],
            judge_id=None,
            room_id=room2["id"],
        ),
    )
    assert r.status == 201 and (await r.json())["judge_id"] == booking.judge_high
    assert await _count(migrated, Visit) == 2

    slots = await (await op.get("/api/v1/free-slots", params=params)).json()
    assert _at(slots[0]["starts_at"]) == local_time(MONDAY, 8, 30)
    day = await (await op.get("/api/v1/visits", params={"day": MONDAY.isoformat()})).json()
    assert len(day) == 2 and {v["petition_number"] for v in day} == {"A-0", "A-1"}


async def test_free_slot_search_reads_only_open_visits_through_the_state_indexes(
    booking: Booking, migrated: Settings
) -> None:
    """The judges' and the room's busy periods are found through indexes that hold the visit
    state before the time, so a court's years of past visits are never read (migration
    0007); the plan is SQLite's own for the statements the search really runs."""
    w = booking.world
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db:

            async def search() -> None:
                await bk.find_free_slots(
                    db,
                    migrated,
                    room_id=w.rooms["basic_a"],
                    receiving_court_id=w.courts["mid_a"],
                    judge_id=None,
                    petitioner_id=None,
                    first_day=MONDAY,
                    days=7,
                    limit=5,
                )

            plans = await query_plans(db, search, "FROM visits")
    finally:
        await engine.dispose()
    assert len(plans) == 2
    assert [line for plan in plans for line in plan] == [
        "SEARCH visits USING INDEX ix_visits_room_state_time"
        " (room_id=? AND state=? AND starts_at<?)",
        "SEARCH visits USING INDEX ix_visits_judge_state_time"
        " (judge_id=? AND state=? AND starts_at<?)",
    ]


async def test_rules_refused_with_clear_4xx(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    op, h = await _client(make_client, "op_a")
    w = booking.world
    yesterday = local_time(MONDAY - timedelta(days=30), 10)
    admin, ah = await _client(make_client, "admin")
    r = await admin.post(
        "/api/v1/court-days",
        headers=ah,
        json={
            "court_id": w.courts["mid_a"],
            "day": (MONDAY + timedelta(days=1)).isoformat(),
            "kind": "holiday",
            "note": "元旦",
        },
    )
    assert r.status == 201
    tuesday = MONDAY + timedelta(days=1)
    cases = [
        (
            _visit(booking, "a0", 9, ends_at=local_time(MONDAY, 8, 30).isoformat()),
            422,
            "invalid_period",
        ),
        (
            _visit(booking, "a0", 9, ends_at=local_time(MONDAY, 9).isoformat()),
            422,
            "invalid_period",
        ),
        (_visit(booking, "a0", 9, 3), 422, "invalid_period"),
        (_visit(booking, "a0", 9, starts_at=yesterday.isoformat()), 422, "in_the_past"),
        (_visit(booking, "a0", 9, room_id=w.rooms["basic_b"]), 422, "room_of_other_court"),
        (
            _visit(
                booking, "a0", 9, receiving_court_id=w.courts["mid_b"], judge_id=w.users["judge_b"]
            ),
            422,
            "not_a_parent_court",
        ),
        (_visit(booking, "a0", 9, judge_id=w.users["judge_b"]), 422, "judge_of_other_court"),
        (
            _visit(booking, "a0", 9, receiving_court_id=w.courts["basic_a"]),
            422,
            "not_a_parent_court",
        ),
        (_visit(booking, "b0", 9), 404, "not_found"),
        (_visit(booking, "a0", 21), 422, "room_closed"),
        (_visit(booking, "a0", 9, starts_at=local_time(tuesday, 9).isoformat()), 422, "holiday"),
        (_visit(booking, "a0", 9, starts_at="2026-12-01T09:00:00"), 422, "validation_failed"),
        (_visit(booking, "a0", 9, judge_id="1"), 422, "validation_failed"),
    ]
    for body, status, code in cases:
        r = await op.post("/api/v1/visits", json=body, headers=h)
        err = (await r.json())["error"]
        assert (r.status, err["code"]) == (status, code), (body, err)
        assert err["message"]
    assert await _count(migrated, Visit) == 0

    judge, jh = await _client(make_client, "judge_a")
    me = w.users["judge_a"]
    for body, status in [
        ({"judge_id": me, "weekday": 0, "start": "09:00", "end": "10:00"}, 409),  # overlaps
        ({"judge_id": me, "weekday": 0, "start": "10:00", "end": "10:00"}, 422),  # zero length
        ({"judge_id": me, "weekday": 0, "start": "11:00", "end": "10:00"}, 422),  # end first
        ({"judge_id": me, "weekday": 7, "start": "09:00", "end": "10:00"}, 422),
        ({"judge_id": me, "weekday": 0, "start": "9:00", "end": "10:00"}, 422),
        ({"judge_id": w.users["judge_b"], "weekday": 0, "start": "21:00", "end": "22:00"}, 403),
    ]:
        r = await judge.post("/api/v1/reception-hours", json=body, headers=jh)
        assert r.status == status, (body, await r.text())
    past = local_time(MONDAY - timedelta(days=20), 9)
    r = await judge.post(
        "/api/v1/availability-exceptions",
        headers=jh,
        json={
            "judge_id": me,
            "kind": "addition",
            "starts_at": past.isoformat(),
            "ends_at": (past + timedelta(hours=1)).isoformat(),
        },
    )
    assert r.status == 422 and (await r.json())["error"]["code"] == "in_the_past"


async def test_reschedule_cancel_keep_history(make_client: MakeClient, booking: Booking) -> None:
    op, h = await _client(make_client, "op_a")
    visit = await (
        await op.post("/api/v1/visits", json=_visit(booking, "a0", 10), headers=h)
    ).json()
    r = await op.post(
        f"/api/v1/visits/{visit['id']}/reschedule",
        headers=h,
        json={"starts_at": local_time(MONDAY, 14).isoformat(), "reason": "法官开庭"},
    )
    assert r.status == 200, await r.text()
    moved = await r.json()
    assert _at(moved["starts_at"]) == local_time(MONDAY, 14)
    assert _at(moved["ends_at"]) == local_time(MONDAY, 14, 30)
    assert [e["kind"] for e in moved["history"]] == ["booked", "rescheduled"]
    assert moved["history"][1]["detail"]["reason"] == "法官开庭"
    # the old time is free again
    r = await op.post("/api/v1/visits", json=_visit(booking, "a1", 10), headers=h)
    assert r.status == 201
    assert (
        await op.post(f"/api/v1/visits/{visit['id']}/cancel", headers=h, json={"reason": ""})
    ).status == 422
    r = await op.post(
        f"/api/v1/visits/{visit['id']}/cancel", headers=h, json={"reason": "信访人申请撤回"}
    )
    cancelled = await r.json()
    assert cancelled["state"] == "cancelled" and cancelled["cancel_reason"] == "信访人申请撤回"
    assert [e["kind"] for e in cancelled["history"]][-1] == "cancelled"
    r = await op.post(f"/api/v1/visits/{visit['id']}/cancel", headers=h, json={"reason": "再次"})
    assert r.status == 409 and (await r.json())["error"]["code"] == "invalid_transition"
    r = await op.post(
        f"/api/v1/visits/{visit['id']}/reschedule",
        headers=h,
        json={"starts_at": local_time(MONDAY, 15).isoformat(), "reason": "x"},
    )
    assert r.status == 409
    assert (
        await op.post("/api/v1/visits", json=_visit(booking, "a2", 14), headers=h)
    ).status == 201


async def test_a_checked_in_visit_moved_to_another_time_is_checked_in_again_there(
    make_client: MakeClient, booking: Booking
) -> None:
    """The check-in and its code are for the day they were made: moved, the visit waits
    for a new check-in and the code read out at the counter no longer opens it (before, it
    stayed checked in: the operator could not check in on the new day, the old code
    opened it at any time and housekeeping never marked a no-show)."""
    op, h = await _client(make_client, "op_a")
    visit = await (
        await op.post("/api/v1/visits", json=_visit(booking, "a0", 10), headers=h)
    ).json()
    vid = visit["id"]
    r = await op.post(
        f"/api/v1/visits/{vid}/check-in",
        headers=h,
        json={"document_type": "resident_id", "document_number": "110105194912310021"},
    )
    assert r.status == 200, await r.text()
    code = (await (await op.post(f"/api/v1/visits/{vid}/code", headers=h)).json())["code"]
    r = await op.post(
        f"/api/v1/visits/{vid}/reschedule",
        headers=h,
        json={"starts_at": local_time(MONDAY, 14).isoformat(), "reason": "法官开庭"},
    )
    moved = await r.json()
    assert r.status == 200, moved
    assert (moved["state"], moved["checkin_document_masked"]) == ("scheduled", "")
    assert moved["history"][-1]["kind"] == "rescheduled"
    lookup = await op.post("/api/v1/visit-codes/lookup", json={"code": code})
    assert lookup.status == 401 and (await lookup.json())["error"]["code"] == "revoked_code"
    r = await op.post(
        f"/api/v1/visits/{vid}/check-in",
        headers=h,
        json={"document_type": "resident_id", "document_number": "110105194912310021"},
    )
    assert r.status == 200 and (await r.json())["state"] == "checked_in"


async def test_states_check_in_and_audit(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    op, h = await _client(make_client, "op_a")
    judge, jh = await _client(make_client, "judge_a")
    other_judge, oh = await _client(make_client, "judge_b")
    visit = await (
        await op.post("/api/v1/visits", json=_visit(booking, "a0", 11), headers=h)
    ).json()
    vid = visit["id"]
    r = await op.post(f"/api/v1/visits/{vid}/state", json={"state": "in_progress"}, headers=h)
    assert r.status == 403
    r = await op.post(f"/api/v1/visits/{vid}/state", json={"state": "in_lobby"}, headers=h)
    assert r.status == 409 and (await r.json())["error"]["code"] == "invalid_transition"
    # the identity check cannot be skipped through /state
    r = await op.post(f"/api/v1/visits/{vid}/state", json={"state": "checked_in"}, headers=h)
    assert r.status == 409 and (await r.json())["error"]["code"] == "invalid_transition"
    r = await op.post(
        f"/api/v1/visits/{vid}/check-in",
        headers=h,
        json={"document_type": "resident_id", "document_number": "110105194912310021"},
    )
    checked = await r.json()
    assert checked["state"] == "checked_in"
    assert checked["checkin_document_masked"] == "1101**********0021"
    assert "110105194912310021" not in await r.text()
    for who, headers, state, status in [
        (judge, jh, "in_lobby", 403),
        (op, h, "in_lobby", 200),
        (other_judge, oh, "in_progress", 404),
        (judge, jh, "checked_in", 200),  # sent back from the lobby
        (op, h, "in_lobby", 200),
        (judge, jh, "in_progress", 200),
        (judge, jh, "in_lobby", 403),
        (judge, jh, "ended", 200),
        (judge, jh, "in_progress", 409),
        (judge, jh, "archived", 403),
    ]:
        r = await who.post(f"/api/v1/visits/{vid}/state", json={"state": state}, headers=headers)
        assert r.status == status, (state, await r.text())
    admin, ah = await _client(make_client, "admin")
    r = await admin.post(f"/api/v1/visits/{vid}/state", json={"state": "archived"}, headers=ah)
    final = await r.json()
    assert final["state"] == "archived"
    assert [e["to_state"] for e in final["history"]] == [
        "scheduled",
        "checked_in",
        "in_lobby",
        "checked_in",
        "in_lobby",
        "in_progress",
        "ended",
        "archived",
    ]
    audits = await (
        await admin.get(
            "/api/v1/audit", params={"target_type": "visit", "target_id": vid, "limit": 50}
        )
    ).json()
    assert {a["action"] for a in audits["items"]} == {
        "visit.book",
        "visit.checked_in",
        "visit.in_lobby",
        "visit.in_progress",
        "visit.ended",
        "visit.archived",
    }
    assert await _count(migrated, BookingLock) == 0  # an ended visit holds no time


async def test_scope_of_visits(make_client: MakeClient, booking: Booking) -> None:
    op, h = await _client(make_client, "op_a")
    vid = (
        await (await op.post("/api/v1/visits", json=_visit(booking, "a0", 9), headers=h)).json()
    )["id"]
    for username, sees in [
        ("op_a", True),
        ("op_b", False),
        ("judge_a", True),
        ("judge_b", False),
        ("arch_a", True),
        ("arch_high", True),
        ("admin", True),
    ]:
        c, _ = await _client(make_client, username)
        day = await (await c.get("/api/v1/visits", params={"day": MONDAY.isoformat()})).json()
        assert ([v["id"] for v in day] == [vid]) is sees, username
        assert ((await c.get(f"/api/v1/visits/{vid}")).status == 200) is sees, username
    op_b, hb = await _client(make_client, "op_b")
    r = await op_b.post(f"/api/v1/visits/{vid}/cancel", json={"reason": "x"}, headers=hb)
    assert r.status == 404


async def _session(settings: Settings):  # type: ignore[no-untyped-def]
    engine = create_engine(settings)
    return engine, create_sessionmaker(engine)


async def test_housekeeping_reminds_and_marks_no_show(booking: Booking, migrated: Settings) -> None:
    w = booking.world
    actor = Actor(
        user_id=w.users["op_a"],
        username="op_a",
        role=Role.operator,
        court_id=w.courts["basic_a"],
    )
    start = local_time(MONDAY, 10)
    engine, maker = await _session(migrated)
    try:
        async with maker() as db, db.begin():
            visit = await bk.book_visit(
                db,
                actor,
                migrated,
                petition_id=booking.petitions["a0"],
                receiving_court_id=w.courts["mid_a"],
                judge_id=w.users["judge_a"],
                room_id=w.rooms["basic_a"],
                starts_at=start,
                now=start - timedelta(hours=1),
            )
        async with maker() as db, db.begin():
            assert (await housekeeping(db, migrated, now=start - timedelta(minutes=30)))[
                "reminded"
            ] == 0
            done = await housekeeping(db, migrated, now=start - timedelta(minutes=8))
            assert done["reminded"] == 1
            again = await housekeeping(db, migrated, now=start - timedelta(minutes=7))
            assert again["reminded"] == 0  # once only
        async with maker() as db:
            notes = (
                await db.scalars(select(Notification).where(Notification.kind == "visit_starting"))
            ).all()
            assert {n.user_id for n in notes} == {w.users["judge_a"], w.users["op_a"]}
            assert notes[0].title.startswith("8 分钟后开始接访")
        grace = timedelta(minutes=migrated.no_show_grace_minutes)
        async with maker() as db, db.begin():
            assert (await housekeeping(db, migrated, now=start + grace - timedelta(minutes=1)))[
                "no_show"
            ] == 0
            assert (await housekeeping(db, migrated, now=start + grace))["no_show"] == 1
        async with maker() as db:
            v = await db.get(Visit, visit.id)
            assert v is not None and v.state is VisitState.no_show
            assert not (await db.scalars(select(BookingLock))).all()
    finally:
        await engine.dispose()


async def test_walk_in_now_or_queue(booking: Booking, migrated: Settings) -> None:
    w = booking.world
    actor = Actor(
        user_id=w.users["op_a"],
        username="op_a",
        role=Role.operator,
        court_id=w.courts["basic_a"],
    )
    now = local_time(MONDAY, 10, 2)
    engine, maker = await _session(migrated)
    kw: dict[str, Any] = {
        "receiving_court_id": w.courts["mid_a"],
        "room_id": w.rooms["basic_a"],
        "document_type": "resident_id",
        "document_number": "110105194912310021",
    }
    try:
        async with maker() as db, db.begin():
            first = await walkins.walk_in(
                db, actor, migrated, petition_id=booking.petitions["a0"], now=now, **kw
            )
            assert first.visit is not None and first.queued is None
            assert first.visit.state is VisitState.checked_in and first.visit.walk_in
            assert first.visit.starts_at == local_time(MONDAY, 10, 5)
            assert first.visit.checkin_document_masked == "1101**********0021"
            second = await walkins.walk_in(
                db, actor, migrated, petition_id=booking.petitions["a1"], now=now, **kw
            )
            assert second.visit is None and second.queued is not None and second.position == 1
            with pytest.raises(ConflictError):
                await walkins.walk_in(
                    db, actor, migrated, petition_id=booking.petitions["a1"], now=now, **kw
                )
            assert (await housekeeping(db, migrated, now=now))["walk_ins"] == 0
            await lifecycle.cancel_visit(db, actor, migrated, first.visit.id, reason="信访人离开")
            assert (await housekeeping(db, migrated, now=now))["walk_ins"] == 1
        async with maker() as db:
            entry = await db.get(WalkIn, second.queued.id)
            assert entry is not None and entry.status is WalkInStatus.assigned
            seated = await db.get(Visit, entry.visit_id)
            assert seated is not None and seated.judge_id == w.users["judge_a"]
            assert seated.state is VisitState.checked_in
    finally:
        await engine.dispose()


async def test_a_walk_in_still_waiting_at_the_end_of_the_day_is_not_seated_the_next(
    booking: Booking, migrated: Settings
) -> None:
    """Queued in the evening and never seated: the next morning the entry is withdrawn
    (audited), not booked checked in on yesterday's identity check."""
    w = booking.world
    actor = Actor(
        user_id=w.users["op_a"], username="op_a", role=Role.operator, court_id=w.courts["basic_a"]
    )
    evening, morning = local_time(MONDAY, 16, 50), local_time(MONDAY + timedelta(days=1), 9, 2)
    kw: dict[str, Any] = {
        "receiving_court_id": w.courts["mid_a"],
        "room_id": w.rooms["basic_a"],
        "document_type": "resident_id",
        "document_number": "110105194912310021",
    }
    engine, maker = await _session(migrated)
    try:
        async with maker() as db, db.begin():
            seated = await walkins.walk_in(
                db, actor, migrated, petition_id=booking.petitions["a0"], now=evening, **kw
            )
            queued = await walkins.walk_in(
                db, actor, migrated, petition_id=booking.petitions["a1"], now=evening, **kw
            )
            assert seated.visit is not None and queued.queued is not None
            done = await housekeeping(db, migrated, now=morning)
            assert (done["walk_ins"], done["walk_ins_expired"]) == (0, 1)
        async with maker() as db:
            entry = await db.get(WalkIn, queued.queued.id)
            assert entry is not None and entry.status is WalkInStatus.withdrawn
            assert entry.visit_id is None
            audited = await db.scalar(
                select(AuditEvent).where(AuditEvent.action == "visit.walk_in_expired")
            )
            assert audited is not None and audited.target_id == str(entry.id)
    finally:
        await engine.dispose()


async def test_notifications_pushed_and_listed(make_client: MakeClient, booking: Booking) -> None:
    op, h = await _client(make_client, "op_a")
    judge, _ = await _client(make_client, "judge_a")
    cookie = judge.session.cookie_jar.filter_cookies(judge.make_url("/"))["vr_session"].value
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sio = socketio.AsyncClient(reconnection=False)
    sio.on("notification", received.put_nowait, namespace="/notify")
    await sio.connect(
        str(judge.make_url("/")),
        namespaces=["/notify"],
        headers={"Cookie": f"vr_session={cookie}"},
        transports=["websocket"],
    )
    try:
        r = await op.post("/api/v1/visits", json=_visit(booking, "a0", 9), headers=h)
        assert r.status == 201
        pushed = await asyncio.wait_for(received.get(), timeout=30)
        assert pushed["kind"] == "visit_booked" and pushed["title"] == "新预约：A-0"
    finally:
        await sio.disconnect()
    listed = await (await judge.get("/api/v1/notifications")).json()
    assert listed["unread"] == 1 and listed["items"][0]["id"] == pushed["id"]
    me = await (await judge.get("/api/v1/auth/me")).json()
    r = await judge.post(
        "/api/v1/notifications/read-all", headers={"X-CSRF-Token": me["csrf_token"]}
    )
    assert r.status == 200
    assert (await (await judge.get("/api/v1/notifications")).json())["unread"] == 0
    # without a session the socket is refused
    anonymous = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await anonymous.connect(
            str(judge.make_url("/")), namespaces=["/notify"], transports=["websocket"]
        )


async def test_ical_feed_secret_and_revocable(make_client: MakeClient, booking: Booking) -> None:
    op, h = await _client(make_client, "op_a")
    await op.post("/api/v1/visits", json=_visit(booking, "a0", 9), headers=h)
    judge, jh = await _client(make_client, "judge_a")
    r = await judge.post(
        "/api/v1/calendar-feeds",
        headers=jh,
        json={"kind": "judge", "owner_id": booking.world.users["judge_a"]},
    )
    assert r.status == 201
    feed = await r.json()
    path = feed["url"].split("//", 1)[1].split("/", 1)[1]
    anonymous = await make_client()
    r = await anonymous.get("/" + path)
    assert r.status == 200 and r.content_type == "text/calendar"
    cal = Calendar.from_ical(await r.read())
    events = [c for c in cal.walk("VEVENT")]
    assert [str(e["summary"]) for e in events] == ["视频接访 A-0"]
    assert events[0].decoded("dtstart") == local_time(MONDAY, 9)
    assert "信访人" not in (await r.text())  # no personal data in a feed
    r = await op.post(
        "/api/v1/calendar-feeds",
        headers=h,
        json={"kind": "judge", "owner_id": booking.world.users["judge_a"]},
    )
    assert r.status == 403
    r = await op.post(
        "/api/v1/calendar-feeds",
        headers=h,
        json={"kind": "room", "owner_id": booking.world.rooms["basic_a"]},
    )
    assert r.status == 201
    assert (await judge.delete(f"/api/v1/calendar-feeds/{feed['id']}", headers=jh)).status == 200
    assert (await anonymous.get("/" + path)).status == 404
    assert (await anonymous.get("/calendar/not-a-real-token-at-all.ics")).status == 404


ID_NUMBER = "11010519491231002X"  # a valid resident ID (GB 11643 check digit)
PHONE = "13812345678"


async def test_booking_shows_id_and_phone_only_masked_in_lists_logs_and_audit(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    """Register, book and check in a petitioner with real-looking numbers: every list, log
    line (access logging on, as an operator might run it) and audit event masks them."""
    logged = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("aiohttp.access").level)
    setup_logging("INFO")  # the server's own log set-up, masking filter included
    assert isinstance(root.handlers[0], logging.StreamHandler)
    root.handlers[0].setStream(logged)
    logging.getLogger("aiohttp.access").setLevel(logging.INFO)
    try:
        op, h = await _client(make_client, "op_a")
        w = booking.world
        r = await op.post(
            "/api/v1/petitioners",
            headers=h,
            json={"name": "王某", "id_type": "resident_id", "id_number": ID_NUMBER, "phone": PHONE},
        )
        assert r.status == 201, await r.text()
        petitioner = await r.json()
        r = await op.post(
            "/api/v1/cases",
            headers=h,
            json={
                "channel": "phone",
                "petitioners": [{"name": "王某", "id_number": ID_NUMBER, "phone": PHONE}],
                "category": "enforcement",
                "summary": f"来电 {PHONE}，证件 {ID_NUMBER}",
                "original_numbers": ["（2025）京0108执99号"],
                "original_court": "北京市海淀区人民法院",
            },
        )
        assert r.status == 201, await r.text()
        body = {
            "petition_id": (await r.json())["case"]["id"],
            "receiving_court_id": w.courts["mid_a"],
            "judge_id": w.users["judge_a"],
            "room_id": w.rooms["basic_a"],
            "starts_at": local_time(MONDAY, 9).isoformat(),
        }
        r = await op.post("/api/v1/visits", json=body, headers=h)
        assert r.status == 201, await r.text()
        vid = (await r.json())["id"]
        r = await op.post(
            f"/api/v1/visits/{vid}/check-in",
            headers=h,
            json={"document_type": "resident_id", "document_number": ID_NUMBER},
        )
        assert r.status == 200, await r.text()
        lists = [
            await (await op.get(path, params=params)).text()
            for path, params in (
                ("/api/v1/petitioners", {"q": ID_NUMBER[-4:]}),
                ("/api/v1/petitioners", {"q": ID_NUMBER}),  # a full number asked: in the log
                (f"/api/v1/petitioners/{petitioner['id']}", {}),
                ("/api/v1/visits", {"day": MONDAY.isoformat()}),
                (f"/api/v1/visits/{vid}", {}),
            )
        ]
        admin, _ = await _client(make_client, "admin")
        trail = await (await admin.get("/api/v1/audit", params={"limit": 200})).text()
    finally:
        root.handlers[:], _, _ = saved
        root.setLevel(saved[1])
        logging.getLogger("aiohttp.access").setLevel(saved[2])
    engine, maker = await _session(migrated)
    try:
        async with maker() as db:
            details = repr((await db.scalars(select(AuditEvent.detail))).all())
    finally:
        await engine.dispose()
    masked_id, masked_phone = "1101**********002X", "138****5678"
    assert masked_id in lists[0] and masked_phone in lists[0]  # the lists do show the person
    assert masked_id in lists[4]  # the visit shows the checked document, masked
    assert masked_id in logged.getvalue()  # the full-number search was logged, masked
    assert masked_id in details and masked_id in trail  # petitioner.create names the ID
    for shown in [*lists, logged.getvalue(), details, trail]:
        assert ID_NUMBER not in shown and PHONE not in shown


async def test_a_booking_answers_from_its_own_write_transaction(
    make_client: MakeClient, booking: Booking
) -> None:
    """POST /visits reads its answer (names, history) inside the write transaction that
    booked: two transactions a booking (the checks' read snapshot, the write), no third one
    after the commit."""
    op, h = await _client(make_client, "op_a")
    begins: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("BEGIN"):
            begins.append(statement.strip())

    event.listen(Engine, "before_cursor_execute", capture)
    try:
        r = await op.post("/api/v1/visits", json=_visit(booking, "a0", 9), headers=h)
    finally:
        event.remove(Engine, "before_cursor_execute", capture)
    assert r.status == 201, await r.text()
    answer = await r.json()
    assert answer["judge_name"] == "judge_a" and answer["room_name"]
    assert [e["kind"] for e in answer["history"]] == ["booked"]
    assert begins == ["BEGIN", "BEGIN IMMEDIATE"]


async def test_a_booking_reads_its_records_in_one_statement_and_writes_one_insert_a_table(
    booking: Booking, migrated: Settings
) -> None:
    """The petition, room, receiving court and judge come in one statement (the checks find
    them in the session); the visit, its locks, history, audit, timeline and notification
    rows are written as statements, one per table (no unit of work). No contact of the case
    and no change to it: the visit is a contact only once it takes place."""
    w = booking.world
    actor = Actor(
        user_id=w.users["op_a"], username="op_a", role=Role.operator, court_id=w.courts["basic_a"]
    )
    start = local_time(MONDAY, 10)
    engine, maker = await _session(migrated)
    statements: list[str] = []
    flushes: list[int] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with maker() as db:
            event.listen(db.sync_session, "after_flush", lambda *_: flushes.append(1))
            async with db.begin():
                visit = await bk.book_visit(
                    db,
                    actor,
                    migrated,
                    petition_id=booking.petitions["a0"],
                    receiving_court_id=w.courts["mid_a"],
                    judge_id=w.users["judge_a"],
                    room_id=w.rooms["basic_a"],
                    starts_at=start,
                    now=start - timedelta(hours=1),
                )
            tables = ("petitions", "reception_rooms", "courts", "users")
            lone = [
                s
                for s in statements
                if s.startswith("SELECT")
                and any(f"FROM {t} \nWHERE {t}.id = " in s for t in tables)
            ]
            assert lone == []  # none of them read on its own (no Session.get that missed)
            assert flushes == []
            inserts = [s.split()[2] for s in statements if s.startswith("INSERT")]
            assert sorted(inserts) == sorted(
                [
                    "visits",
                    "booking_locks",
                    "visit_events",
                    "audit_events",
                    "case_events",
                    "notifications",
                ]
            )
            assert not [st for st in statements if st.startswith("UPDATE petitions")]
            assert visit in db  # the session holds the visit it wrote, as if loaded
            written = await db.scalar(
                select(func.count())
                .select_from(Notification)
                .where(Notification.visit_id == visit.id)
            )
            assert written
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
        await engine.dispose()


async def test_free_slots_are_asked_by_who_books_in_their_own_court_only(
    make_client: MakeClient, booking: Booking
) -> None:
    """Another court's room or case is not found (its busy times, its petitioner's, are
    not the asker's to see); a judge, who does not book, is refused."""
    w = booking.world
    params: dict[str, Any] = {
        "room_id": w.rooms["basic_a"],
        "receiving_court_id": w.courts["mid_a"],
        "first": MONDAY.isoformat(),
        "days": 1,
        "limit": 1,
    }
    op_b, _ = await _client(make_client, "op_b")
    other_room = await op_b.get("/api/v1/free-slots", params=params)
    assert other_room.status == 404
    op_a, _ = await _client(make_client, "op_a")
    own = await op_a.get("/api/v1/free-slots", params=params)
    assert own.status == 200 and len(await own.json()) == 1
    other_case = {**params, "petition_id": booking.petitions["b0"]}
    assert (await op_a.get("/api/v1/free-slots", params=other_case)).status == 404
    judge, _ = await _client(make_client, "judge_a")
    assert (await judge.get("/api/v1/free-slots", params=params)).status == 403


async def test_the_petitioner_is_told_by_sms_when_staff_book_move_or_cancel_their_visit(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    """To the phone on file, through the outbox (the operators' 短信发件箱 without a
    gateway); a petitioner with no phone on file is not written to."""
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            petition = await db.get(Petition, booking.petitions["a0"])
            assert petition is not None
            person = await db.get(Petitioner, petition.petitioner_id)
            assert person is not None
            person.phone = "13800138000"
    finally:
        await engine.dispose()
    op, h = await _client(make_client, "op_a")
    r = await op.post("/api/v1/visits", json=_visit(booking, "a0", 10), headers=h)
    assert r.status == 201, await r.text()
    visit = await r.json()
    moved = await op.post(
        f"/api/v1/visits/{visit['id']}/reschedule",
        headers=h,
        json={"starts_at": local_time(MONDAY, 14).isoformat(), "reason": "法官开庭"},
    )
    assert moved.status == 200, await moved.text()
    gone = await op.post(
        f"/api/v1/visits/{visit['id']}/cancel", headers=h, json={"reason": "信访人要求"}
    )
    assert gone.status == 200, await gone.text()
    assert (await op.post("/api/v1/visits", json=_visit(booking, "a1", 9), headers=h)).status == 201
    outbox = await (await op.get("/api/v1/sms-outbox")).json()
    texts = [m["text"] for m in outbox if "视频接访" in m["text"]]
    day = f"{MONDAY:%Y-%m-%d}"
    assert texts == [
        f"【人民法院】您原定 {day} 14:00 的视频接访已取消。如有疑问，请联系甲市某区人民法院。",
        f"【人民法院】您的视频接访已改期至：{day} 14:00，地点：甲市某区人民法院第一接访室。",
        f"【人民法院】您的视频接访已预约：{day} 10:00，地点：甲市某区人民法院第一接访室。"
        "请携带身份证件按时到达。",
    ], texts
