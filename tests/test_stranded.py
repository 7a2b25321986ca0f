"""A holiday marked, or a judge's hours cancelled, after visits were booked then: the
visits stay, their judges and booking courts are told to move them, and the page says so."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import MakeClient
from tests.helpers import Booking, local_time
from tests.test_booking import MONDAY, _client, _visit


async def _told(client: TestClient, visit_id: str) -> list[dict[str, Any]]:
    listed = await (await client.get("/api/v1/notifications")).json()
    return [
        n
        for n in listed["items"]
        if n["kind"] == "visit_needs_reschedule" and n["visit_id"] == visit_id
    ]


async def test_a_holiday_on_a_booked_day_tells_the_judge_and_the_booking_court(
    make_client: MakeClient, booking: Booking
) -> None:
    op, h = await _client(make_client, "op_a")
    judge, jh = await _client(make_client, "judge_a")
    visit = await (
        await op.post("/api/v1/visits", json=_visit(booking, "a0", 10), headers=h)
    ).json()
    other_day = await judge.post(
        "/api/v1/court-days",
        json={"court_id": booking.world.courts["mid_a"], "day": str(MONDAY + timedelta(days=1)),
              "kind": "holiday", "note": ""},
        headers=jh,
    )  # fmt: skip
    assert other_day.status == 201 and (await other_day.json())["stranded_visits"] == []
    r = await judge.post(
        "/api/v1/court-days",
        json={"court_id": booking.world.courts["mid_a"], "day": str(MONDAY),
              "kind": "holiday", "note": "调休"},
        headers=jh,
    )  # fmt: skip
    body = await r.json()
    assert r.status == 201 and body["stranded_visits"] == [visit["id"]], body
    (notice,) = await _told(op, visit["id"])
    assert notice["title"] == "接访需改期：A-0" and "休息日" in notice["body"]
    assert await _told(judge, visit["id"]) == []  # who made the change is not told
    state = await (await op.get(f"/api/v1/visits/{visit['id']}")).json()
    assert state["state"] == "scheduled"  # nothing of the booking is lost


async def test_cancelled_hours_over_a_booked_visit_tell_its_booking_court(
    make_client: MakeClient, booking: Booking
) -> None:
    op, h = await _client(make_client, "op_a")
    judge, jh = await _client(make_client, "judge_a")
    visit = await (
        await op.post("/api/v1/visits", json=_visit(booking, "a0", 10), headers=h)
    ).json()
    r = await judge.post(
        "/api/v1/availability-exceptions",
        json={"judge_id": booking.world.users["judge_a"], "kind": "cancellation",
              "starts_at": local_time(MONDAY, 9).isoformat(),
              "ends_at": local_time(MONDAY, 12).isoformat(), "note": "开庭"},
        headers=jh,
    )  # fmt: skip
    body = await r.json()
    assert r.status == 201 and body["stranded_visits"] == [visit["id"]], body
    (notice,) = await _told(op, visit["id"])
    assert "法官取消了" in notice["body"]
