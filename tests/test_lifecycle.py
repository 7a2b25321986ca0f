"""The visit lifecycle (scheduler/lifecycle.py): the one judge rule and every action as a
table; the vocabulary served to the pages; a judge who leaves is announced at once and a
call left without its judge ends as ``abandoned`` (live, and after a restart); admission
into a closed visit records nothing; open visits are ended from the lists on a later day."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from config import vocabulary
from config.audit import AuditEvent
from config.db import Database, utcnow
from config.settings import Settings
from config.vocabulary import EndReason
from recorder.models import Recording, RecordingState
from recorder.state import CLOSED_STATES, load_state
from scheduler import booking as bk
from scheduler import lifecycle
from scheduler.cases.words import Node, VisitKind
from scheduler.lifecycle import Action, may
from scheduler.models import (
    Notification,
    Role,
    Visit,
    VisitEvent,
    VisitState,
)
from scheduler.scope import SYSTEM_ACTOR, Actor
from tests.conftest import MakeClient
from tests.helpers import Booking, World, local_time, login, next_weekday, wait_for
from tests.visits import Peer, _cookie, admitted_call
from web.keys import GATEWAY, VISITS

JUDGE, OTHER_JUDGE, FAR_JUDGE = 11, 12, 13
OPERATOR, FAR_OPERATOR, ARCHIVIST, ADMIN = 21, 22, 31, 41
LEADER, OTHER_LEADER, FAR_LEADER = 51, 52, 53
BOOKING_COURT, RECEIVING_COURT, OTHER_COURT = 1, 2, 3

ACTORS = {
    "assigned judge": Actor(JUDGE, "j", Role.judge, RECEIVING_COURT),
    "other judge, same court": Actor(OTHER_JUDGE, "j2", Role.judge, RECEIVING_COURT),
    "judge of another court": Actor(FAR_JUDGE, "j3", Role.judge, OTHER_COURT),
    "assigned leader": Actor(LEADER, "l", Role.leader, RECEIVING_COURT),
    "other leader, same court": Actor(OTHER_LEADER, "l2", Role.leader, RECEIVING_COURT),
    "leader of another court": Actor(FAR_LEADER, "l3", Role.leader, OTHER_COURT),
    "operator, booking court": Actor(OPERATOR, "o", Role.operator, BOOKING_COURT),
    "operator, other court": Actor(FAR_OPERATOR, "o2", Role.operator, OTHER_COURT),
    "archivist": Actor(ARCHIVIST, "a", Role.archivist, RECEIVING_COURT),
    "admin": Actor(ADMIN, "ad", Role.admin, None),
    "system": SYSTEM_ACTOR,
}
RECEIVES = "enter admit end cancel outcome"
STAFF = {  # the same whatever the kind
    "operator, booking court": "enter end cancel manage",
    "operator, other court": "",
    "archivist": "",
    "admin": "end cancel manage watch",  # no court is above this visit here: only an
    "system": "end cancel manage",  # admin watches (tests/test_monitor.py)
}
# (actor, receiver assigned?, kind) → the actions allowed (enter, admit, end, cancel, manage,
# outcome, watch). The receiver's role follows the kind: a court leader receives a 领导接访 (kind
# leader), a judge every other kind — never the other way round.
TABLE: dict[tuple[str, bool, str], str] = {
    **{
        (who, assigned, kind): allowed
        for who, allowed in STAFF.items()
        for assigned in (True, False)
        for kind in ("reception", "post_judgment", "leader")
    },
    # a judge's visit (reception; post_judgment the same), the judge assigned
    ("assigned judge", True, "reception"): RECEIVES,
    ("other judge, same court", True, "reception"): "",
    ("judge of another court", True, "reception"): "",
    ("assigned leader", True, "reception"): "",  # a leader is no judge of a judge's visit
    ("other leader, same court", True, "reception"): "",
    ("leader of another court", True, "reception"): "",
    ("assigned judge", True, "post_judgment"): RECEIVES,
    ("other judge, same court", True, "post_judgment"): "",
    ("judge of another court", True, "post_judgment"): "",
    ("assigned leader", True, "post_judgment"): "",
    ("other leader, same court", True, "post_judgment"): "",
    ("leader of another court", True, "post_judgment"): "",
    # no judge assigned: any judge of the receiving court receives
    ("assigned judge", False, "reception"): RECEIVES,
    ("other judge, same court", False, "reception"): RECEIVES,
    ("judge of another court", False, "reception"): "",
    ("assigned leader", False, "reception"): "",
    ("other leader, same court", False, "reception"): "",
    ("leader of another court", False, "reception"): "",
    ("assigned judge", False, "post_judgment"): RECEIVES,
    ("other judge, same court", False, "post_judgment"): RECEIVES,
    ("judge of another court", False, "post_judgment"): "",
    ("assigned leader", False, "post_judgment"): "",
    ("other leader, same court", False, "post_judgment"): "",
    ("leader of another court", False, "post_judgment"): "",
    # 领导接访, the leader assigned: the leader receives, no judge does
    ("assigned leader", True, "leader"): RECEIVES,
    ("other leader, same court", True, "leader"): "",
    ("leader of another court", True, "leader"): "",
    ("assigned judge", True, "leader"): "",
    ("other judge, same court", True, "leader"): "",
    ("judge of another court", True, "leader"): "",
    # 领导接访 with no leader assigned: any leader of the receiving court, still no judge
    ("assigned leader", False, "leader"): RECEIVES,
    ("other leader, same court", False, "leader"): RECEIVES,
    ("leader of another court", False, "leader"): "",
    ("assigned judge", False, "leader"): "",
    ("other judge, same court", False, "leader"): "",
    ("judge of another court", False, "leader"): "",
}


def test_the_table_names_every_actor_kind_and_assignment() -> None:
    kinds = {k.value for k in lifecycle.BOOKABLE_KINDS}
    assert set(TABLE) == {(w, a, k) for w in ACTORS for a in (True, False) for k in kinds}


@pytest.mark.parametrize(("who", "assigned", "kind"), sorted(TABLE))
def test_the_one_judge_rule_and_every_action_as_a_table(
    who: str, assigned: bool, kind: str
) -> None:
    receiver = LEADER if kind == "leader" else JUDGE
    visit = Visit(
        id="0" * 32,
        petition_id=1,
        court_id=BOOKING_COURT,
        receiving_court_id=RECEIVING_COURT,
        judge_id=receiver if assigned else None,
        state=VisitState.in_progress,
        kind=VisitKind(kind),
    )
    actor = ACTORS[who]
    allowed = {a.value for a in Action if may(actor, a, visit)}
    assert allowed == set(TABLE[who, assigned, kind].split()), (who, assigned, kind)
    expected_role = (
        None
        if "enter" not in allowed
        else ("judge" if actor.role in lifecycle.RECEIVING_ROLES else "operator")
    )
    role = lifecycle.room_role(actor, visit)
    assert (role.value if role else None) == expected_role


def test_every_state_has_its_moves_and_ending_is_possible_only_once_started() -> None:
    assert set(lifecycle.ALLOWED) == set(VisitState)
    assert {
        VisitState.checked_in,
        VisitState.in_lobby,
        VisitState.in_progress,
    } == lifecycle.ENDABLE
    assert set(lifecycle.OPEN) >= set(lifecycle.LIVE)
    reception = Visit(kind=VisitKind.reception, state=VisitState.in_lobby)
    assert lifecycle.starts_recording(vocabulary.ParticipantRole.petitioner, reception)
    assert not lifecycle.starts_recording(vocabulary.ParticipantRole.lawyer, reception)
    assert not lifecycle.starts_recording(vocabulary.ParticipantRole.operator, reception)
    # a join that was under way when the visit ended records nothing more
    for over in (VisitState.ended, VisitState.cancelled, VisitState.no_show):
        ended = Visit(kind=VisitKind.reception, state=over)
        assert not lifecycle.starts_recording(vocabulary.ParticipantRole.petitioner, ended)
        onsite = Visit(kind=VisitKind.onsite, state=over)
        assert not lifecycle.starts_recording(vocabulary.ParticipantRole.operator, onsite)


async def test_the_vocabulary_is_served_and_no_page_keeps_its_own_labels(
    make_client: MakeClient,
) -> None:
    words = vocabulary.as_json()
    for kind in ("role", "visit_state", "participant_role", "close_reason", "end_reason"):
        assert kind in words
    assert words["visit_state"]["in_progress"] == "接访中"
    assert words["participant_role"]["judge"] == words["role"]["judge"] == "接访法官"
    assert set(words["visit_state"]) == {s.value for s in VisitState}
    client = await make_client()
    served = await client.get("/vocabulary.js")
    assert served.status == 200 and "javascript" in served.headers["Content-Type"]
    text = await served.text()
    assert "window.VOCABULARY" in text and "法官离开超时" in text
    # the pages list each kind's words in the order they are defined (the workflow's, 其他
    # last), not by their codes: 分流 before 办结, 居民身份证 first
    served_words = json.loads(text.split("Object.freeze(", 1)[1].rsplit(");", 1)[0])
    assert list(served_words["case_node"]) == [n.value for n in Node]
    assert next(iter(served_words["case_node"])) == "triage"
    assert list(served_words["case_category"])[-1] == "other"
    assert next(iter(served_words["id_type"])) == "resident_id"
    static = pathlib.Path(__file__).parent.parent / "web" / "static"
    for script in static.glob("*.js"):
        source = script.read_text()
        for kind, labels in words.items():
            for value, label in labels.items():
                assert f'"{label}"' not in source, f"{script.name} keeps {kind}.{value}"
    for page in (static.parent / "templates").glob("*.html"):
        html = page.read_text()
        if "<script" in html:
            assert '<script src="/vocabulary.js"></script>' in html, page.name


async def test_a_judge_who_leaves_is_announced_and_the_call_ends_as_abandoned(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    staff, judge, guest, _ = await admitted_call(make_client, visit)
    app = staff.server.app
    await judge.close()  # the judge closes the tab
    left = await guest.next("participant_left")
    assert left["role"] == "judge" and left["reason"] == "disconnected"

    gateway = app[GATEWAY]
    limit = timedelta(minutes=migrated.visit_abandon_minutes)
    # an injected "now": not yet past the limit, then past it (no waiting)
    assert await gateway.reap_abandoned(utcnow() + limit - timedelta(minutes=1)) == []
    assert await gateway.reap_abandoned(utcnow() + limit + timedelta(seconds=1)) == [visit["id"]]
    told = await guest.next("ended")
    assert told == {"visit_id": visit["id"], "reason": "abandoned"}

    db = Database(migrated)
    try:
        async with db.reader() as s:
            v = await s.get(Visit, visit["id"])
            assert v is not None and v.state is VisitState.ended
            ended = (
                await s.scalars(
                    select(VisitEvent).where(
                        VisitEvent.visit_id == v.id, VisitEvent.to_state == "ended"
                    )
                )
            ).one()
            assert ended.detail["reason"] == EndReason.abandoned.value
            audit = (
                await s.scalars(
                    select(AuditEvent).where(
                        AuditEvent.target_id == v.id, AuditEvent.action == "visit.ended"
                    )
                )
            ).one()
            assert audit.actor_type == "system" and audit.detail["reason"] == "abandoned"
            told = set(
                (
                    await s.scalars(
                        select(Notification.user_id).where(
                            Notification.visit_id == v.id, Notification.kind == "visit_abandoned"
                        )
                    )
                ).all()
            )
            assert v.judge_id in told and len(told) >= 2  # the judge and the operators

        async def signed_as_empty() -> bool:  # nobody published media in this call
            async with db.reader() as s:
                row = await s.get(Recording, visit["id"])
                return row is not None and row.state is RecordingState.empty

        await wait_for(signed_as_empty, within=120)
        assert (migrated.resolved_recordings_dir / visit["id"] / "SHA256SUMS.sig").exists()
    finally:
        await db.dispose()
    assert await gateway.reap_abandoned(utcnow() + 2 * limit) == []  # ends once
    await guest.close()


async def test_a_room_whose_visit_ended_on_another_node_closes_and_its_recording_stops(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    """The visit is ended where its room is not held (another node's API or call: it can
    only tell the pages). This node closes its room within ENDED_ROOMS_CHECK_S: its pages are
    told, and the recording's files are closed before that node's pipeline finalizes and
    signs them, so nothing writes into a signed recording afterwards."""
    staff, judge, guest, _ = await admitted_call(make_client, visit)
    app = staff.server.app
    namespace = app[VISITS]
    folder = migrated.resolved_recordings_dir / visit["id"]

    async def recording() -> bool:
        state = load_state(folder)
        return state is not None and state.state is RecordingState.recording

    await wait_for(recording, within=10)
    assert await namespace.close_ended_rooms() == []  # the visit is still open
    db = Database(migrated)
    try:
        async with db.writer() as s:  # ended by the other node
            v = await s.get(Visit, visit["id"])
            assert v is not None
            v.state = VisitState.ended
    finally:
        await db.dispose()
    assert await namespace.close_ended_rooms() == [visit["id"]]
    assert (await guest.next("ended"))["visit_id"] == visit["id"]
    assert visit["id"] not in app[VISITS].rooms

    async def files_closed() -> bool:
        state = load_state(folder)
        return state is not None and state.state in CLOSED_STATES

    await wait_for(files_closed, within=10)
    assert await namespace.close_ended_rooms() == []
    for peer in (guest, judge):
        await peer.close()


async def test_a_call_whose_room_closed_is_recorded_again_from_whoever_comes_back(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    """The node stopped mid-visit (its room closed, the recording's files closed); the
    judge is back first: the visit is in progress, so its record resumes with the judge,
    not only once the petitioner, who began it, comes back."""
    staff, judge, guest, _ = await admitted_call(make_client, visit)
    namespace = staff.server.app[VISITS]
    folder = migrated.resolved_recordings_dir / visit["id"]

    def state_is(*states: RecordingState) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            state = load_state(folder)
            return state is not None and state.state in states

        return check

    await wait_for(state_is(RecordingState.recording), within=10)
    await namespace.shutdown()
    await wait_for(state_is(*CLOSED_STATES), within=10)
    await guest.close()
    judge.sio.on("recording_state", judge._recorder("recording_state"), namespace="/visit")
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    assert (await judge.next("recording_state"))["recording"] is True
    await wait_for(state_is(RecordingState.recording), within=10)
    await namespace.close_visit(visit["id"])
    await judge.close()


async def test_after_a_restart_a_visit_in_progress_nobody_holds_ends_as_abandoned(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    """The server restarted mid-visit: no room on any node, the visit still in progress."""
    db = Database(migrated)
    try:
        async with db.writer() as s:
            v = await s.get(Visit, visit["id"])
            assert v is not None and v.judge_id is not None
            judge = Actor(v.judge_id, "judge_a", Role.judge, v.receiving_court_id)
            await lifecycle.admit_petitioner(s, judge, v)
        client = await make_client()
        gateway = client.server.app[GATEWAY]
        limit = timedelta(minutes=migrated.visit_abandon_minutes)
        assert await gateway.reap_abandoned(utcnow() + limit / 2) == []
        assert await gateway.reap_abandoned(utcnow() + limit + timedelta(minutes=1)) == [v.id]
        async with db.reader() as s:
            again = await s.get(Visit, visit["id"])
            assert again is not None and again.state is VisitState.ended
    finally:
        await db.dispose()


async def test_a_call_with_its_judge_present_is_never_reaped(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    staff, judge, guest, _ = await admitted_call(make_client, visit)
    gateway = staff.server.app[GATEWAY]
    assert await gateway.reap_abandoned(utcnow() + timedelta(days=1)) == []
    for peer in (guest, judge):
        await peer.close()


async def test_admitting_into_a_cancelled_visit_is_refused_and_nothing_is_recorded(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    staff = await make_client()
    await login(staff, "judge_a")
    judge = await Peer().connect(staff, _cookie(staff))
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    guest = await Peer().connect(staff)
    ans = await guest.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
    )
    operator = await make_client()
    csrf = await login(operator, "op_a")
    r = await operator.post(
        f"/api/v1/visits/{visit['id']}/cancel",
        json={"reason": "信访人要求改日"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status == 200, await r.text()
    refused = await judge.call("admit", {"participant_id": ans["participant_id"]})
    assert refused["error"]["code"] == "visit_closed", refused
    db = Database(migrated)
    try:
        async with db.reader() as s:
            assert await s.get(Recording, visit["id"]) is None
            v = await s.get(Visit, visit["id"])
            assert v is not None and v.state is VisitState.cancelled
    finally:
        await db.dispose()
    assert not (migrated.resolved_recordings_dir / visit["id"]).exists()
    for peer in (guest, judge):
        await peer.close()


async def test_open_visits_of_earlier_days_are_listed_and_ended_by_who_may(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    """A visit checked in yesterday and never held: the lists offer to end it today, to its
    judge and the booking court's operator only; ending it needs no call."""
    w = booking.world
    operator = Actor(w.users["op_a"], "op_a", Role.operator, w.courts["basic_a"])
    start = local_time(next_weekday(0), 10)
    db = Database(migrated)
    try:
        async with db.writer() as s:
            v = await bk.book_visit(
                s,
                operator,
                migrated,
                petition_id=booking.petitions["a0"],
                receiving_court_id=w.courts["mid_a"],
                judge_id=w.users["judge_a"],
                room_id=w.rooms["basic_a"],
                starts_at=start,
                now=start - timedelta(days=1),
            )
            await lifecycle.check_in(
                s, operator, v.id, document_type="other", document_number="X1234567"
            )
            # as if it had started on an earlier day
            earlier = utcnow().replace(microsecond=0) - timedelta(days=2)
            v.starts_at, v.ends_at = earlier, earlier + timedelta(minutes=30)
        visit_id = v.id
    finally:
        await db.dispose()

    judge = await make_client()
    judge_csrf = await login(judge, "judge_a")
    got = await judge.get("/api/v1/visits?earlier_open=true")
    listed = await got.json()
    assert got.status == 200, listed
    mine = [x for x in listed if x["id"] == visit_id]
    assert mine and mine[0]["can_end"] and mine[0]["state"] == "checked_in"

    stranger = await make_client()
    stranger_csrf = await login(stranger, "op_b")
    refused = await stranger.post(
        f"/api/v1/visits/{visit_id}/state",
        json={"state": "ended"},
        headers={"X-CSRF-Token": stranger_csrf},
    )
    assert refused.status == 404  # another court's visit is not even visible

    ended = await judge.post(
        f"/api/v1/visits/{visit_id}/state",
        json={"state": "ended"},
        headers={"X-CSRF-Token": judge_csrf},
    )
    assert ended.status == 200, await ended.text()
    body = await ended.json()
    assert body["state"] == "ended" and not body["can_end"]
    reasons = [h["detail"].get("reason") for h in body["history"] if h["to_state"] == "ended"]
    assert reasons == [EndReason.not_admitted.value]
    assert visit_id not in {
        x["id"] for x in await (await judge.get("/api/v1/visits?earlier_open=true")).json()
    }


async def test_a_judge_whose_visit_was_given_to_another_leaves_its_room_at_the_next_check(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings, world: World
) -> None:
    """Rescheduled to judge_b while judge_a waits in the room (the API may be another
    node's): judge_a would go on seeing the lobby and, once judge_b admits the petitioner,
    the whole call. The node's periodic check takes them out; the visit goes on."""
    staff = await make_client()
    await login(staff, "judge_a")
    judge = await Peer().connect(staff, _cookie(staff))
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    namespace = staff.server.app[VISITS]
    db = Database(migrated)
    try:
        async with db.writer() as s:
            v = await s.get(Visit, visit["id"])
            assert v is not None
            v.judge_id = world.users["judge_b"]
    finally:
        await db.dispose()
    assert await namespace.close_ended_rooms() == []  # the visit is open: not closed
    refusal = await judge.next("error")
    assert refusal["code"] == "not_entitled", refusal
    room = namespace.rooms.get(visit["id"])
    assert room is None or not room.participants
    other = await make_client()
    await login(other, "judge_b")
    judge_b = await Peer().connect(other, _cookie(other))
    assert (await judge_b.call("join", {"v": 1, "visit_id": visit["id"]}))["role"] == "judge"
    for peer in (judge, judge_b):
        await peer.close()
