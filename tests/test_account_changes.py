"""An account changed while its holder has visits to receive: moved or given another role
only once they are handed on; stopped at once, their visits' bookers told; the calendar
URLs made for or by them stop working."""

from __future__ import annotations

from typing import Any

from tests.conftest import MakeClient
from tests.helpers import Booking
from tests.test_booking import _client, _visit


async def _feed(make_client: MakeClient, booking: Booking) -> str:
    judge, jh = await _client(make_client, "judge_a")
    r = await judge.post(
        "/api/v1/calendar-feeds",
        headers=jh,
        json={"kind": "judge", "owner_id": booking.world.users["judge_a"]},
    )
    assert r.status == 201
    return "/" + (await r.json())["url"].split("//", 1)[1].split("/", 1)[1]


async def test_a_judge_with_visits_to_receive_is_moved_only_once_they_are_handed_on(
    make_client: MakeClient, booking: Booking
) -> None:
    """Moved, the judge would keep the visit (its judge by account) while the judges of
    the court it is booked with could not receive it."""
    op, h = await _client(make_client, "op_a")
    admin, ah = await _client(make_client, "admin")
    visit = await (
        await op.post("/api/v1/visits", json=_visit(booking, "a0", 10), headers=h)
    ).json()
    feed = await _feed(make_client, booking)
    judge_id, mid_b = booking.world.users["judge_a"], booking.world.courts["mid_b"]
    r = await admin.patch(f"/api/v1/users/{judge_id}", json={"court_id": mid_b}, headers=ah)
    body: dict[str, Any] = await r.json()
    assert r.status == 409 and body["error"]["code"] == "open_visits", body
    assert "1 个未结束的接访" in body["error"]["message"]
    cancel = {"reason": "法官调离"}
    assert (await op.post(f"/api/v1/visits/{visit['id']}/cancel", json=cancel, headers=h)).ok
    r = await admin.patch(f"/api/v1/users/{judge_id}", json={"court_id": mid_b}, headers=ah)
    assert r.status == 200, await r.text()
    anonymous = await make_client()
    assert (await anonymous.get(feed)).status == 404  # the old calendar URL stops


async def test_a_judge_stopped_at_once_leaves_their_visits_bookers_told(
    make_client: MakeClient, booking: Booking
) -> None:
    op, h = await _client(make_client, "op_a")
    admin, ah = await _client(make_client, "admin")
    visit = await (
        await op.post("/api/v1/visits", json=_visit(booking, "a0", 10), headers=h)
    ).json()
    judge_id = booking.world.users["judge_a"]
    r = await admin.patch(f"/api/v1/users/{judge_id}", json={"active": False}, headers=ah)
    assert r.status == 200, await r.text()
    listed = await (await op.get("/api/v1/notifications")).json()
    told = [n for n in listed["items"] if n["kind"] == "visit_needs_reschedule"]
    assert [n["visit_id"] for n in told] == [visit["id"]]
    assert told[0]["title"] == "接访需改派：A-0" and "已停用" in told[0]["body"]
