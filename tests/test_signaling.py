"""The /visit signaling namespace with real socket.io clients against the real app:
lobby, admit/refuse, codes (wrong, used, expired, other visit), entitlement, invitations,
rejoin, end, malformed messages (hypothesis) and floods."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.db import Database
from config.settings import Settings
from scheduler.models import Visit, VisitState
from signaling.protocol import ErrorCode, ProtocolError, View, parse
from tests.conftest import MakeClient
from tests.helpers import login
from tests.visits import Peer, _cookie
from web.keys import VISITS


async def _state(settings: Settings, visit_id: str) -> VisitState:
    db = Database(settings)
    try:
        async with db.reader() as s:
            v = await s.get(Visit, visit_id)
            assert v is not None
            return v.state
    finally:
        await db.dispose()


async def test_lobby_admit_invite_refuse_rejoin_end(
    make_client: MakeClient,
    visit: dict[str, Any],
    migrated: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    staff = await make_client()
    await login(staff, "judge_a")
    judge = await Peer().connect(staff, _cookie(staff))
    joined = await judge.call("join", {"v": 1, "visit_id": visit["id"]})
    assert joined["ok"] and joined["role"] == "judge" and joined["admitted"]
    assert joined["lobby"] == []

    petitioner = await Peer().connect(staff)  # no cookie: a guest
    ans = await petitioner.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
    )
    assert ans["ok"] and ans["role"] == "petitioner" and not ans["admitted"]
    assert ans["participants"] == [] and ans["rejoin"]
    lobby = await judge.next("lobby")
    assert [p["participant_id"] for p in lobby["waiting"]] == [ans["participant_id"]]
    assert lobby["waiting"][0]["name"] == "信访人a0"
    assert await _state(migrated, visit["id"]) is VisitState.in_lobby

    # only the judge admits
    refused = await petitioner.call("admit", {"participant_id": ans["participant_id"]})
    assert refused["error"]["code"] == "forbidden"
    ok = await judge.call("admit", {"participant_id": ans["participant_id"]})
    assert ok["ok"]
    admitted = await petitioner.next("admitted")
    assert {p["role"] for p in admitted["participants"]} == {"judge", "petitioner"}
    assert (await judge.next("participant_joined"))["role"] == "petitioner"
    assert await _state(migrated, visit["id"]) is VisitState.in_progress

    # the judge invites a lawyer, who waits in the lobby and is refused
    invitation = await judge.call("invite", {"role": "lawyer", "label": "值班律师张某"})
    assert invitation["ok"] and len(invitation["code"]) >= 8
    lawyer = await Peer().connect(staff)
    lj = await lawyer.call("join", {"v": 1, "visit_id": visit["id"], "code": invitation["code"]})
    assert lj["role"] == "lawyer" and not lj["admitted"]
    waiting = await judge.next("lobby")
    while not waiting["waiting"]:
        waiting = await judge.next("lobby")
    assert waiting["waiting"][0]["name"] == "值班律师张某"
    assert (
        await judge.call("refuse", {"participant_id": lj["participant_id"], "reason": "与本案无关"})
    )["ok"]
    assert (await lawyer.next("refused"))["reason"] == "与本案无关"
    await lawyer.close()

    # mute state reaches the others
    assert (await petitioner.call("media_state", {"audio": False, "video": True}))["ok"]
    muted = await judge.next("media_state")
    assert muted["audio"] is False and muted["participant_id"] == ans["participant_id"]

    # a dropped petitioner rejoins with the token: same identity, new id, straight in
    with caplog.at_level("INFO", logger="vreception.signaling"):
        await petitioner.close()
        left = await judge.next("participant_left")
    assert left["reason"] == "disconnected"
    # the log says why the connection ended (here its socket was closed, as when a tab is;
    # a starved or unreachable browser reads "ping timeout")
    assert f"{ans['participant_id']} (petitioner) left: disconnected (transport close)" in [
        r.getMessage().partition(": ")[2] for r in caplog.records
    ]
    again = await Peer().connect(staff)
    back = await again.call("join", {"v": 1, "visit_id": visit["id"], "rejoin": ans["rejoin"]})
    assert back["ok"] and back["admitted"] and back["participant_id"] != ans["participant_id"]
    # the spent one-time code does not work a second time
    thief = await Peer().connect(staff)
    used = await thief.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
    )
    assert used["error"]["code"] == "used_code"
    await thief.close()

    assert (await judge.call("end"))["ok"]
    assert (await again.next("ended"))["visit_id"] == visit["id"]
    assert await _state(migrated, visit["id"]) is VisitState.ended
    late = await Peer().connect(staff)
    closed = await late.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["spare"]}
    )
    assert closed["error"]["code"] == "visit_closed"
    for peer in (again, judge, late):
        await peer.close()


async def test_refusals_and_the_connection_survives(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    anon = await make_client()
    peer = await Peer().connect(anon)
    cases = [
        ({"v": 1, "visit_id": visit["id"], "code": "WRONGCODE2"}, "invalid_code"),
        ({"v": 1, "visit_id": visit["id"], "code": visit["codes"]["expired"]}, "expired_code"),
        ({"v": 1, "visit_id": visit["id"], "code": visit["codes"]["other_visit"]}, "invalid_code"),
        ({"v": 1, "visit_id": visit["id"]}, "unauthenticated"),
        ({"v": 2, "visit_id": visit["id"]}, "unsupported_version"),
        ({"v": 1, "visit_id": "not-a-visit"}, "invalid_message"),
        ({"v": 1, "visit_id": visit["id"], "extra": 1}, "invalid_message"),
        ("join me", "invalid_message"),
    ]
    for data, code in cases:
        answer = await peer.call("join", data)
        assert answer["ok"] is False and answer["error"]["code"] == code, (data, answer)
        assert (await peer.next("error"))["code"] == code
    assert (await peer.call("admit", {"participant_id": "0" * 16}))["error"]["code"] == "not_joined"
    # still connected and usable: a good code now works
    good = await peer.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["spare"]}
    )
    assert good["ok"] and good["role"] == "petitioner"
    await peer.close()

    for username in ("judge_b", "op_b", "arch_a"):
        c = await make_client()
        await login(c, username)
        staff = await Peer().connect(c, _cookie(c))
        answer = await staff.call("join", {"v": 1, "visit_id": visit["id"]})
        assert answer["error"]["code"] == "not_entitled", username
        await staff.close()
    c = await make_client()
    await login(c, "op_a")
    operator = await Peer().connect(c, _cookie(c))
    answer = await operator.call("join", {"v": 1, "visit_id": visit["id"]})
    assert answer["ok"] and answer["role"] == "operator" and answer["admitted"]
    assert (await operator.call("end"))["error"]["code"] == "forbidden"
    await operator.close()


EVENTS = [
    "join",
    "admit",
    "refuse",
    "invite",
    "media_state",
    "leave",
    "end",
    "offer",
    "view",
    "bogus",
]
payloads = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["v", "visit_id", "code", "participant_id", "role", "audio", "video", "x"]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=8,
)


async def test_malformed_messages_get_errors_not_crashes(
    make_client: MakeClient, visit: dict[str, Any], app_server: Any
) -> None:
    anon = await make_client()
    peer = await Peer().connect(anon)
    # this test is about the answers' shape, not the rate limit: lift it for this connection
    bucket = app_server.app[VISITS].bucket(peer.sio.get_sid("/visit"))
    assert bucket is not None
    bucket.rate = bucket.burst = 1_000_000
    samples: list[tuple[str, Any]] = []

    @settings(
        max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(event=st.sampled_from(EVENTS), data=payloads)
    def collect(event: str, data: Any) -> None:
        samples.append((event, data))

    collect()
    codes = set()
    for event, data in samples:
        answer = await peer.call(event, data)
        assert answer["ok"] is False, (event, data, answer)
        codes.add(answer["error"]["code"])
    assert codes <= {
        "invalid_message",
        "not_joined",
        "unsupported_version",
        "unauthenticated",
        "invalid_code",
    }
    assert "internal_error" not in codes
    good = await peer.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["spare"]}
    )
    assert good["ok"]
    await peer.close()


async def test_flood_is_rate_limited(make_client: MakeClient, visit: dict[str, Any]) -> None:
    anon = await make_client()
    peer = await Peer().connect(anon)
    answers = await asyncio.gather(
        *(peer.call("media_state", {"audio": True, "video": True}) for _ in range(120))
    )
    codes = [a["error"]["code"] for a in answers]
    assert codes.count("rate_limited") >= 60 and set(codes) <= {"rate_limited", "not_joined"}
    await peer.close()


async def test_a_visit_ended_from_the_judges_queue_closes_the_live_room(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    """The judge ends the visit with the queue page's button (the API), not in the call:
    everyone in the call is told and the room closes; a later join finds it closed."""
    staff = await make_client()
    csrf = await login(staff, "judge_a")
    judge = await Peer().connect(staff, _cookie(staff))
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    guest = await Peer().connect(staff)
    ans = await guest.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
    )
    assert (await judge.call("admit", {"participant_id": ans["participant_id"]}))["ok"]
    await guest.next("admitted")
    r = await staff.post(
        f"/api/v1/visits/{visit['id']}/state",
        json={"state": "ended"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status == 200, await r.text()
    assert (await guest.next("ended"))["visit_id"] == visit["id"]
    assert (await judge.next("ended"))["visit_id"] == visit["id"]
    assert await _state(migrated, visit["id"]) is VisitState.ended
    gone = await judge.call("note", {"text": "还在吗"})  # the room was closed on the server
    assert gone["error"]["code"] == "not_joined"
    late = await Peer().connect(staff)
    again = await late.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["spare"]}
    )
    assert again["error"]["code"] == "visit_closed", again
    for peer in (late, guest, judge):
        await peer.close()


def test_a_view_message_holds_picture_heights_by_mid_within_bounds() -> None:
    """`view`: each received picture's shown height by media section; nothing else."""
    message = parse("view", {"heights": {"1": 240, "3": 0}})
    assert isinstance(message, View) and message.heights == {"1": 240, "3": 0}
    for bad in (
        {"heights": {"1": -1}},
        {"heights": {"1": 9000}},
        {"heights": {"1": 240.5}},
        {"heights": {"1": "240"}},
        {"heights": {"x" * 17: 240}},
        {"heights": {str(i): 100 for i in range(65)}},
        {"heights": {"1": 240}, "extra": 1},
        {},
    ):
        with pytest.raises(ProtocolError) as refused:
            parse("view", bad)
        assert refused.value.code is ErrorCode.invalid_message, bad


async def test_a_lawyer_is_admitted_only_once_the_petitioner_is_and_the_visit_records(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    """Before the petitioner is admitted nothing records: a talk with the lawyer then would
    be on no record (一案一录), so the lawyer waits in the lobby until the visit is in
    progress."""
    staff = await make_client()
    await login(staff, "judge_a")
    judge = await Peer().connect(staff, _cookie(staff))
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    invitation = await judge.call("invite", {"role": "lawyer", "label": "值班律师张某"})
    lawyer = await Peer().connect(staff)
    lj = await lawyer.call("join", {"v": 1, "visit_id": visit["id"], "code": invitation["code"]})
    assert lj["ok"] and not lj["admitted"]
    early = await judge.call("admit", {"participant_id": lj["participant_id"]})
    assert early["error"]["code"] == "not_admitted", early
    assert "请先准许信访人进入" in early["error"]["message"]
    guest = await Peer().connect(staff)
    pj = await guest.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
    )
    assert (await judge.call("admit", {"participant_id": pj["participant_id"]}))["ok"]
    assert (await guest.next("admitted"))["recording"] is True
    assert (await judge.call("admit", {"participant_id": lj["participant_id"]}))["ok"]
    assert (await lawyer.next("admitted"))["recording"] is True
    for peer in (lawyer, guest, judge):
        await peer.close()


def test_a_media_failure_is_told_in_chinese_without_the_servers_addresses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from media.errors import MediaError
    from signaling.namespace import MEDIA_FAILED, _media_refusal

    caplog.set_level("WARNING", logger="vreception.signaling")
    for exc in (
        ValueError("UDP ports 40000-40199 are all in use on 10.1.2.3"),
        MediaError("media_failed", "Media sections in answer do not match offer"),
    ):
        refusal = _media_refusal(exc)
        assert refusal.code is ErrorCode.media_failed and refusal.message == MEDIA_FAILED
    assert "10.1.2.3" in caplog.text  # the cause is for the log
    sdp = _media_refusal(MediaError("invalid_sdp", "SDP 中没有媒体段"))
    assert sdp.code is ErrorCode.invalid_sdp and sdp.message == "SDP 中没有媒体段"


async def test_a_join_that_crosses_the_visits_end_is_refused_not_seated_unrecorded(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings, app_server: Any
) -> None:
    """The visit ends between the join's first check and its seat (its room was closed
    and a new one would open): the join is refused (visit_closed), and no room is left."""
    database = Database(migrated)
    try:
        async with database.writer() as db:
            row = await db.get(Visit, visit["id"])
            assert row is not None
            row.state = VisitState.cancelled  # ended meanwhile (elsewhere)
    finally:
        await database.dispose()
    namespace = app_server.app[VISITS]
    real = namespace.gateway.is_open
    checks: list[bool] = []

    async def open_at_first(visit_id: str) -> bool:
        checks.append(True)
        return True if len(checks) == 1 else await real(visit_id)

    namespace.gateway.is_open = open_at_first
    staff = await make_client()
    await login(staff, "judge_a")
    judge = await Peer().connect(staff, _cookie(staff))
    try:
        answer = await judge.call("join", {"v": 1, "visit_id": visit["id"]})
    finally:
        namespace.gateway.is_open = real
    assert answer["error"]["code"] == "visit_closed", answer
    assert visit["id"] not in namespace.rooms
    await judge.close()
