"""Video supervision meetings (视频约谈): who may schedule one about which cases with whom
(4xx otherwise), no double booking of anyone, the lifecycle's rules for a meeting's room,
its minutes on each case's timeline; and in Chromium, a high court meeting staff of two
lower courts in a gallery with the active speaker marked, recorded and signed."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import func, select, update

from config.db import create_engine, create_sessionmaker, utcnow
from config.settings import Settings
from config.vocabulary import EndReason, ParticipantRole
from recorder.manifest import verify
from recorder.state import load_state
from scheduler import lifecycle
from scheduler.cases.models import CaseEvent
from scheduler.cases.words import CaseState, EventKind, VisitKind, VisitOutcome
from scheduler.models import (
    BookingLock,
    Notification,
    Petition,
    Role,
    Visit,
    VisitEvent,
    VisitEventKind,
)
from scheduler.models import VisitState as S
from scheduler.scope import Actor
from tests.conftest import (
    LiveServer,
    MakeClient,
    launch_chromium,
)
from tests.helpers import Booking, add_staff, local_time, login, next_weekday, wait_until
from tests.netns import staff_in_call
from tests.test_browser_visit import FFPROBE_CODEC

MONDAY = next_weekday(0)


async def _client(make_client: MakeClient, username: str) -> tuple[TestClient, dict[str, str]]:
    c = await make_client()
    return c, {"X-CSRF-Token": await login(c, username)}


async def _set_cases(settings: Settings, b: Booking, **handlers: str) -> None:
    """Cases being handled (triaged) by the given courts: a0 and b0 by the basic courts
    where they were registered, unless ``handlers`` say otherwise."""
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            for key, court in {"a0": "basic_a", "b0": "basic_b", **handlers}.items():
                await db.execute(
                    update(Petition)
                    .where(Petition.id == b.petitions[key])
                    .values(handler_court_id=b.world.courts[court], state=CaseState.handling)
                )
    finally:
        await engine.dispose()


def _meeting(b: Booking, hour: int, *, cases: tuple[str, ...], invitees: tuple[str, ...]) -> Any:
    return {
        "case_ids": [b.petitions[c] for c in cases],
        "invitee_ids": [b.world.users[u] for u in invitees],
        "starts_at": local_time(MONDAY, hour).isoformat(),
        "minutes": 60,
    }


async def _host(make_client: MakeClient, b: Booking, migrated: Settings) -> tuple[TestClient, Any]:
    await _set_cases(migrated, b)
    b.world.users["judge_high"] = b.judge_high
    return await _client(make_client, "judge_high")


async def test_a_high_court_judge_schedules_a_meeting_that_host_and_invitees_see(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    host, h = await _host(make_client, booking, migrated)
    r = await host.post(
        "/api/v1/meetings",
        json=_meeting(booking, 10, cases=("a0", "b0"), invitees=("judge_a", "op_b")),
        headers=h,
    )
    body = await r.json()
    assert r.status == 201, body
    assert body["my_role"] == "host" and body["state"] == "scheduled" and body["can_enter"]
    assert {c["number"] for c in body["cases"]} == {"A-0", "B-0"}
    assert {p["name"] for p in body["invitees"]} == {"judge_a", "op_b"}
    assert body["call_url"] == f"/call/{body['id']}"
    invitee, _ = await _client(make_client, "op_b")
    mine = await (await invitee.get("/api/v1/meetings")).json()
    assert [(m["id"], m["my_role"], m["can_enter"]) for m in mine] == [
        (body["id"], "attendee", True)
    ]
    other, _ = await _client(make_client, "op_a")  # not invited: sees nothing of it
    assert await (await other.get("/api/v1/meetings")).json() == []
    assert (await other.get(f"/api/v1/meetings/{body['id']}")).status == 404
    # the host, both invitees (a judge's time is the one visits hold) are booked
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db:
            held = set(
                (
                    await db.scalars(
                        select(BookingLock.resource).where(BookingLock.visit_id == body["id"])
                    )
                ).all()
            )
    finally:
        await engine.dispose()
    w = booking.world
    assert held == {
        f"judge:{booking.judge_high}",
        f"judge:{w.users['judge_a']}",
        f"user:{w.users['op_b']}",
    }


async def test_a_meeting_its_host_is_late_for_is_not_ended_until_its_time_is_over(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    """A visit's petitioner is a no-show a quarter of an hour after the start; a meeting
    is one only once its time is over (a host late by 16 minutes found it ended)."""
    from scheduler.housekeeping import housekeeping

    host, h = await _host(make_client, booking, migrated)
    r = await host.post(
        "/api/v1/meetings", json=_meeting(booking, 10, cases=("a0",), invitees=("op_b",)),
        headers=h,
    )  # fmt: skip
    assert r.status == 201, await r.text()
    meeting_id = (await r.json())["id"]
    start = local_time(MONDAY, 10)
    engine = create_engine(migrated)
    try:
        for now, state in ((start + timedelta(minutes=16), S.scheduled),
                           (start + timedelta(minutes=60), S.no_show)):  # fmt: skip
            async with create_sessionmaker(engine)() as db, db.begin():
                await housekeeping(db, migrated, now=now)
            async with create_sessionmaker(engine)() as db:
                meeting = await db.get(Visit, meeting_id)
                assert meeting is not None
                assert meeting.state is state, (now, meeting.state)
    finally:
        await engine.dispose()


async def test_a_meeting_holds_nine_people_at_most_the_host_and_eight_invited(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    """The gallery shows nine: eight staff of the courts below and the host are booked; a
    ninth invitee is refused with 422, nothing booked."""
    host, h = await _host(make_client, booking, migrated)
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            for i in range(9):
                await add_staff(db, booking.world, f"staff9_{i}", Role.judge, "mid_a")
    finally:
        await engine.dispose()
    staff = tuple(f"staff9_{i}" for i in range(9))
    r = await host.post(
        "/api/v1/meetings", json=_meeting(booking, 14, cases=("a0",), invitees=staff), headers=h
    )
    body = await r.json()
    assert r.status == 422, body
    assert body["error"]["details"][0] | {"type": ""} == {
        "field": "invitee_ids",
        "message": "不能超过 8 项",
        "type": "",
    }, body
    r = await host.post(
        "/api/v1/meetings",
        json=_meeting(booking, 14, cases=("a0",), invitees=staff[:8]),
        headers=h,
    )
    body = await r.json()
    assert r.status == 201, body
    assert sorted(p["name"] for p in body["invitees"]) == sorted(staff[:8])
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db:
            held = (
                await db.scalars(
                    select(BookingLock.resource).where(BookingLock.visit_id == body["id"])
                )
            ).all()
            meetings = await db.scalar(
                select(func.count()).select_from(Visit).where(Visit.kind == VisitKind.meeting)
            )
    finally:
        await engine.dispose()
    assert len(set(held)) == 9 and meetings == 1  # the host and eight; the refused one: none


async def test_a_meeting_room_already_booked_then_is_refused(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    """The high court's own 约谈室 holds one meeting at a time, whoever attends."""
    host, h = await _host(make_client, booking, migrated)
    admin, ah = await _client(make_client, "admin")
    r = await admin.post(
        "/api/v1/rooms",
        json={"court_id": booking.world.courts["high"], "name": "视频约谈室", "location": "三楼"},
        headers=ah,
    )
    assert r.status == 201, await r.text()
    room_id = (await r.json())["id"]
    first = _meeting(booking, 10, cases=("a0",), invitees=("op_b",))
    r = await host.post("/api/v1/meetings", json={**first, "room_id": room_id}, headers=h)
    assert r.status == 201, await r.text()
    # another host of the court, other invitees: only the room is in common
    officer, oh = await _client(make_client, "po_high")
    other = _meeting(booking, 10, cases=("b0",), invitees=("judge_a",))
    other["starts_at"] = local_time(MONDAY, 10, 30).isoformat()
    r = await officer.post("/api/v1/meetings", json={**other, "room_id": room_id}, headers=oh)
    body = await r.json()
    assert r.status == 409 and body["error"]["code"] == "double_booking", body
    assert body["error"]["message"] == "时间冲突：视频约谈室在该时段已有安排"
    basic_room = booking.world.rooms["basic_a"]  # not the host court's
    r = await officer.post("/api/v1/meetings", json={**other, "room_id": basic_room}, headers=oh)
    assert r.status == 422 and (await r.json())["error"]["code"] == "room_of_other_court"
    r = await officer.post("/api/v1/meetings", json=other, headers=oh)  # no room: free
    assert r.status == 201, await r.text()


async def test_an_invitee_already_booked_then_is_refused(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    host, h = await _host(make_client, booking, migrated)
    first = await host.post(
        "/api/v1/meetings",
        json=_meeting(booking, 10, cases=("a0",), invitees=("op_b",)),
        headers=h,
    )
    assert first.status == 201, await first.text()
    # another meeting overlapping for op_b: refused, naming op_b
    again = _meeting(booking, 10, cases=("b0",), invitees=("op_b",))
    again["starts_at"] = local_time(MONDAY, 10, 30).isoformat()
    r = await host.post("/api/v1/meetings", json=again, headers=h)
    body = await r.json()
    assert r.status == 409 and body["error"]["code"] == "double_booking", body
    assert "op_b" in body["error"]["message"]
    # a judge's reception visit and a meeting cannot overlap either
    op, oh = await _client(make_client, "op_a")
    w = booking.world
    visit = await op.post(
        "/api/v1/visits",
        json={
            "petition_id": booking.petitions["a1"],
            "receiving_court_id": w.courts["mid_a"],
            "judge_id": w.users["judge_a"],
            "room_id": w.rooms["basic_a"],
            "starts_at": local_time(MONDAY, 14).isoformat(),
        },
        headers=oh,
    )
    assert visit.status == 201, await visit.text()
    r = await host.post(
        "/api/v1/meetings",
        json=_meeting(booking, 14, cases=("a0",), invitees=("judge_a",)),
        headers=h,
    )
    body = await r.json()
    assert r.status == 409 and "judge_a" in body["error"]["message"], body
    # later the same day everyone is free
    later = await host.post(
        "/api/v1/meetings",
        json=_meeting(booking, 16, cases=("a0", "b0"), invitees=("judge_a", "op_b")),
        headers=h,
    )
    assert later.status == 201, await later.text()


async def test_an_invitee_not_below_the_host_court_is_refused(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    host, h = await _host(make_client, booking, migrated)
    r = await host.post(
        "/api/v1/meetings",
        json=_meeting(booking, 10, cases=("a0",), invitees=("arch_high",)),  # the same court
        headers=h,
    )
    body = await r.json()
    assert r.status == 422 and body["error"]["code"] == "invitee_not_below", body
    assert "arch_high 不是本院下级法院的在职工作人员" in body["error"]["message"]
    mid, mh = await _client(make_client, "judge_a")  # mid_a may not invite mid_b's staff
    r = await mid.post(
        "/api/v1/meetings",
        json=_meeting(booking, 10, cases=("a0",), invitees=("op_b",)),
        headers=mh,
    )
    assert r.status == 422 and (await r.json())["error"]["code"] == "invitee_not_below"
    r = await mid.get(f"/api/v1/meetings/people?court_id={booking.world.courts['basic_b']}")
    assert r.status == 422
    r = await mid.get(f"/api/v1/meetings/people?court_id={booking.world.courts['basic_a']}")
    assert {p["name"] for p in await r.json()} == {"op_a", "po_a"}


async def test_a_meeting_in_the_past_is_refused(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    host, h = await _host(make_client, booking, migrated)
    body = _meeting(booking, 10, cases=("a0",), invitees=("op_a",))
    past = (utcnow() - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    body["starts_at"] = past.isoformat()
    r = await host.post("/api/v1/meetings", json=body, headers=h)
    answer = await r.json()
    assert r.status == 422 and answer["error"]["code"] == "in_the_past", answer
    assert answer["error"]["message"] == "不能安排已经过去的时间"
    body["starts_at"] = local_time(MONDAY, 10, 3).isoformat()
    r = await host.post("/api/v1/meetings", json=body, headers=h)
    assert r.status == 422 and (await r.json())["error"]["code"] == "invalid_period"
    body["starts_at"] = "9999-12-31T23:00:00+00:00"  # its end past the calendar: not a 500
    r = await host.post("/api/v1/meetings", json=body, headers=h)
    assert r.status == 422 and (await r.json())["error"]["code"] == "too_far_ahead"


async def test_a_case_out_of_reach_is_refused(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    await _set_cases(migrated, booking, a1="mid_a")
    mid, h = await _client(make_client, "judge_a")  # mid_a: above basic_a, not basic_b

    async def meet(*cases: str) -> tuple[int, Any]:
        body = _meeting(booking, 10, cases=cases, invitees=("op_a",))
        r = await mid.post("/api/v1/meetings", json=body, headers=h)
        return r.status, (await r.json())["error"]

    # another branch's case: as if it did not exist
    assert await meet("a0", "b0") == (
        404,
        {"code": "not_found", "message": f"信访件 {booking.petitions['b0']} 不存在"},
    )
    status, error = await meet("a1")  # handled by mid_a itself: not supervised from above
    assert (status, error["message"]) == (403, "只有上级法院可以挂牌督办或约谈")
    status, error = await meet("a2")  # not yet triaged: no meeting about it yet
    assert status == 409 and "待分流" in error["message"], error
    found = await (await mid.get("/api/v1/meetings/cases?number=-")).json()
    assert [c["number"] for c in found] == ["A-0"]
    r = await mid.post(
        "/api/v1/meetings", json=_meeting(booking, 10, cases=("a0",), invitees=("op_a",)), headers=h
    )
    assert r.status == 201, await r.text()


async def test_only_staff_who_may_host_schedule_meetings(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    await _set_cases(migrated, booking)
    op, h = await _client(make_client, "op_a")
    r = await op.post(
        "/api/v1/meetings",
        json=_meeting(booking, 10, cases=("a0",), invitees=("judge_a",)),
        headers=h,
    )
    assert r.status == 403
    assert (await op.get("/api/v1/meetings")).status == 200  # an invitee's list
    arch, _ = await _client(make_client, "arch_a")
    assert (await arch.get("/api/v1/meetings")).status == 403


# ---------------------------------------------------------------- the lifecycle of a meeting


def _actor(user_id: int, role: Role, court_id: int) -> Actor:
    return Actor(user_id=user_id, username=f"u{user_id}", role=role, court_id=court_id)


def test_a_meetings_room_holds_nobody_before_its_host_opens_it_near_its_time() -> None:
    """Invitees wait for the host (they talked unrecorded before it was opened, days early
    even); the host opens it from 15 minutes before its start (a day-early test of the
    devices opened it, and it ended as abandoned with empty minutes)."""
    settings = Settings()
    start = datetime(2026, 12, 7, 2, 0, tzinfo=ZoneInfo("UTC"))  # 10:00 in the court
    meeting = Visit(id="m" * 32, kind=VisitKind.meeting, judge_id=1, starts_at=start)
    meeting.state = S.scheduled
    refusal = lifecycle.meeting_entry_refusal
    early = refusal(meeting, ParticipantRole.host, settings, start - timedelta(days=1))
    assert early == "约谈尚未到时间，2026-12-07 09:45 起可以进入"
    assert refusal(meeting, ParticipantRole.host, settings, start - timedelta(minutes=15)) is None
    waiting = refusal(meeting, ParticipantRole.attendee, settings, start)
    assert waiting == "约谈尚未开始，主持人进入后将自动加入，请保持本页打开"
    meeting.state = S.in_progress
    assert refusal(meeting, ParticipantRole.attendee, settings, start) is None
    visit = Visit(id="v" * 32, kind=VisitKind.reception, starts_at=start)
    visit.state = S.scheduled
    assert refusal(visit, ParticipantRole.petitioner, settings, start - timedelta(days=1)) is None


def test_host_and_invitees_enter_a_meeting_and_only_the_host_leads_it() -> None:
    meeting = Visit(
        id="m" * 32, kind=VisitKind.meeting, judge_id=1, court_id=10, receiving_court_id=10
    )
    meeting.state = S.scheduled
    host = _actor(1, Role.leader, 10)
    invitee = _actor(2, Role.operator, 20)
    stranger = _actor(3, Role.judge, 10)  # a judge of the host court, not invited
    invited = {2}
    assert lifecycle.room_role(host, meeting, invited) is ParticipantRole.host
    assert lifecycle.room_role(invitee, meeting, invited) is ParticipantRole.attendee
    assert lifecycle.room_role(stranger, meeting, invited) is None
    assert lifecycle.room_role(invitee, meeting) is None  # invitees are named, not implied
    for action in set(lifecycle.Action) - {lifecycle.Action.watch}:  # 监看 has its own rule
        assert lifecycle.may(host, action, meeting, invited)
        assert lifecycle.may(invitee, action, meeting, invited) is (
            action is lifecycle.Action.enter
        )
    assert lifecycle.starts_recording(lifecycle.MEETING_OPENED_BY, meeting)
    assert not lifecycle.starts_recording(ParticipantRole.attendee, meeting)
    assert lifecycle.hosts(ParticipantRole.host, meeting)
    assert not lifecycle.hosts(ParticipantRole.attendee, meeting)
    # no check-in or lobby: the host opens it, and only the host ends it
    assert lifecycle.allowed(meeting)[S.scheduled] == {S.in_progress, S.cancelled, S.no_show}
    assert not lifecycle.allowed(meeting)[S.checked_in]
    assert not lifecycle.can_end(host, meeting)
    meeting.state = S.in_progress
    assert lifecycle.can_end(host, meeting) and not lifecycle.can_end(invitee, meeting)


async def test_ending_a_meeting_puts_its_minutes_on_each_case(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    host, h = await _host(make_client, booking, migrated)
    r = await host.post(
        "/api/v1/meetings",
        json=_meeting(booking, 10, cases=("a0", "b0"), invitees=("judge_a", "op_b")),
        headers=h,
    )
    visit_id = (await r.json())["id"]
    actor = _actor(booking.judge_high, Role.judge, booking.world.courts["high"])
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db:  # shown on each case once scheduled
            scheduled = (
                await db.scalars(
                    select(CaseEvent).where(CaseEvent.kind == EventKind.meeting_scheduled)
                )
            ).all()
        assert {e.petition_id for e in scheduled} == {
            booking.petitions["a0"],
            booking.petitions["b0"],
        }
        for e in scheduled:
            assert e.text.startswith("安排视频约谈：") and "参会：" in e.text
            assert "judge_a（甲市中级人民法院）" in e.text and "+00:00" not in e.text
            assert e.detail["meeting_id"] == visit_id and "visit_id" not in e.detail
        async with create_sessionmaker(engine)() as db, db.begin():
            visit = await db.get(Visit, visit_id)
            assert visit is not None
            await lifecycle.open_meeting(db, actor, visit)
            assert visit.state is S.in_progress
            # 约谈结果: on each case the meeting was about, not only its first
            await lifecycle.record_outcome(
                db, actor, visit_id, VisitOutcome.explained, "限期两周反馈"
            )
            db.add(
                VisitEvent(
                    visit_id=visit_id,
                    at=datetime.now().astimezone(),
                    kind=VisitEventKind.room,
                    actor_name="judge_high",
                    detail={"event": "note", "text": "甲区法院两周内反馈执行进展"},
                )
            )
            await db.flush()
            assert await lifecycle.end_visit(db, actor, migrated, visit, EndReason.ended)
        async with create_sessionmaker(engine)() as db:
            entries = (
                await db.scalars(select(CaseEvent).where(CaseEvent.kind == EventKind.meeting))
            ).all()
            outcomes = (
                await db.scalars(select(CaseEvent).where(CaseEvent.kind == EventKind.outcome))
            ).all()
    finally:
        await engine.dispose()
    assert sorted(e.petition_id for e in outcomes) == sorted(
        [booking.petitions["a0"], booking.petitions["b0"]]
    )
    assert all(e.text == "约谈结果：释法明理。限期两周反馈" for e in outcomes)
    assert all(e.detail["meeting"] is True for e in outcomes)  # not for the portal
    assert {e.petition_id for e in entries} == {
        booking.petitions["a0"],
        booking.petitions["b0"],
    }
    for e in entries:
        assert "甲区法院两周内反馈执行进展" in e.text
        assert f"录像：/archive/visits/{visit_id}" in e.text
        assert e.detail["recording"] == f"/archive/visits/{visit_id}"
        assert "judge_a（甲市中级人民法院）" in e.text


async def test_cancelling_a_meeting_is_an_entry_of_each_case_and_its_invitees_are_told(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    """The cancellation reaches every case the meeting concerned (not only its first), with
    no recording link (none was made), hidden from the petitioner as the scheduling is; the
    host's invitees are told (the host's court's operators have nothing to do with it)."""
    host, h = await _host(make_client, booking, migrated)
    r = await host.post(
        "/api/v1/meetings",
        json=_meeting(booking, 10, cases=("a0", "b0"), invitees=("judge_a", "op_b")),
        headers=h,
    )
    visit_id = (await r.json())["id"]
    r = await host.post(f"/api/v1/meetings/{visit_id}/cancel", json={"reason": "改期"}, headers=h)
    assert r.status == 200, await r.text()
    assert (await r.json())["state"] == "cancelled"
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db:
            entries = (
                await db.scalars(
                    select(CaseEvent)
                    .where(CaseEvent.text.startswith("取消视频约谈"))
                    .order_by(CaseEvent.petition_id)
                )
            ).all()
            told = (
                await db.execute(
                    select(Notification.user_id, Notification.title, Notification.body).where(
                        Notification.visit_id == visit_id, Notification.kind == "meeting_cancelled"
                    )
                )
            ).all()
            # nothing else was said about the cancellation (no "visit_cancelled" to operators)
            others = (
                await db.scalars(
                    select(Notification.kind).where(
                        Notification.visit_id == visit_id, Notification.kind != "meeting_scheduled"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert [e.petition_id for e in entries] == sorted(
        [booking.petitions["a0"], booking.petitions["b0"]]
    )
    for e in entries:
        assert e.kind == EventKind.meeting and "原因：改期" in e.text
        assert e.detail["meeting_id"] == visit_id and e.detail["cancelled"] is True
        assert "visit_id" not in e.detail  # the page links that to a recording: none exists
    w = booking.world
    assert {uid for uid, _, _ in told} == {w.users["judge_a"], w.users["op_b"]}
    for _, title, body in told:
        assert title == "视频约谈取消：A-0、B-0" and body.endswith("原因：改期")
    assert sorted(others) == ["meeting_cancelled", "meeting_cancelled"]


# ---------------------------------------------------------------- in Chromium

TONE_SECONDS = 10
WAIT_MS = 30_000  # a loaded machine: three pages, the relay and the recorder on two cores
MEDIA_MS = 90_000  # the first frames through the relay (as the visit tests allow)
HOST_PASSWORD = "Vr-Meeting-Passw0rd"
ADMIN_CHOSEN = "Chosen-by-admin-1"  # what the admin gives a new account; its holder replaces it


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Any]:
    """One Playwright for the module (a second one at once is refused)."""
    with sync_playwright() as pw:
        yield pw


def _chromium(pw: Any, *extra_args: str) -> Iterator[Any]:
    """Debian's Chromium for the module's tests, with these arguments besides the usual."""
    browser = launch_chromium(pw, *extra_args)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def tone_browser(tmp_path_factory: pytest.TempPathFactory, playwright_driver: Any) -> Iterator[Any]:
    """Chromium whose fake microphone plays a steady tone (a speaker always audible)."""
    tone = tmp_path_factory.mktemp("tone") / "tone.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "48000",
            "-c",
            "1",
            "-b",
            "16",
            str(tone),
            "synth",
            str(TONE_SECONDS),
            "sine",
            "440",
            "vol",
            "0.5",
        ],
        check=True,
    )
    yield from _chromium(playwright_driver, f"--use-file-for-fake-audio-capture={tone}")


def _api(ctx: Any, url: str, username: str, password: str) -> dict[str, str]:
    r = ctx.request.post(
        url + "/api/v1/auth/login", data={"username": username, "password": password}
    )
    assert r.ok, r.text()
    return {"X-CSRF-Token": str(r.json()["csrf_token"])}


def _add_host(setup: Any, url: str, passwords: dict[str, str]) -> None:
    """The high court's judge who hosts the meetings (gy_judge), added by the admin unless
    an earlier test of the module (one server) did."""
    admin = _api(setup, url, "admin", passwords["admin"])
    courts = {c["code"]: c["id"] for c in setup.request.get(url + "/api/v1/courts").json()}
    host_user = {
        "username": "gy_judge",
        "display_name": "高院督办法官",
        "role": "judge",
        "court_id": courts["BJGY"],
        "password": ADMIN_CHOSEN,
    }
    r = setup.request.post(url + "/api/v1/users", data=host_user, headers=admin)
    assert r.status in (201, 409), r.text()
    setup.request.post(url + "/api/v1/auth/logout", headers=admin)
    if r.status == 201:
        _first_login(setup, url, "gy_judge", HOST_PASSWORD)


def _first_login(setup: Any, url: str, username: str, own: str) -> None:
    """A new account replaces the password the admin chose (:data:`ADMIN_CHOSEN`) with its
    own before it may do anything."""
    headers = _api(setup, url, username, ADMIN_CHOSEN)
    r = setup.request.post(
        url + "/api/v1/auth/password",
        data={"current_password": ADMIN_CHOSEN, "new_password": own},
        headers=headers,
    )
    assert r.ok, r.text()
    setup.request.post(url + "/api/v1/auth/logout", headers=headers)


def _log_in(page: Any, url: str, username: str, password: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/(judge|operator)$"))


FRAMES_FROM_OTHERS = """(n) => {
    const videos = [...document.querySelectorAll('#videos.gallery .tile.remote video')];
    return videos.length >= n && videos.every((v) => v.videoWidth > 0);
}"""


# the demo's staff of two courts below the high court: (court, person)
LOWER_COURT_STAFF = (
    ("北京市第一中级人民法院", "一中院接访法官"),
    ("北京市海淀区人民法院", "海淀法院操作员"),
)


def open_a_meeting_now(
    host: Any,
    url: str,
    numbers: list[str],
    invitees: tuple[tuple[str, str], ...] = LOWER_COURT_STAFF,
) -> str:
    """On the meetings page of the logged-in ``host``: a meeting about the cases ``numbers``
    with ``invitees`` from this 5-minute step on, 30 minutes, opened by the host (no lobby:
    in progress and recorded from then on). Returns its visit id."""
    host.goto(url + "/meetings")
    host.wait_for_selector("body[data-ready='1']")
    for count, number in enumerate(numbers, 1):
        host.fill("#case-number", number)
        host.click("#case-add")
        expect(host.locator("#case-list li")).to_have_count(count, timeout=WAIT_MS)
    for court, person in invitees:
        host.select_option("#invitee-court", label=court)
        host.wait_for_selector(f"#invitee-person option:has-text('{person}')", state="attached")
        host.select_option(
            "#invitee-person",
            label=next(
                o for o in host.locator("#invitee-person option").all_inner_texts() if person in o
            ),
        )
        host.click("#invitee-add")
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    start = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
    host.fill("#starts-at", start.strftime("%Y-%m-%dT%H:%M"))
    host.fill("#minutes", "30")
    host.click("#schedule-submit")
    expect(host.locator("#schedule-msg")).to_contain_text("已安排约谈", timeout=WAIT_MS)
    host.get_by_role("link", name="开始约谈").click()
    host.wait_for_selector("body[data-joined='1']")
    return str(host.url.rsplit("/", 1)[1])


def invitees_join(
    host: Any, judge: Any, operator: Any, url: str, passwords: dict[str, str], visit_id: str
) -> None:
    """The demo's 一中院 judge (``judge``, logged in) enters from the meetings page, the
    海淀 operator (``operator``) logs in and opens the call; everyone sees the two others'
    video in the gallery (real WebRTC through the relay)."""
    judge.goto(url + "/meetings")
    judge.get_by_role("link", name="进入约谈").click()
    judge.wait_for_selector("body[data-joined='1']")
    staff_in_call(operator, url, "operator", passwords["operator"], visit_id)
    for page in (host, judge, operator):
        page.wait_for_function(FRAMES_FROM_OTHERS, arg=2, timeout=MEDIA_MS)
        assert page.locator("body").get_attribute("data-kind") == "meeting"
        expect(page.locator("#lobby-card")).to_be_hidden()


@pytest.mark.browser
def test_a_high_court_meets_staff_of_two_lower_courts_in_a_recorded_gallery(
    live_server: LiveServer, tone_browser: Any, artifacts: Path
) -> None:
    url, passwords = live_server.url, live_server.passwords
    setup = tone_browser.new_context()
    _add_host(setup, url, passwords)
    # a second case of the same basic court (the first is the demo's)
    op = _api(setup, url, "operator", passwords["operator"])
    second = {
        "channel": "letter",
        "petitioners": [{"name": "李某", "id_type": "other", "id_number": "M-0002"}],
        "category": "enforcement",
        "summary": "申请执行长期未到位。",
        "original_numbers": ["（2025）京0108执200号"],
        "original_court": "北京市海淀区人民法院",
    }
    r = setup.request.post(url + "/api/v1/cases", data=second, headers=op)
    assert r.status == 201, r.text()
    numbers = sorted(["（2026）京0108信1号", r.json()["case"]["number"]])  # as documents list them
    setup.close()
    with sqlite3.connect(live_server.data_dir / "vreception.db") as db:  # triaged: being handled
        db.execute("UPDATE petitions SET state = 'handling', handler_court_id = court_id")

    contexts = [
        tone_browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
        for _ in range(3)
    ]
    host, judge, operator = (ctx.new_page() for ctx in contexts)
    try:
        # the high court's judge schedules it on the meetings page and opens it
        _log_in(host, url, "gy_judge", HOST_PASSWORD)
        visit_id = open_a_meeting_now(host, url, numbers)
        expect(host.locator("#rec-state")).to_contain_text("正在录音录像", timeout=WAIT_MS)
        # the invitees, each logged in at their own court
        _log_in(judge, url, "judge", passwords["judge"])
        invitees_join(host, judge, operator, url, passwords, visit_id)
        for page, label in (
            (host, "参会人员 一中院接访法官"),
            (host, "参会人员 海淀法院操作员"),
            (judge, "主持人 高院督办法官"),
            (operator, "主持人 高院督办法官"),
        ):
            tile = page.locator("#videos .tile.remote span", has_text=label)
            expect(tile.first).to_be_attached(timeout=WAIT_MS)
        # only the basic court's operator speaks: each page marks that tile
        host.click("#mute")
        judge.click("#mute")
        speaker = operator.evaluate("window.vrCall.me.participant_id")
        for page in (host, judge, operator):
            page.wait_for_function(
                """(pid) => {
                    const marked = [...document.querySelectorAll('.tile.speaking')];
                    return marked.length > 0 && marked.every((t) => t.dataset.participant === pid);
                }""",
                arg=speaker,
                timeout=WAIT_MS,
            )
        host.screenshot(path=str(artifacts / "meeting-gallery.png"))
        # the gallery's tiles are small: each gets the camera's half-size layer (the
        # camera sends 640x480), not the full picture its link would carry
        for page in (host, judge, operator):
            page.wait_for_function(
                """() => {
                    const tiles = [...document.querySelectorAll('#videos .tile.remote video')];
                    return tiles.length === 2 && tiles.every(
                        (v) => v.clientHeight <= 240 && v.videoHeight > 0 && v.videoHeight <= 240
                    );
                }""",
                timeout=WAIT_MS,
            )
        expect(host.locator("#outcome-title")).to_have_text("约谈结果")  # a meeting's words
        # the minutes: the host's notes; only the host has the notes and the end button
        expect(judge.locator("#notes-card")).to_be_hidden()
        expect(judge.locator("#end")).to_be_hidden()
        host.fill("#note-text", "海淀法院两周内书面反馈执行进展")
        host.click("#note-form button[type=submit]")
        expect(host.locator("#note-list")).to_contain_text(
            "海淀法院两周内书面反馈执行进展", timeout=WAIT_MS
        )
        host.click("#end")
        for page in (host, judge, operator):
            expect(page.locator("#ended-text")).to_have_text("约谈已结束", timeout=WAIT_MS)
    finally:
        for ctx in contexts:
            ctx.close()

    # recorded like a visit: every party's tracks, then processed and signed
    api = tone_browser.new_context()
    try:
        _api(api, url, "gy_judge", HOST_PASSWORD)

        def processed() -> bool:
            answer = api.request.get(url + f"/api/v1/visits/{visit_id}").json()
            assert answer["recording_state"] != "failed", answer["recording_note"]
            return bool(answer["recording_state"] == "ready")

        wait_until(processed, timeout=300, interval=0.5, what="meeting recording signed")
    finally:
        api.close()
    folder = live_server.data_dir / "recordings" / visit_id
    recording = load_state(folder)
    assert recording is not None
    recorded = {(t.role, t.name) for t in recording.tracks if t.packets}
    assert {
        ("host", "高院督办法官"),
        ("attendee", "一中院接访法官"),
        ("attendee", "海淀法院操作员"),
    } <= recorded, recorded
    for track in recording.tracks:
        for name in track.files:
            probe = subprocess.run(
                [*FFPROBE_CODEC, str(folder / name)], capture_output=True, text=True, check=True
            ).stdout.strip()
            assert probe == ("opus" if track.kind == "audio" else "vp8"), (name, probe)
    assert verify(folder).ok
    # the transcript names the cases and the staff who took part, no petitioner
    transcript = (folder / "transcript.txt").read_text()
    assert f"信访事项编号：{'、'.join(numbers)}" in transcript
    parties = next(line for line in transcript.splitlines() if line.startswith("参与人："))
    assert parties == (
        "参与人：主持人 高院督办法官；参会人员 一中院接访法官；参会人员 海淀法院操作员"
    ), parties
    # each case's timeline has the minutes, with the recording's link
    with sqlite3.connect(live_server.data_dir / "vreception.db") as db:
        rows = db.execute(
            "SELECT p.number, e.text, e.detail FROM case_events e "
            "JOIN petitions p ON p.id = e.petition_id WHERE e.kind = 'meeting'"
        ).fetchall()
    assert sorted(number for number, _, _ in rows) == numbers
    for _, text, detail in rows:
        assert "海淀法院两周内书面反馈执行进展" in text and "主持人：高院督办法官" in text
        assert json.loads(detail)["recording"] == f"/archive/visits/{visit_id}"


class CutSocket:
    """A page's socket.io connection passed through, cut once as a network would: at the
    server's answer to the page's first ``event`` (``answered``), or at the page's first
    ``event`` itself, which the server then never hears."""

    def __init__(self, event: str, answered: bool) -> None:
        self.event, self.answered = event, answered
        self.ack: str | None = None
        self.done = False

    def __call__(self, ws: Any) -> None:
        server = ws.connect_to_server()

        def cut() -> None:
            self.done = True
            ws.close()
            server.close()

        def from_page(message: Any) -> None:
            found = re.match(rf'^42/visit,(\d+)\["{self.event}"', str(message))
            if found and not self.done:
                if not self.answered:
                    return cut()
                self.ack = found.group(1)
            server.send(message)

        def from_server(message: Any) -> None:
            if not self.done and self.ack and str(message).startswith(f"43/visit,{self.ack}["):
                return cut()
            ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)


SOCKET_URL = re.compile(r".*/socket\.io/.*")


@pytest.mark.browser
def test_requests_cut_off_by_a_dropped_connection_neither_stall_the_page_nor_pass_for_done(
    live_server: LiveServer, tone_browser: Any
) -> None:
    """An invitee's connection drops while its page waits for the relay's subscription
    offer: it gets back in and sees the host (a request left waiting for good held up every
    later subscription). The host's connection drops as it ends the meeting: its page says
    the meeting was not ended and stays (it said 已结束 while the meeting and its recording
    went on); ended again once back, it ends for everyone."""
    url, passwords = live_server.url, live_server.passwords
    setup = tone_browser.new_context()
    _add_host(setup, url, passwords)
    setup.close()
    with sqlite3.connect(live_server.data_dir / "vreception.db") as db:  # triaged: being handled
        db.execute("UPDATE petitions SET state = 'handling', handler_court_id = court_id")
        (number,) = db.execute("SELECT number FROM petitions ORDER BY id").fetchone()

    contexts = [
        tone_browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
        for _ in range(2)
    ]
    host, invitee = (ctx.new_page() for ctx in contexts)
    at_subscribe, at_end = CutSocket("subscribe", answered=True), CutSocket("end", answered=False)
    try:
        host.route_web_socket(SOCKET_URL, at_end)
        _log_in(host, url, "gy_judge", HOST_PASSWORD)
        open_a_meeting_now(host, url, [number], invitees=LOWER_COURT_STAFF[:1])
        invitee.route_web_socket(SOCKET_URL, at_subscribe)
        _log_in(invitee, url, "judge", passwords["judge"])
        invitee.goto(url + "/meetings")
        invitee.get_by_role("link", name="进入约谈").click()
        invitee.wait_for_function(FRAMES_FROM_OTHERS, arg=1, timeout=MEDIA_MS)
        assert at_subscribe.done, "the connection was not cut while a subscription was asked"
        host.wait_for_function(FRAMES_FROM_OTHERS, arg=1, timeout=MEDIA_MS)

        host.click("#end")
        expect(host.locator("#call-msg")).to_contain_text("未能结束", timeout=WAIT_MS)
        assert at_end.done
        expect(host.locator("#ended-step")).to_be_hidden()
        expect(host.locator("#conn-state")).to_be_hidden(timeout=WAIT_MS)  # back in
        host.click("#end")
        for page in (host, invitee):
            expect(page.locator("#ended-text")).to_have_text("约谈已结束", timeout=WAIT_MS)
    finally:
        for ctx in contexts:
            ctx.close()


# eight staff of the courts below the high court: a full gallery's invitees
GALLERY_STAFF = tuple(
    (f"gallery_{i}", f"参会人员{i}", "BJ1Z" if i < 5 else "BJHD", "judge" if i < 5 else "operator")
    for i in range(1, 9)
)
GALLERY_PASSWORD = "Gallery-Passw0rd!"


@pytest.fixture(scope="module")
def small_camera_browser(
    tmp_path_factory: pytest.TempPathFactory, playwright_driver: Any
) -> Iterator[Any]:
    """Chromium whose fake camera is small (320x240, 10 fps): nine participants' browsers
    share this machine's cores, where each would have a machine of its own."""
    camera = tmp_path_factory.mktemp("camera") / "small.y4m"
    subprocess.run(
        [
            *("ffmpeg", "-loglevel", "error", "-f", "lavfi"),
            *("-i", "testsrc=size=320x240:rate=10", "-t", "3", "-pix_fmt", "yuv420p"),
            str(camera),
        ],
        check=True,
    )
    yield from _chromium(playwright_driver, f"--use-file-for-fake-video-capture={camera}")


@pytest.mark.browser
def test_a_full_gallery_holds_nine_each_seeing_the_eight_others(
    live_server: LiveServer, small_camera_browser: Any, artifacts: Path
) -> None:
    """The host and eight invited staff of two courts below, each in a browser of their
    own: the eight come first and wait for the host (its room holds nobody before), then
    enter by themselves once it is opened; every page shows the eight others' pictures,
    named."""
    url, passwords = live_server.url, live_server.passwords
    setup = small_camera_browser.new_context()
    _add_host(setup, url, passwords)
    admin = _api(setup, url, "admin", passwords["admin"])
    courts = {c["code"]: c["id"] for c in setup.request.get(url + "/api/v1/courts").json()}
    invited = []
    for username, name, court, role in GALLERY_STAFF:
        user = {
            "username": username,
            "display_name": name,
            "role": role,
            "court_id": courts[court],
            "password": ADMIN_CHOSEN,
        }
        r = setup.request.post(url + "/api/v1/users", data=user, headers=admin)
        assert r.status == 201, r.text()
        invited.append(r.json()["id"])
    setup.request.post(url + "/api/v1/auth/logout", headers=admin)
    for username, *_ in GALLERY_STAFF:
        _first_login(setup, url, username, GALLERY_PASSWORD)
    with sqlite3.connect(live_server.data_dir / "vreception.db") as db:  # triaged: being handled
        db.execute("UPDATE petitions SET state = 'handling', handler_court_id = court_id")
        (case_id,) = db.execute("SELECT id FROM petitions ORDER BY id").fetchone()
    host_headers = _api(setup, url, "gy_judge", HOST_PASSWORD)
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    start = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
    meeting = {
        "case_ids": [case_id],
        "invitee_ids": invited,
        "starts_at": start.isoformat(),
        "minutes": 30,
    }
    r = setup.request.post(url + "/api/v1/meetings", data=meeting, headers=host_headers)
    assert r.status == 201, r.text()
    visit_id = r.json()["id"]
    setup.close()

    contexts = [
        small_camera_browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
        for _ in range(9)
    ]
    pages = [ctx.new_page() for ctx in contexts]
    people = [("gy_judge", HOST_PASSWORD), *((s[0], GALLERY_PASSWORD) for s in GALLERY_STAFF)]
    try:
        # the eight come before the host: each waits, told so, until the host opens it
        for page, (username, password) in zip(pages[1:], people[1:], strict=True):
            staff_in_call(page, url, username, password, visit_id, joined="waiting")
        waiting = pages[1].locator("#enter-msg")
        expect(waiting).to_have_text("约谈尚未开始，主持人进入后将自动加入，请保持本页打开")
        expect(waiting).to_be_visible()
        expect(pages[1].locator("#enter-title")).to_have_text("等待主持人开启约谈")
        pages[1].screenshot(path=str(artifacts / "meeting-waiting-for-host.png"))
        staff_in_call(pages[0], url, *people[0], visit_id)
        for page in pages:
            page.wait_for_selector("body[data-joined='1']", timeout=MEDIA_MS)
        expect(pages[1].locator("#enter-step")).to_be_hidden()
        for page in pages:
            page.wait_for_function(FRAMES_FROM_OTHERS, arg=8, timeout=MEDIA_MS)
        names = pages[0].locator("#videos .tile.remote span").all_inner_texts()
        assert sorted(names) == sorted(f"参会人员 {s[1]}" for s in GALLERY_STAFF), names
        pages[0].screenshot(path=str(artifacts / "meeting-gallery-nine.png"))
    finally:
        for ctx in contexts:
            ctx.close()
