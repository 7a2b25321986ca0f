"""Visits feed cases (issue 16, item 6): a visit is booked from a case and becomes one of its
contacts and an entry of its timeline; a closed case takes no visit; 判后答疑 and 领导接访 are
kinds a court books, a leader receiving the latter (never a judge, nor a leader a judge's);
the visit's judge records outcomes on the case's timeline, during the call or after it,
through the API and through the call page in Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from playwright.sync_api import expect
from sqlalchemy import select, update

from config.audit import AuditEvent
from config.db import Database
from config.settings import Settings
from scheduler import availability, lifecycle
from scheduler import booking as bk
from scheduler.cases.models import CaseEvent, Contact
from scheduler.cases.words import CHANNEL_BITS, CaseState, Channel
from scheduler.models import Petition, Role, User, Visit, VisitState
from scheduler.scope import SYSTEM_ACTOR, Actor
from scheduler.stats import figures
from tests.conftest import LiveServer, MakeClient
from tests.helpers import Booking, add_staff, local_time, login, next_weekday
from tests.live import checked_in_visit
from tests.visits import Peer, _cookie
from web.archive import describe

T = TypeVar("T")
MONDAY_10 = local_time(next_weekday(0), 10)


async def _events(settings: Settings, petition_id: int) -> list[CaseEvent]:
    db = Database(settings)
    try:
        async with db.reader() as s:
            return list(
                (
                    await s.scalars(
                        select(CaseEvent)
                        .where(CaseEvent.petition_id == petition_id)
                        .order_by(CaseEvent.id)
                    )
                ).all()
            )
    finally:
        await db.dispose()


async def _receiver(
    settings: Settings, booking: Booking, username: str, role: Role, court: str
) -> int:
    """A new staff member who receives visits (reception hours every day 08:00–20:00)."""
    db = Database(settings)
    try:
        async with db.writer() as s:
            user_id = await add_staff(s, booking.world, username, role, court)
            for weekday in range(7):
                await availability.add_template(
                    s,
                    SYSTEM_ACTOR,
                    judge_id=user_id,
                    weekday=weekday,
                    start_minute=8 * 60,
                    end_minute=20 * 60,
                    slot_minutes=30,
                    valid_from=None,
                    valid_until=None,
                )
        return user_id
    finally:
        await db.dispose()


async def _book(
    client: TestClient, csrf: str, booking: Booking, petition: str = "a0", **extra: Any
) -> tuple[int, dict[str, Any]]:
    w = booking.world
    body = {
        "petition_id": booking.petitions[petition],
        "receiving_court_id": w.courts["mid_a"],
        "room_id": w.rooms["basic_a"],
        "starts_at": MONDAY_10.isoformat(),
        **extra,
    }
    r = await client.post("/api/v1/visits", json=body, headers={"X-CSRF-Token": csrf})
    return r.status, await r.json()


def _actor(booking: Booking, username: str, role: Role, court: str) -> Actor:
    w = booking.world
    return Actor(w.users[username], username, role, w.courts[court])


async def _contacts(settings: Settings) -> list[Contact]:
    db = Database(settings)
    try:
        async with db.reader() as s:
            return list((await s.scalars(select(Contact).order_by(Contact.id))).all())
    finally:
        await db.dispose()


async def test_booking_from_a_case_records_a_timeline_entry_and_the_call_a_video_contact(
    client: TestClient, booking: Booking, migrated: Settings
) -> None:
    """Booked, the visit is an entry of its case's timeline; it is one of the case's contacts
    (its 来访次数, 信访量) only once it takes place: when the judge admits the petitioner, at
    the receiving court, dated then — and only once, however often the call is rejoined."""
    csrf = await login(client, "op_a")
    status, visit = await _book(client, csrf, booking)
    assert status == 201, visit
    assert (visit["kind"], visit["kind_name"]) == ("reception", "视频接访")
    assert (visit["petition_category"], visit["petition_category_name"]) == ("enforcement", "执行")
    assert visit["petition_state"] == "registered"
    petition_id = booking.petitions["a0"]
    assert await _contacts(migrated) == []  # booked is not held
    db = Database(migrated)
    try:
        async with db.reader() as s:
            case = await s.get(Petition, petition_id)
            assert case is not None and case.contact_count == 1 and case.channels == 0
            audit = (
                await s.scalars(
                    select(AuditEvent).where(
                        AuditEvent.action == "case.visit", AuditEvent.target_id == str(petition_id)
                    )
                )
            ).one()
            assert audit.detail["visit_id"] == visit["id"]
    finally:
        await db.dispose()
    (event,) = await _events(migrated, petition_id)
    assert event.kind == "visit"
    # the time as the court reads it, and the judge who receives
    assert MONDAY_10.strftime("%Y-%m-%d 10:00") in event.text and "judge_a" in event.text
    assert event.detail["visit_id"] == visit["id"]
    assert event.detail["link"] == f"/archive/visits/{visit['id']}"
    listed = await (await client.get(f"/api/v1/visits?day={MONDAY_10.date()}")).json()
    assert [v["petition_category_name"] for v in listed] == ["执行"]

    db = Database(migrated)
    try:
        async with db.writer() as s:  # checked in: in the building, not yet received
            await lifecycle.check_in(
                s,
                _actor(booking, "op_a", Role.operator, "basic_a"),
                visit["id"],
                document_type="other",
                document_number="X1234567",
            )
        assert await _contacts(migrated) == []
        before = datetime.now(UTC)
        judge = _actor(booking, "judge_a", Role.judge, "mid_a")
        async with db.writer() as s:  # the judge admits the petitioner: the visit takes place
            v = await s.get(Visit, visit["id"])
            assert v is not None
            await lifecycle.admit_petitioner(s, judge, v)
        after = datetime.now(UTC)
        async with db.writer() as s:  # rejoined: nothing more
            v = await s.get(Visit, visit["id"])
            assert v is not None
            await lifecycle.admit_petitioner(s, judge, v)
        (contact,) = await _contacts(migrated)
        assert contact.channel.value == "video" and contact.visit_id == visit["id"]
        assert contact.court_id == booking.world.courts["mid_a"]
        assert contact.petition_id == petition_id
        assert before <= contact.occurred_at <= after  # when it began, not when booked for
        assert contact.summary == "视频接访：甲市中级人民法院"
        assert contact.registered_by == booking.world.users["op_a"]  # who booked it
        async with db.reader() as s:
            case = await s.get(Petition, petition_id)
            assert case is not None and case.contact_count == 2
            assert case.channels == CHANNEL_BITS[Channel.video]
    finally:
        await db.dispose()


async def test_visits_never_held_are_no_contacts_and_a_moved_one_counts_when_held(
    booking: Booking, migrated: Settings
) -> None:
    """A visit cancelled or missed (no-show) never reached the court: no contact, in no
    month's 信访量 or 视频信访占比; a visit moved to another day counts once, when it is
    held; one still to come counts nowhere yet. A visit booked before contacts waited for
    the call (its contact stored at booking) is not counted twice when it is held."""
    w = booking.world
    op = _actor(booking, "op_a", Role.operator, "basic_a")
    judge = _actor(booking, "judge_a", Role.judge, "mid_a")
    db = Database(migrated)

    async def book(petition: str, at: datetime) -> Visit:
        async with db.writer() as s:
            return await bk.book_visit(
                s,
                op,
                migrated,
                petition_id=booking.petitions[petition],
                receiving_court_id=w.courts["mid_a"],
                judge_id=w.users["judge_a"],
                room_id=w.rooms["basic_a"],
                starts_at=at,
            )

    async def hold(visit_id: str) -> None:
        async with db.writer() as s:
            await lifecycle.check_in(
                s, op, visit_id, document_type="other", document_number="X1234567"
            )
            v = await s.get(Visit, visit_id)
            assert v is not None
            await lifecycle.admit_petitioner(s, judge, v)

    try:
        cancelled = await book("a0", MONDAY_10)
        async with db.writer() as s:
            await lifecycle.cancel_visit(s, op, migrated, cancelled.id, reason="信访人撤回")
        missed = await book("a1", MONDAY_10 + timedelta(hours=1))
        async with db.writer() as s:
            v = await s.get(Visit, missed.id)
            assert v is not None
            await lifecycle.transition(s, SYSTEM_ACTOR, v, VisitState.no_show)
        moved = await book("a2", MONDAY_10 + timedelta(hours=2))
        async with db.writer() as s:
            await bk.reschedule_visit(
                s,
                op,
                migrated,
                moved.id,
                starts_at=MONDAY_10 + timedelta(days=35),
                ends_at=None,
                judge_id=None,
                room_id=None,
                reason="改期",
            )
        await book("a3", MONDAY_10 + timedelta(hours=3))  # still to come
        assert await _contacts(migrated) == []
        await hold(moved.id)
        (contact,) = await _contacts(migrated)
        assert contact.visit_id == moved.id
        assert abs(contact.occurred_at - datetime.now(UTC)) < timedelta(minutes=1)

        # the statistics of the months all of them were booked in, held in or moved to
        tz = migrated.tz
        first = datetime.now(UTC).astimezone(tz).strftime("%Y-%m")
        last = (MONDAY_10 + timedelta(days=35)).astimezone(tz).strftime("%Y-%m")
        async with db.reader() as s:
            scope = await figures.scope_for(s, SYSTEM_ACTOR, w.courts["mid_a"])
            board = await figures.fresh_dashboard(
                db, s, scope, figures.parse_period(first, last, tz), timedelta(0)
            )
        channels = {k: c.num for k, c in board.result("volume_channel").by_key}
        assert channels == {"video": 1.0}
        share = board.result("video_share").total
        assert share is not None and (share.num, share.den) == (1.0, 1.0)

        # booked before this rule: its contact was stored at booking; held, it stays one
        legacy = await book("a4", MONDAY_10 + timedelta(hours=4))
        async with db.writer() as s:
            s.add(
                Contact(
                    petition_id=booking.petitions["a4"],
                    court_id=w.courts["mid_a"],
                    channel=Channel.video,
                    occurred_at=MONDAY_10 + timedelta(hours=4),
                    visit_id=legacy.id,
                )
            )
        await hold(legacy.id)
        assert [c.visit_id for c in await _contacts(migrated)] == [moved.id, legacy.id]
    finally:
        await db.dispose()


async def test_a_case_handed_down_is_booked_by_the_court_below_in_its_own_room(
    client: TestClient, booking: Booking, migrated: Settings
) -> None:
    """A case the intermediate court registered is booked by its own operators only until
    it hands the case down (交办): then the basic court books the visit, in its room."""
    w = booking.world
    petition_id = booking.petitions["a0"]
    db = Database(migrated)
    try:
        async with db.writer() as s:  # registered at the intermediate court, handled there
            await s.execute(
                update(Petition)
                .where(Petition.id == petition_id)
                .values(court_id=w.courts["mid_a"], handler_court_id=w.courts["mid_a"])
            )
        csrf = await login(client, "op_a")
        status, body = await _book(client, csrf, booking)
        assert status == 404, body  # not the basic court's case (yet)
        detail = await client.get(f"/api/v1/cases/{petition_id}")
        assert detail.status == 404
        async with db.writer() as s:  # handed down to the basic court
            await s.execute(
                update(Petition)
                .where(Petition.id == petition_id)
                .values(handler_court_id=w.courts["basic_a"])
            )
        detail = await client.get(f"/api/v1/cases/{petition_id}")
        assert detail.status == 200 and (await detail.json())["may_book"] is True
        listed = await (await client.get("/api/v1/petitions?limit=200")).json()
        assert petition_id in [p["id"] for p in listed["items"]]  # the booking form's list
        status, visit = await _book(client, csrf, booking)
        assert status == 201, visit
        async with db.reader() as s:
            stored = await s.get(Visit, visit["id"])
            assert stored is not None and stored.court_id == w.courts["basic_a"]
    finally:
        await db.dispose()


async def test_a_cancelled_visit_stays_on_the_timeline_with_its_cancellation(
    client: TestClient, booking: Booking, migrated: Settings
) -> None:
    csrf = await login(client, "op_a")
    _, visit = await _book(client, csrf, booking)
    r = await client.post(
        f"/api/v1/visits/{visit['id']}/cancel",
        json={"reason": "信访人要求改日"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status == 200, await r.text()
    booked, cancelled = await _events(migrated, booking.petitions["a0"])
    assert booked.detail["visit_id"] == cancelled.detail["visit_id"] == visit["id"]
    assert cancelled.kind == "visit" and cancelled.detail["cancelled"] is True
    assert "取消视频接访" in cancelled.text and "信访人要求改日" in cancelled.text
    assert await _contacts(migrated) == []  # it never took place: no contact of the case


async def test_the_upgrade_removes_contacts_of_visits_never_held_and_dates_the_others(
    client: TestClient, booking: Booking, migrated: Settings
) -> None:
    """Contacts stored at booking by the earlier rule: the one of a visit cancelled goes
    (its case's 来访次数 and channels counted again), the one of a visit held is dated when
    its call began, and the statistics' stored months are computed again."""
    import sqlite3

    from web.cli import downgrade, migrate

    csrf = await login(client, "op_a")
    _, held = await _book(client, csrf, booking)
    later = (MONDAY_10 + timedelta(hours=1)).isoformat()
    _, cancelled = await _book(client, csrf, booking, "a1", starts_at=later)
    r = await client.post(
        f"/api/v1/visits/{cancelled['id']}/cancel",
        json={"reason": "信访人要求改日"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status == 200
    await asyncio.to_thread(downgrade, migrated, "0016")
    con = sqlite3.connect(migrated.data_dir / "vreception.db")
    began = "2026-11-30 02:05:00.000000"
    try:
        for visit, petition in ((held, "a0"), (cancelled, "a1")):  # as booking stored them
            con.execute(
                "INSERT INTO case_contacts (petition_id, court_id, channel, occurred_at,"
                " summary, people_count, repeat, visit_id, created_at) VALUES"
                " (?, ?, 'video', '2026-11-20 01:00:00.000000', '', 1, 0, ?,"
                " '2026-11-19 01:00:00.000000')",
                (booking.petitions[petition], booking.world.courts["mid_a"], visit["id"]),
            )
            con.execute(
                "UPDATE petitions SET contact_count = contact_count + 1, channels = channels | 4"
                " WHERE id = ?",
                (booking.petitions[petition],),
            )
        con.execute(
            "INSERT INTO visit_events (visit_id, at, kind, from_state, to_state, actor_name,"
            " detail) VALUES (?, ?, 'state', 'in_lobby', 'in_progress', 'judge_a', '{}')",
            (held["id"], began),
        )
        con.execute("INSERT INTO stats_months VALUES ('2026-11', '2026-12-01 00:00:00.000000')")
        before = dict(con.execute("SELECT id, contact_count FROM petitions").fetchall())
        con.commit()
        await asyncio.to_thread(migrate, migrated)
        contacts = con.execute("SELECT visit_id, occurred_at FROM case_contacts").fetchall()
        assert contacts == [(held["id"], began)]
        after = dict(con.execute("SELECT id, contact_count FROM petitions").fetchall())
        a0, a1 = booking.petitions["a0"], booking.petitions["a1"]
        assert (after[a0], after[a1]) == (before[a0], before[a1] - 1)
        bits = {"walk_in": 1, "letter": 2, "video": 4, "online": 8, "phone": 16}
        channels, own = con.execute(
            "SELECT channels, channel FROM petitions WHERE id = ?", (a1,)
        ).fetchone()
        left = {c for (c,) in con.execute(
            "SELECT channel FROM case_contacts WHERE petition_id = ?", (a1,)
        )}  # fmt: skip
        assert channels == bits[own] | sum(bits[c] for c in left)  # counted again
        months = con.execute("SELECT refreshed_at FROM stats_months").fetchall()
        assert months == [("1970-01-01 00:00:00.000000",)]
    finally:
        con.close()


@pytest.mark.parametrize(("state", "word"), [("resolved", "已化解"), ("terminated", "已终结")])
async def test_a_closed_case_is_refused_a_visit_with_409(
    client: TestClient, booking: Booking, migrated: Settings, state: str, word: str
) -> None:
    petition_id = booking.petitions["a0"]
    db = Database(migrated)
    try:
        async with db.writer() as s:
            await s.execute(
                update(Petition).where(Petition.id == petition_id).values(state=CaseState(state))
            )
    finally:
        await db.dispose()
    csrf = await login(client, "op_a")
    status, body = await _book(client, csrf, booking)
    assert status == 409, body
    assert body["error"]["code"] == "case_closed" and word in body["error"]["message"]
    walk_in = await client.post(
        "/api/v1/visits/walk-in",
        json={
            "petition_id": petition_id,
            "receiving_court_id": booking.world.courts["mid_a"],
            "room_id": booking.world.rooms["basic_a"],
            "document_type": "other",
            "document_number": "X1234567",
        },
        headers={"X-CSRF-Token": csrf},
    )
    assert walk_in.status == 409 and (await walk_in.json())["error"]["code"] == "case_closed"
    db = Database(migrated)
    try:
        async with db.reader() as s:
            assert (await s.scalars(select(Visit.id))).all() == []
            assert (await s.scalars(select(Contact.id))).all() == []
    finally:
        await db.dispose()
    assert await _events(migrated, petition_id) == []


async def test_a_leader_visit_is_received_by_a_leader_and_never_by_a_judge(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    leader = await _receiver(migrated, booking, "leader_a", Role.leader, "mid_a")
    operator = await make_client()
    csrf = await login(operator, "op_a")
    w = booking.world
    listed = await (
        await operator.get(f"/api/v1/judges?court_id={w.courts['mid_a']}&kind=leader")
    ).json()
    assert [j["id"] for j in listed] == [leader]
    status, refused = await _book(
        operator, csrf, booking, kind="leader", judge_id=w.users["judge_a"]
    )
    assert status == 422 and refused["error"]["code"] == "invalid_judge", refused
    status, led = await _book(operator, csrf, booking, kind="leader")  # any free leader
    assert status == 201, led
    assert (led["kind_name"], led["judge_id"]) == ("领导接访", leader)
    status, judged = await _book(
        operator, csrf, booking, "a1", starts_at=(MONDAY_10 + timedelta(hours=1)).isoformat()
    )
    assert status == 201 and judged["judge_id"] == w.users["judge_a"], judged
    (event,) = await _events(migrated, booking.petitions["a0"])
    assert "预约领导接访" in event.text and "院领导leader_a" in event.text

    async def entered(username: str, visit_id: str) -> dict[str, Any]:
        staff = await make_client()
        await login(staff, username)
        peer = await Peer().connect(staff, _cookie(staff))
        try:
            return await peer.call("join", {"v": 1, "visit_id": visit_id})
        finally:
            await peer.close()

    desk = await make_client()  # the leader's reception desk and call view are open to them
    await login(desk, "leader_a")
    for page in ("/judge", f"/call/{led['id']}"):
        got = await desk.get(page, allow_redirects=False)
        assert got.status == 200, (page, got.status)
    mine = await (await desk.get(f"/api/v1/visits?day={MONDAY_10.date()}")).json()
    assert {v["id"] for v in mine} == {led["id"], judged["id"]}  # addressed to their court
    assert [v["can_record_outcome"] for v in mine if v["id"] == led["id"]] == [True]
    assert [v["can_record_outcome"] for v in mine if v["id"] == judged["id"]] == [False]
    as_leader = await entered("leader_a", led["id"])
    assert as_leader["ok"] and as_leader["role"] == "judge", as_leader
    assert (await entered("judge_a", led["id"]))["error"]["code"] == "not_entitled"
    assert (await entered("leader_a", judged["id"]))["error"]["code"] == "not_entitled"
    assert (await entered("judge_a", judged["id"]))["ok"]


async def test_post_judgment_is_answered_by_the_named_judge_also_of_the_petitioners_court(
    client: TestClient, booking: Booking, migrated: Settings
) -> None:
    w = booking.world
    trial_judge = await _receiver(migrated, booking, "judge_basic", Role.judge, "basic_a")
    csrf = await login(client, "op_a")
    own: dict[str, Any] = {"receiving_court_id": w.courts["basic_a"], "kind": "post_judgment"}
    status, body = await _book(client, csrf, booking, **own)
    assert status == 422 and body["error"]["code"] == "judge_required", body
    status, body = await _book(client, csrf, booking, receiving_court_id=w.courts["basic_a"])
    assert status == 422 and body["error"]["code"] == "not_a_parent_court", body
    status, visit = await _book(client, csrf, booking, judge_id=trial_judge, **own)
    assert status == 201, visit
    assert (visit["kind_name"], visit["judge_id"]) == ("判后答疑", trial_judge)
    assert visit["receiving_court_id"] == w.courts["basic_a"]


@pytest.mark.parametrize("kind", ["meeting", "onsite", "nonsense"])
async def test_meetings_and_onsite_receptions_are_not_booked_as_visits(
    client: TestClient, booking: Booking, kind: str
) -> None:
    csrf = await login(client, "op_a")
    status, body = await _book(client, csrf, booking, kind=kind)
    assert status == 422, body


async def test_the_outcome_is_recorded_by_the_visits_judge_once_the_call_began(
    make_client: MakeClient, visit: dict[str, Any], booking: Booking, migrated: Settings
) -> None:
    await _receiver(migrated, booking, "judge_a2", Role.judge, "mid_a")
    url = f"/api/v1/visits/{visit['id']}/outcome"
    judge = await make_client()
    h = {"X-CSRF-Token": await login(judge, "judge_a")}
    said = {"outcome": "explained", "text": "释明再审申请的条件与期限"}

    r = await judge.post(url, json=said, headers=h)  # checked in, not yet in the call
    assert r.status == 409 and (await r.json())["error"]["code"] == "invalid_state"

    db = Database(migrated)
    try:
        async with db.writer() as s:
            v = await s.get(Visit, visit["id"])
            assert v is not None and v.judge_id is not None
            await lifecycle.admit_petitioner(
                s, Actor(v.judge_id, "judge_a", Role.judge, v.receiving_court_id), v
            )
            await s.execute(update(User).where(User.id == v.judge_id).values(display_name="李法官"))
    finally:
        await db.dispose()

    for username, status in (("judge_a2", 403), ("op_a", 403), ("judge_b", 404)):
        other = await make_client()
        r = await other.post(url, json=said, headers={"X-CSRF-Token": await login(other, username)})
        assert r.status == status, (username, await r.text())
    for bad in ({"outcome": "praised"}, {"outcome": "other"}, {"outcome": "explained", "x": 1}):
        r = await judge.post(url, json=bad, headers=h)
        assert r.status == 422, (bad, await r.text())

    r = await judge.post(url, json=said, headers=h)
    assert r.status == 201, await r.text()
    first = await r.json()
    assert (first["outcome_name"], first["text"]) == ("释法明理", said["text"])
    assert (first["actor"], first["actor_name"]) == ("李法官", "judge_a")  # a name to read
    ended = await judge.post(
        f"/api/v1/visits/{visit['id']}/state", json={"state": "ended"}, headers=h
    )
    assert ended.status == 200, await ended.text()
    told = {"outcome": "assign", "text": "信访人电话 13800138000"}  # after the end
    r = await judge.post(url, json=told, headers=h)
    assert r.status == 201, await r.text()

    listed = await (await judge.get(f"/api/v1/visits/{visit['id']}/outcomes")).json()
    assert [o["outcome"] for o in listed] == ["explained", "assign"]
    assert listed[1]["text"] == "信访人电话 138****8000"  # masked where it is listed
    assert {o["actor"] for o in listed} == {"李法官"}
    outcomes = [e for e in await _events(migrated, booking.petitions["a0"]) if e.kind == "outcome"]
    assert [e.detail["outcome"] for e in outcomes] == ["explained", "assign"]
    assert outcomes[0].detail == {
        "visit_id": visit["id"],
        "outcome": "explained",
        "text": said["text"],
        "link": f"/archive/visits/{visit['id']}",
    }
    assert outcomes[0].text == f"接访结果：释法明理。{said['text']}"
    db = Database(migrated)
    try:
        async with db.reader() as s:
            audited = (
                await s.scalars(select(AuditEvent).where(AuditEvent.action == "case.outcome"))
            ).all()
            assert [a.actor_name for a in audited] == ["judge_a", "judge_a"]
    finally:
        await db.dispose()


async def test_petitions_take_a_category_code_and_lists_show_its_label(
    client: TestClient, booking: Booking, migrated: Settings, visit: dict[str, Any]
) -> None:
    csrf = await login(client, "op_a")
    body = {
        "channel": "letter",
        "petitioners": [{"name": "赵某", "id_type": "other", "id_number": "C-7"}],
        "summary": "申请再审",
        "original_numbers": ["（2025）甲民初7号"],
        "original_court": "甲区人民法院",
    }
    r = await client.post(
        "/api/v1/cases",
        json={**body, "category": "民事再审申请"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status == 422 and (await r.json())["error"]["details"][0]["field"] == "category"
    r = await client.post(
        "/api/v1/cases", json={**body, "category": "civil_retrial"}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status == 201, await r.text()
    created = await (await client.get(f"/api/v1/petitions/{(await r.json())['case']['id']}")).json()
    assert (created["category"], created["state"]) == ("civil_retrial", "registered")
    db = Database(migrated)
    try:
        async with db.reader() as s:  # the archive, the overlay and certified exports
            names = await describe(s, visit["id"])
            assert names is not None and names["petition_category"] == "执行"
    finally:
        await db.dispose()


async def test_a_leader_in_a_meeting_is_not_booked_for_a_leader_visit_at_the_same_time(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    """A leader's meetings and their 领导接访 hold the same time: booked for one, they are
    not booked for the other (a meeting held a leader's time under another name)."""
    from tests.test_meetings import _host, _meeting

    leader = await _receiver(migrated, booking, "leader_a", Role.leader, "mid_a")
    host, headers = await _host(make_client, booking, migrated)
    meeting = await host.post(
        "/api/v1/meetings",
        json=_meeting(booking, 10, cases=("a0",), invitees=("leader_a",)),
        headers=headers,
    )
    assert meeting.status == 201, await meeting.text()
    operator = await make_client()
    csrf = await login(operator, "op_a")
    status, body = await _book(operator, csrf, booking, "a1", kind="leader", judge_id=leader)
    assert status == 409 and body["error"]["code"] == "double_booking", body
    later = (MONDAY_10 + timedelta(hours=2)).isoformat()
    status, body = await _book(
        operator, csrf, booking, "a1", kind="leader", judge_id=leader, starts_at=later
    )
    assert status == 201, body


async def test_the_upgrade_gives_a_leaders_meeting_locks_the_name_their_visits_use(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    """Meetings booked before held a leader's time as ``user:<id>``: renamed, a 领导接访
    at the same time is refused as for a meeting booked now."""
    import sqlite3

    from tests.test_meetings import _host, _meeting
    from web.cli import downgrade, migrate

    leader = await _receiver(migrated, booking, "leader_a", Role.leader, "mid_a")
    host, headers = await _host(make_client, booking, migrated)
    meeting = await host.post(
        "/api/v1/meetings",
        json=_meeting(booking, 10, cases=("a0",), invitees=("leader_a",)),
        headers=headers,
    )
    assert meeting.status == 201, await meeting.text()
    await asyncio.to_thread(downgrade, migrated, "0017")
    con = sqlite3.connect(migrated.data_dir / "vreception.db")
    try:
        con.execute(  # as meetings stored it before
            "UPDATE booking_locks SET resource = ? WHERE resource = ?",
            (f"user:{leader}", f"judge:{leader}"),
        )
        con.commit()
    finally:
        con.close()
    await asyncio.to_thread(migrate, migrated)
    operator = await make_client()
    csrf = await login(operator, "op_a")
    status, body = await _book(operator, csrf, booking, "a1", kind="leader", judge_id=leader)
    assert status == 409 and body["error"]["code"] == "double_booking", body


# ---------------------------------------------------------------- in Chromium


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """An async helper run to completion beside Playwright's own event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.mark.browser
def test_the_judge_records_an_outcome_in_the_call_and_it_is_on_the_cases_timeline(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    url = live_server.url
    visit_id, code = _run(checked_in_visit(live_server, live_server.passwords))

    judge_ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    r = judge_ctx.request.post(
        url + "/api/v1/auth/login",
        data={"username": "judge", "password": live_server.passwords["judge"]},
    )
    assert r.ok, r.text()
    judge = judge_ctx.new_page()
    judge.goto(url + f"/call/{visit_id}")
    judge.wait_for_selector("body[data-joined='1']", timeout=60_000)
    expect(judge.locator("#visit-kind")).to_contain_text("视频接访")
    expect(judge.locator("#outcome-card")).to_be_visible()

    guest_ctx = chromium.new_context(locale="zh-CN")
    guest = guest_ctx.new_page()
    guest.goto(url + f"/join?visit={visit_id}")
    guest.fill("#code-input", code)
    guest.click("#code-submit")
    expect(guest.locator("#lobby-step")).to_be_visible(timeout=30_000)
    judge.locator("#lobby-rows button", has_text="准许进入").click()
    expect(guest.locator("#call-step")).to_be_visible(timeout=30_000)

    judge.select_option("#outcome-kind", "guided_to_litigation")
    judge.fill("#outcome-text", "告知可向原审法院申请再审")
    judge.click("#outcome-save")
    expect(judge.locator("#outcome-msg")).to_contain_text("已记入信访件：引导诉讼", timeout=30_000)
    expect(judge.locator("#outcome-list")).to_contain_text("引导诉讼：告知可向原审法院申请再审")
    judge.screenshot(path=str(artifacts / "call-outcome.png"), full_page=True)

    async def timeline() -> list[CaseEvent]:
        db = Database(Settings(data_dir=live_server.data_dir))
        try:
            async with db.reader() as s:
                visit = await s.get(Visit, visit_id)
                assert visit is not None and visit.state is VisitState.in_progress
                return list(
                    (
                        await s.scalars(
                            select(CaseEvent)
                            .where(CaseEvent.petition_id == visit.petition_id)
                            .order_by(CaseEvent.id)
                        )
                    ).all()
                )
        finally:
            await db.dispose()

    events = _run(timeline())
    booked = [e for e in events if e.kind == "visit" and e.detail["visit_id"] == visit_id]
    outcome = [e for e in events if e.kind == "outcome" and e.detail["visit_id"] == visit_id]
    assert len(booked) == 1 and len(outcome) == 1
    assert outcome[0].detail["outcome"] == "guided_to_litigation"
    assert outcome[0].detail["text"] == "告知可向原审法院申请再审"
    assert outcome[0].actor_name == "judge"
    for ctx in (guest_ctx, judge_ctx):
        ctx.close()


@pytest.mark.browser
def test_the_operator_registers_a_case_by_category_and_books_it_by_kind(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    url = live_server.url
    ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    op = ctx.new_page()
    op.goto(url + "/login")
    op.fill("input[name=username]", "operator")
    op.fill("input[name=password]", live_server.passwords["operator"])
    op.click("#login-submit")
    op.wait_for_url(url + "/operator")
    op.wait_for_selector("body[data-ready='1']", timeout=30_000)

    # registration goes through the case registration page (有录必全): the operator's page
    # links there; the category is chosen from the vocabulary, stored as its code
    op.click("button[data-tab=tab-petitions]")
    op.click("#register-case")
    op.wait_for_url(url + "/cases/new")
    op.select_option("#reg-channel", "walk_in")
    person = op.locator("#people .person").first
    person.locator("input[name=name]").fill("赵六")
    person.locator("input[name=id_number]").fill("110101198503071235")
    op.select_option("#reg-category", label="行政再审申请")
    op.fill("#reg-numbers", "（2025）京0108行初88号")
    op.fill("#reg-summary", "对行政判决不服")
    op.fill("#reg-court", "北京市海淀区人民法院")
    op.locator("#reg-form button[type=submit]").click()
    expect(op.locator("#saved-title")).to_contain_text("已登记信访件", timeout=30_000)
    number = op.locator("#saved-title a").inner_text()
    assert number.startswith("（20") and "信" in number, number

    # booking starts from the case: its page offers it, and the booking form shows its
    # number, category and state
    op.click("#saved-open")
    op.click("#book-visit")
    op.wait_for_url("**/operator?case=*")
    op.wait_for_selector("body[data-ready='1']", timeout=30_000)
    expect(op.locator("#book-case")).to_have_text(f"信访件 {number} · 行政再审申请 · 待分流")
    courts = op.locator("#book-court option")
    expect(courts).not_to_contain_text(["北京市海淀区人民法院"])
    op.select_option("#book-kind", "post_judgment")  # the petitioner's own court may answer
    expect(op.locator("#book-court option").first).to_have_text("北京市海淀区人民法院")
    expect(op.locator("#book-judge-label")).to_have_text("原审法官（必选）")
    op.select_option("#book-kind", "leader")
    expect(op.locator("#book-judge-label")).to_have_text("接访院领导（可不选）")
    op.select_option("#book-kind", "reception")
    op.select_option("#book-court", label="北京市第一中级人民法院")
    day = datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=1)
    while day.weekday() > 4:
        day += timedelta(days=1)
    op.fill("#book-first", day.isoformat())
    op.click("#book-form button[type=submit]")
    expect(op.locator("#book-msg")).to_contain_text("找到", timeout=30_000)
    op.locator("#slot-rows tr").first.locator("button").click()
    expect(op.locator("#book-msg")).to_contain_text(f"已预约视频接访：{number}", timeout=30_000)
    op.click("button[data-tab=tab-day]")
    booked = op.locator("#visit-rows tr", has_text=number)
    expect(booked).to_contain_text("视频接访")
    expect(booked).to_contain_text("行政再审申请")
    op.screenshot(path=str(artifacts / "operator-book-from-case.png"), full_page=True)
    ctx.close()
