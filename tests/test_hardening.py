"""Privacy in the audit trail, proxy addresses, races on visits (two cancels at once), login
guessing in parallel, feeds of departed users, template validity, roster scope."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient, make_mocked_request
from sqlalchemy import func, select
from sqlalchemy.orm.attributes import set_committed_value

from config.audit import AuditEvent
from config.db import Database
from config.errors import ConflictError
from config.settings import Settings
from scheduler import booking as bk
from scheduler import lifecycle
from scheduler.housekeeping import housekeeping
from scheduler.models import (
    BookingLock,
    Role,
    Visit,
    VisitEvent,
    VisitEventKind,
    VisitState,
)
from scheduler.scope import Actor
from tests.conftest import MakeClient
from tests.helpers import (
    PASSWORD,
    Booking,
    local_time,
    login,
    next_weekday,
    seed_booking,
    seed_world,
)
from web.app import create_app
from web.auth import client_address

MONDAY = next_weekday(0)


async def _client(make_client: MakeClient, username: str) -> tuple[TestClient, dict[str, str]]:
    c = await make_client()
    return c, {"X-CSRF-Token": await login(c, username)}


async def _audit_text(settings: Settings) -> str:
    db = Database(settings)
    try:
        async with db.reader() as s:
            return repr((await s.scalars(select(AuditEvent.detail))).all())
    finally:
        await db.dispose()


async def test_audit_masks_every_id_and_phone(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    op, h = await _client(make_client, "op_a")
    r = await op.post(
        "/api/v1/petitioners",
        headers=h,
        json={"name": "外籍", "id_type": "passport", "id_number": "E12345678", "phone": ""},
    )
    assert r.status == 201
    r = await op.post(
        "/api/v1/duty-lawyers",
        headers=h,
        json={
            "court_id": booking.world.courts["basic_a"],
            "name": "律师",
            "phone": "+86-138-1234-5678",
        },
    )
    assert r.status == 201
    text = await _audit_text(migrated)
    assert "E12345678" not in text and "E123*5678" in text
    assert "1234-5678" not in text and "+86-138-1234-5678" not in text


def test_forwarded_for_takes_the_proxys_entry(settings: Settings) -> None:
    trusting = settings.model_copy(update={"trust_forwarded_for": True})
    request = make_mocked_request("GET", "/", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.7"})
    assert client_address(request, trusting) == "203.0.113.7"


async def test_two_concurrent_cancels_one_wins_one_audit_entry_locks_released(
    aiohttp_server: Any, backend: Settings
) -> None:
    """The operator and the assigned judge cancel the same visit at the same moment (truly in
    parallel on PostgreSQL): one succeeds, the other gets 409, the history and the audit
    trail hold one cancellation, and the visit's time is free again."""
    database = Database(backend)
    async with database.writer() as s:
        world = await seed_world(s)
        booking = await seed_booking(s, world, petitions_a=1)
    server = await aiohttp_server(create_app(backend))
    clients = [TestClient(server), TestClient(server)]
    try:
        op_h = {"X-CSRF-Token": await login(clients[0], "op_a")}
        judge_h = {"X-CSRF-Token": await login(clients[1], "judge_a")}
        body = {
            "petition_id": booking.petitions["a0"],
            "receiving_court_id": world.courts["mid_a"],
            "judge_id": world.users["judge_a"],
            "room_id": world.rooms["basic_a"],
            "starts_at": local_time(MONDAY, 9).isoformat(),
        }
        r = await clients[0].post("/api/v1/visits", json=body, headers=op_h)
        assert r.status == 201, await r.text()
        vid = (await r.json())["id"]
        async with database.reader() as s:
            assert await s.scalar(select(func.count()).select_from(BookingLock)) == 18

        async def cancel(client: TestClient, headers: dict[str, str], reason: str) -> int:
            url = f"/api/v1/visits/{vid}/cancel"
            resp = await client.post(url, json={"reason": reason}, headers=headers)
            if resp.status == 409:
                code = (await resp.json())["error"]["code"]
                assert code in ("state_changed", "invalid_transition"), code
            return resp.status

        statuses = await asyncio.gather(
            cancel(clients[0], op_h, "操作员取消"), cancel(clients[1], judge_h, "法官取消")
        )
        assert sorted(statuses) == [200, 409]
        async with database.reader() as s:
            visit = await s.get(Visit, vid)
            assert visit is not None and visit.state is VisitState.cancelled
            winner = ["操作员取消", "法官取消"][statuses.index(200)]
            assert visit.cancel_reason == winner
            cancels = (
                await s.scalars(
                    select(AuditEvent).where(
                        AuditEvent.target_id == vid, AuditEvent.action == "visit.cancelled"
                    )
                )
            ).all()
            assert [e.detail["reason"] for e in cancels] == [winner]
            events = await s.scalar(
                select(func.count())
                .select_from(VisitEvent)
                .where(VisitEvent.visit_id == vid, VisitEvent.kind == VisitEventKind.cancelled)
            )
            assert events == 1
            assert await s.scalar(select(func.count()).select_from(BookingLock)) == 0
    finally:
        for client in clients:
            await client.close()
        await database.dispose()


async def test_reschedule_from_a_stale_read_loses_to_a_cancel(
    booking: Booking, migrated: Settings
) -> None:
    w = booking.world
    actor = Actor(
        user_id=w.users["op_a"], username="op_a", role=Role.operator, court_id=w.courts["basic_a"]
    )
    db = Database(migrated)
    try:
        async with db.writer() as s:
            visit = await bk.book_visit(
                s,
                actor,
                migrated,
                petition_id=booking.petitions["a0"],
                receiving_court_id=w.courts["mid_a"],
                judge_id=w.users["judge_a"],
                room_id=w.rooms["basic_a"],
                starts_at=local_time(MONDAY, 9),
            )
            await lifecycle.cancel_visit(s, actor, migrated, visit.id, reason="撤回")
            # this session read the visit before the cancel: its copy still says scheduled
            set_committed_value(visit, "state", VisitState.scheduled)
            try:
                await bk.reschedule_visit(
                    s,
                    actor,
                    migrated,
                    visit.id,
                    starts_at=local_time(MONDAY, 15),
                    ends_at=None,
                    judge_id=None,
                    room_id=None,
                    reason="改期",
                )
                raise AssertionError("reschedule of a cancelled visit succeeded")
            except ConflictError as exc:
                assert exc.code == "state_changed"
        async with db.reader() as s:
            assert (await s.get(Visit, visit.id)).state is VisitState.cancelled  # type: ignore[union-attr]
            assert not (await s.scalars(select(BookingLock))).all()
    finally:
        await db.dispose()


async def test_checked_in_petitioner_is_not_a_no_show(booking: Booking, migrated: Settings) -> None:
    w = booking.world
    actor = Actor(
        user_id=w.users["op_a"], username="op_a", role=Role.operator, court_id=w.courts["basic_a"]
    )
    start = local_time(MONDAY, 10)
    db = Database(migrated)
    try:
        async with db.writer() as s:
            waiting = await bk.book_visit(
                s,
                actor,
                migrated,
                petition_id=booking.petitions["a0"],
                receiving_court_id=w.courts["mid_a"],
                judge_id=w.users["judge_a"],
                room_id=w.rooms["basic_a"],
                starts_at=start,
                now=start - timedelta(hours=1),
            )
            absent = await bk.book_visit(
                s,
                actor,
                migrated,
                petition_id=booking.petitions["a1"],
                receiving_court_id=w.courts["high"],
                judge_id=booking.judge_high,
                room_id=w.rooms["basic_a"],
                starts_at=start + timedelta(minutes=30),
                now=start - timedelta(hours=1),
            )
            await lifecycle.check_in(
                s, actor, waiting.id, document_type="other", document_number="X1234567", now=start
            )
        async with db.writer() as s:
            done = await housekeeping(s, migrated, now=start + timedelta(hours=2))
            assert done["no_show"] == 1
        async with db.reader() as s:
            assert (await s.get(Visit, waiting.id)).state is VisitState.checked_in  # type: ignore[union-attr]
            assert (await s.get(Visit, absent.id)).state is VisitState.no_show  # type: ignore[union-attr]
    finally:
        await db.dispose()


async def test_parallel_password_guesses_hit_the_limit(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    c = await make_client()

    async def guess(i: int) -> int:
        r = await c.post("/api/v1/auth/login", json={"username": "judge_b", "password": f"x{i}"})
        return r.status

    statuses = Counter(await asyncio.gather(*(guess(i) for i in range(20))))
    assert statuses[401] == migrated.login_max_failures_per_account
    assert statuses[429] == 20 - migrated.login_max_failures_per_account
    r = await c.post("/api/v1/auth/login", json={"username": "judge_b", "password": PASSWORD})
    assert r.status == 429  # still blocked for the window, even with the right password


async def test_feed_dies_with_its_creators_access(
    make_client: MakeClient, booking: Booking
) -> None:
    op, h = await _client(make_client, "op_a")
    r = await op.post(
        "/api/v1/calendar-feeds",
        headers=h,
        json={"kind": "room", "owner_id": booking.world.rooms["basic_a"]},
    )
    path = "/" + (await r.json())["url"].split("//", 1)[1].split("/", 1)[1]
    anonymous = await make_client()
    assert (await anonymous.get(path)).status == 200
    admin, ah = await _client(make_client, "admin")
    r = await admin.patch(
        f"/api/v1/users/{booking.world.users['op_a']}", headers=ah, json={"active": False}
    )
    assert r.status == 200
    assert (await anonymous.get(path)).status == 404


async def test_template_validity_periods_may_follow_each_other(
    make_client: MakeClient, booking: Booking
) -> None:
    judge, h = await _client(make_client, "judge_b")
    me = booking.world.users["judge_b"]
    ends = MONDAY + timedelta(days=30)
    body: dict[str, Any] = {"judge_id": me, "weekday": 6, "start": "21:00", "end": "22:00"}
    # judge_b already receives 08:00–20:00 every day; 21:00 is free
    r = await judge.post(
        "/api/v1/reception-hours", headers=h, json={**body, "valid_until": ends.isoformat()}
    )
    assert r.status == 201, await r.text()
    r = await judge.post(
        "/api/v1/reception-hours",
        headers=h,
        json={**body, "valid_from": (ends + timedelta(days=1)).isoformat()},
    )
    assert r.status == 201, await r.text()
    r = await judge.post(
        "/api/v1/reception-hours", headers=h, json={**body, "valid_from": ends.isoformat()}
    )
    assert r.status == 409


async def test_roster_is_read_in_scope(make_client: MakeClient, booking: Booking) -> None:
    w = booking.world
    op_a, h = await _client(make_client, "op_a")
    r = await op_a.post(
        "/api/v1/duty-lawyers",
        headers=h,
        json={"court_id": w.courts["basic_a"], "name": "值班律师甲"},
    )
    assert r.status == 201
    for username, status in (
        ("op_a", 200),
        ("op_b", 404),
        ("judge_a", 200),
        ("judge_b", 404),
        ("arch_high", 200),
        ("admin", 200),
    ):
        c, _ = await _client(make_client, username)
        for path in (
            "/api/v1/duty-lawyers",
            "/api/v1/duty-periods",
            "/api/v1/duty-lawyers/on-duty",
        ):
            r = await c.get(path, params={"court_id": w.courts["basic_a"]})
            assert r.status == status, (username, path, r.status)
        r = await c.get("/api/v1/duty-lawyers")
        names = [x["name"] for x in await r.json()]
        assert ("值班律师甲" in names) is (status == 200), username
