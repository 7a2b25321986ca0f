"""调休上班日: a weekend day a court works in place of a holiday opens its judges and rooms
with the hours of the weekday it stands for; removing the mark strands what was booked."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import delete, update

from config.db import create_engine, create_sessionmaker
from config.settings import Settings
from scheduler.models import ReceptionTemplate, RoomHours
from tests.conftest import MakeClient
from tests.helpers import Booking, local_time
from tests.test_booking import MONDAY, _client, _visit
from tests.test_stranded import _told

SATURDAY = MONDAY + timedelta(days=5)


async def _short_mondays(settings: Settings, booking: Booking, weekends_off: bool) -> None:
    """judge_a receives 09:00–11:00 on Mondays; ``weekends_off``: no reception on Saturdays
    and Sundays (the seed gives every day 08:00–20:00)."""
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            if weekends_off:
                await db.execute(delete(ReceptionTemplate).where(ReceptionTemplate.weekday >= 5))
                await db.execute(delete(RoomHours).where(RoomHours.weekday >= 5))
            await db.execute(
                update(ReceptionTemplate)
                .where(
                    ReceptionTemplate.judge_id == booking.world.users["judge_a"],
                    ReceptionTemplate.weekday == 0,
                )
                .values(start_minute=9 * 60, end_minute=11 * 60)
            )
    finally:
        await engine.dispose()


async def _mark(
    client: TestClient, headers: dict[str, str], court_id: int, **extra: Any
) -> tuple[int, Any]:
    body = {"court_id": court_id, "day": SATURDAY.isoformat(), "kind": "workday", "note": "调休"}
    r = await client.post("/api/v1/court-days", json={**body, **extra}, headers=headers)
    return r.status, await r.json()


async def test_a_workday_keeps_the_hours_of_the_weekday_it_stands_for(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    await _short_mondays(migrated, booking, weekends_off=True)
    w = booking.world
    op, h = await _client(make_client, "op_a")
    judge, jh = await _client(make_client, "judge_a")
    saturday_ten = _visit(booking, "a0", 10, starts_at=local_time(SATURDAY, 10).isoformat())
    r = await op.post("/api/v1/visits", json=saturday_ten, headers=h)
    assert r.status == 422 and (await r.json())["error"]["code"] == "room_closed"

    # refused: no weekday given, a weekday marked, a weekend weekday to follow
    status, body = await _mark(judge, jh, w.courts["mid_a"])
    assert status == 422 and body["error"]["code"] == "as_weekday_required"
    status, body = await _mark(
        judge, jh, w.courts["mid_a"], as_weekday=0, day=(SATURDAY - timedelta(days=1)).isoformat()
    )
    assert status == 422 and body["error"]["code"] == "not_a_weekend"
    status, body = await _mark(judge, jh, w.courts["mid_a"], as_weekday=6)
    assert status == 422 and body["error"]["code"] == "invalid_weekday"
    status, body = await _mark(judge, jh, w.courts["mid_a"], as_weekday=0, kind="holiday")
    assert status == 422 and body["error"]["code"] == "as_weekday_not_allowed"

    status, body = await _mark(judge, jh, w.courts["mid_a"], as_weekday=0)
    assert status == 201 and body["as_weekday"] == 0, body
    # the judge's court works; the room's (the basic court) does not yet
    r = await op.post("/api/v1/visits", json=saturday_ten, headers=h)
    assert r.status == 422 and (await r.json())["error"]["code"] == "room_closed"
    status, room_day = await _mark(op, h, w.courts["basic_a"], as_weekday=0)
    assert status == 201, room_day
    params: dict[str, Any] = {
        "room_id": w.rooms["basic_a"],
        "receiving_court_id": w.courts["mid_a"],
        "first": SATURDAY.isoformat(),
        "days": 1,
        "limit": 20,
    }
    slots = await (await op.get("/api/v1/free-slots", params=params)).json()
    starts = sorted(
        {
            datetime.fromisoformat(s["starts_at"])
            for s in slots
            if s["judge_id"] == w.users["judge_a"]
        }
    )
    # Monday's 09:00–11:00, in 30-minute slots
    assert starts == [local_time(SATURDAY, 9, m) for m in (0, 30)] + [
        local_time(SATURDAY, 10, m) for m in (0, 30)
    ], starts
    late = _visit(booking, "a1", 14, starts_at=local_time(SATURDAY, 14).isoformat())
    r = await op.post("/api/v1/visits", json=late, headers=h)  # Monday's hours end at 11
    assert r.status == 422 and (await r.json())["error"]["code"] == "outside_reception_hours"
    r = await op.post("/api/v1/visits", json=saturday_ten, headers=h)
    assert r.status == 201, await r.text()
    visit = await r.json()

    listed = await (
        await judge.get("/api/v1/court-days", params={"court_id": w.courts["mid_a"]})
    ).json()
    (mark,) = [d for d in listed if d["day"] == SATURDAY.isoformat()]
    assert mark["kind"] == "workday" and mark["as_weekday"] == 0
    gone = await judge.delete(f"/api/v1/court-days/{mark['id']}", headers=jh)
    body = await gone.json()
    assert gone.status == 200 and body["stranded_visits"] == [visit["id"]], body
    (notice,) = await _told(op, visit["id"])
    assert "调休上班日" in notice["body"]
    admin, _ = await _client(make_client, "admin")
    trail = await (
        await admin.get("/api/v1/audit", params={"action": "calendar.court_day_add"})
    ).json()
    assert any(
        "标记为调休上班日（按星期一的时间安排接访）" in a["sentence"] for a in trail["items"]
    )


async def test_a_workday_marked_or_removed_tells_only_the_visits_it_leaves_out_of_hours(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    """The weekday's hours replace the Saturday's own: a visit they do not cover is told
    when the mark is added; on removal a visit the Saturday's own hours still cover is not
    told (the seed gives Saturdays 08:00–20:00)."""
    await _short_mondays(migrated, booking, weekends_off=False)
    w = booking.world
    op, h = await _client(make_client, "op_a")
    judge, jh = await _client(make_client, "judge_a")
    booked = {}
    for petition, hour in (("a0", 10), ("a1", 14)):
        body = _visit(booking, petition, hour, starts_at=local_time(SATURDAY, hour).isoformat())
        r = await op.post("/api/v1/visits", json=body, headers=h)
        assert r.status == 201, await r.text()
        booked[hour] = (await r.json())["id"]
    status, mark = await _mark(judge, jh, w.courts["mid_a"], as_weekday=0)
    assert status == 201 and mark["stranded_visits"] == [booked[14]], mark
    (notice,) = await _told(op, booked[14])
    assert "调休上班日，按星期一安排" in notice["body"]
    assert await _told(op, booked[10]) == []
    gone = await judge.delete(f"/api/v1/court-days/{mark['id']}", headers=jh)
    assert (await gone.json())["stranded_visits"] == []  # Saturday's own hours cover both
    admin, _ = await _client(make_client, "admin")
    trail = await (
        await admin.get("/api/v1/audit", params={"action": "calendar.court_day_delete"})
    ).json()
    assert any("日历标记（调休上班日）" in a["sentence"] for a in trail["items"]), trail
