"""The socket against a hostile or stale client (issue 11 §4), with real socket.io clients,
real HTTP and real UDP sockets: stale staff identities, reserved event names, broken frames,
oversized polling bodies, the protocol version, rejoin tokens, lobby guests' media events,
malformed SDP, and ICE checks kept inside the allowed networks."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import re
import socket
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import socketio
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from sqlalchemy import select, update

from config.db import Database
from config.settings import ConfigError, Settings, load_settings
from media.errors import MediaError
from media.room import Relay, Stream
from media.transport import (
    announce_addresses,
    create_peer_connection,
    default_allowed_networks,
    screen_sdp,
)
from scheduler.models import User, Visit
from signaling.gateway import Identity, RejoinTokens
from signaling.protocol import ParticipantRole, ProtocolError
from tests.conftest import MakeClient
from tests.helpers import login, wait_for
from tests.media_fixtures import fail_connection
from tests.visits import Peer, _cookie, admitted_call, room_events
from web.keys import VISITS

LOOPBACK = [ipaddress.ip_network("127.0.0.1/32")]


def _closed(peer: Peer) -> Any:
    async def check() -> bool:
        return "/visit" not in peer.sio.namespaces

    return check


async def _staff_peer(make_client: MakeClient, username: str) -> tuple[Any, str, Peer]:
    client = await make_client()
    csrf = await login(client, username)
    return client, csrf, await Peer().connect(client, _cookie(client))


async def _offer(kinds: tuple[str, ...] = ("video", "audio")) -> str:
    pc = create_peer_connection()
    for kind in kinds:
        pc.addTransceiver(VideoStreamTrack() if kind == "video" else AudioStreamTrack(), "sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


# ---------------------------------------------------------------- stale staff identities


async def test_logout_closes_the_staff_socket_opened_before_it(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    """Logging out closes the judge's live call socket at once: it can no longer admit,
    write notes or end the visit."""
    client, csrf, judge = await _staff_peer(make_client, "judge_a")
    joined = await judge.call("join", {"v": 1, "visit_id": visit["id"]})
    assert joined["ok"]
    _, _, operator = await _staff_peer(make_client, "op_a")
    assert (await operator.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    idle = await Peer().connect(client, _cookie(client))  # opened, not yet joined
    r = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert r.status == 200
    await wait_for(_closed(judge), within=10)
    await wait_for(_closed(idle), within=10)
    left = await operator.next("participant_left")
    assert left["participant_id"] == joined["participant_id"]
    assert left["reason"] == "identity_revoked"
    await operator.close()


async def test_a_staff_action_after_the_account_was_disabled_is_refused_and_closes_the_socket(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    """The re-check at each action: disabled in the database behind the server's back (no
    push), the judge's next note is refused and the socket closed; nothing is written."""
    _, _, judge = await _staff_peer(make_client, "judge_a")
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    assert (await judge.call("note", {"text": "开始"}))["ok"]
    db = Database(migrated)
    try:
        async with db.writer() as s:
            await s.execute(update(User).where(User.username == "judge_a").values(active=False))
    finally:
        await db.dispose()
    refused = await judge.call("note", {"text": "不应记录"})
    assert refused["ok"] is False and refused["error"]["code"] == "unauthenticated"
    await wait_for(_closed(judge), within=10)


async def test_a_note_that_could_not_be_kept_is_refused_not_shown_as_noted(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    """The database refuses the note (busy, failing over): the judge is told and keeps the
    text, instead of a note shown to staff that is in neither the minutes nor the transcript."""
    client, _, judge = await _staff_peer(make_client, "judge_a")
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    gateway = client.server.app[VISITS].gateway
    keep = gateway.note

    async def failing(*args: Any) -> None:
        raise OSError("database is locked")

    gateway.note = failing
    try:
        refused = await judge.call("note", {"text": "当事人情绪激动"})
    finally:
        gateway.note = keep
    assert refused["error"] == {"code": "internal_error", "message": "备注未能保存，请重试"}
    assert (await judge.call("note", {"text": "当事人情绪激动"}))["ok"]
    await judge.close()


async def test_a_join_after_a_role_change_is_refused(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    """A socket opened as judge whose role changed before `join` does not join as judge."""
    _, _, judge = await _staff_peer(make_client, "judge_a")
    db = Database(migrated)
    try:
        async with db.writer() as s:
            await s.execute(update(User).where(User.username == "judge_a").values(role="archivist"))
    finally:
        await db.dispose()
    refused = await judge.call("join", {"v": 1, "visit_id": visit["id"]})
    assert refused["error"]["code"] == "unauthenticated", refused
    await wait_for(_closed(judge), within=10)


async def test_disabling_or_changing_an_account_closes_its_sockets_in_both_namespaces(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    """The admin disables the operator (who watches the lobby) and a judge and resets
    another's password: their /visit and /notify sockets close at once; the admin's own
    stay open."""
    op_client, _, operator = await _staff_peer(make_client, "op_a")
    assert (await operator.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    notify = socketio.AsyncClient(reconnection=False)
    await notify.connect(
        str(op_client.make_url("/")),
        namespaces=["/notify"],
        headers={"Cookie": f"vr_session={_cookie(op_client)}"},
        transports=["websocket"],
    )
    _, _, judge = await _staff_peer(make_client, "judge_a")
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    admin, admin_csrf, admin_socket = await _staff_peer(make_client, "admin")
    users = await (await admin.get("/api/v1/users", params={"limit": 100})).json()
    ids = {u["username"]: u["id"] for u in users["items"]}
    headers = {"X-CSRF-Token": admin_csrf}

    r = await admin.patch(f"/api/v1/users/{ids['op_a']}", json={"active": False}, headers=headers)
    assert r.status == 200, await r.text()

    async def notify_closed() -> bool:
        return "/notify" not in notify.namespaces

    await wait_for(_closed(operator), within=10)
    await wait_for(notify_closed, within=10)
    assert "/visit" in judge.sio.namespaces

    # the judge's role is not changed while they have visits to receive (handed on first);
    # stopped, their sockets close
    r = await admin.patch(
        f"/api/v1/users/{ids['judge_a']}", json={"role": "archivist"}, headers=headers
    )
    assert r.status == 409 and (await r.json())["error"]["code"] == "open_visits"
    assert "/visit" in judge.sio.namespaces
    stop = {"active": False}
    r = await admin.patch(f"/api/v1/users/{ids['judge_a']}", json=stop, headers=headers)
    assert r.status == 200, await r.text()
    await wait_for(_closed(judge), within=10)

    _, _, other_judge = await _staff_peer(make_client, "judge_b")
    r = await admin.post(
        f"/api/v1/users/{ids['judge_b']}/password",
        json={"password": "Another-Passw0rd!"},
        headers=headers,
    )
    assert r.status == 200, await r.text()
    await wait_for(_closed(other_judge), within=10)
    assert "/visit" in admin_socket.sio.namespaces
    for peer in (admin_socket,):
        await peer.close()
    await notify.disconnect()


# ---------------------------------------------------------------- reserved event names


async def test_reserved_and_non_string_event_names_are_refused(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    """`connect`, `disconnect` and the like from a client are invalid messages: they neither
    reset the rate limiter nor reach the connect handler (which failed on `"x"`)."""
    anon = await make_client()
    peer = await Peer().connect(anon)
    for event, data in (("connect", "x"), ("disconnect", None), ("connect_error", {}), (7, {})):
        answer = await peer.call(event, data)  # type: ignore[arg-type]
        assert answer["ok"] is False and answer["error"]["code"] == "invalid_message", event
        assert (await peer.next("error"))["code"] == "invalid_message"
    # exhaust the rate limit; a `disconnect` does not refill it
    answers = await asyncio.gather(
        *(peer.call("media_state", {"audio": True, "video": True}) for _ in range(60))
    )
    assert any(a["error"]["code"] == "rate_limited" for a in answers)
    await peer.call("disconnect")
    again = await peer.call("media_state", {"audio": True, "video": True})
    assert again["error"]["code"] == "rate_limited"
    assert "/visit" in peer.sio.namespaces
    await peer.close()


# ---------------------------------------------------------------- broken frames and bodies


async def _raw_socket(client: Any, frames: list[str]) -> aiohttp.WSMessage:
    """A raw engine.io websocket joining /visit, sending ``frames``; the server's last word."""
    async with aiohttp.ClientSession() as http:
        url = client.make_url("/socket.io/").with_query(EIO="4", transport="websocket")
        async with http.ws_connect(url) as ws:
            assert (await ws.receive_str()).startswith("0")
            await ws.send_str("40/visit,")
            assert (await ws.receive_str()).startswith("40/visit")
            for frame in frames:
                await ws.send_str(frame)
            while True:
                message = await asyncio.wait_for(ws.receive(), timeout=30)
                if message.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.ERROR,
                ):
                    return message


@pytest.mark.parametrize(
    "frames",
    [
        ["x", "x", "zz"],  # not an engine.io packet
        ["9zzz", "8"],  # an engine.io packet type that does not exist
        ["42/visit,[", '42/visit,{"a":1', "4x"],  # a socket.io packet that does not decode
    ],
)
async def test_broken_frames_close_the_connection_with_one_warning(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture, frames: list[str]
) -> None:
    client = await make_client()
    caplog.set_level(logging.INFO)
    message = await _raw_socket(client, frames)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    warnings = [r for r in caplog.records if "broken frame" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]


async def test_an_oversized_polling_post_is_answered_413_and_closed(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    url = client.make_url("/socket.io/").with_query(EIO="4", transport="polling")
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            opened = await r.text()
        sid = opened[opened.index('"sid":"') + 7 :].split('"')[0]
        target = url.update_query(sid=sid)
        for size in (3 * 1024 * 1024, 300 * 1024):
            async with http.post(
                target, data=b"4" + b"x" * size, timeout=aiohttp.ClientTimeout(total=20)
            ) as r:
                assert r.status == 413
                assert r.headers.get("Connection", "").lower() == "close"

        async def chunks() -> Any:
            yield b"4" + b"x" * 1000

        async with http.post(target, data=chunks(), timeout=aiohttp.ClientTimeout(total=20)) as r:
            assert r.status == 411
        ordinary = aiohttp.ClientTimeout(total=20)
        async with http.post(target, data=b"40/visit,", timeout=ordinary) as r:
            assert r.status == 200  # an ordinary frame still goes through, read once
        async with http.get(target, timeout=ordinary) as r:
            assert (await r.text()).startswith("40/visit,{")  # the namespace is connected
        async with http.post(target, data=b"1", timeout=ordinary) as r:  # engine.io close
            assert r.status == 200


async def test_a_broken_polling_frame_closes_the_connection_with_one_warning(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client()
    caplog.set_level(logging.INFO)
    url = client.make_url("/socket.io/").with_query(EIO="4", transport="polling")
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            opened = await r.text()
        target = url.update_query(sid=opened[opened.index('"sid":"') + 7 :].split('"')[0])
        for body in (b"x", b"40/visit,\x1e9zzz", b"4x"):
            async with http.post(target, data=body, timeout=timeout) as r:
                assert r.status == 400
                assert r.headers.get("Connection", "").lower() == "close"
    warnings = [r for r in caplog.records if "broken frame" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# ---------------------------------------------------------------- join, rejoin, media events


async def test_the_protocol_version_is_the_integer_one(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    peer = await Peer().connect(await make_client())
    for v in (1.0, True, "1"):
        answer = await peer.call("join", {"v": v, "visit_id": visit["id"]})
        assert answer["error"]["code"] == "invalid_message", v
    await peer.close()


def test_rejoin_tokens_are_opaque_and_bound_to_the_visit_and_the_identity() -> None:
    tokens = RejoinTokens(b"s" * 40)
    who = Identity(key="code:17", role=ParticipantRole.petitioner, name="信访人王某")
    token = tokens.issue("a" * 32, who, admitted=True)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert "王某".encode() not in raw and b"code:17" not in raw and b"petitioner" not in raw
    assert tokens.verify("a" * 32, token) == (who, True)
    for visit_id, forged in (
        ("b" * 32, token),  # another visit
        ("a" * 32, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")),  # tampered
        ("a" * 32, RejoinTokens(b"t" * 40).issue("a" * 32, who, True)),  # another server
    ):
        with pytest.raises(ProtocolError) as refused:
            tokens.verify(visit_id, forged)
        assert refused.value.code.value == "invalid_code"
    expired = RejoinTokens(b"s" * 40, ttl_seconds=-1).issue("a" * 32, who, True)
    with pytest.raises(ProtocolError) as late:
        tokens.verify("a" * 32, expired)
    assert late.value.code.value == "expired_code"


async def test_a_rejoin_replaces_the_identitys_previous_connection(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    """One live connection per identity: a second tab with the token takes over; the first
    is told `replaced` (through the others) and disconnected."""
    client, _, judge = await _staff_peer(make_client, "judge_a")
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    first = await Peer().connect(client)
    joined = await first.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
    )
    assert (await judge.call("admit", {"participant_id": joined["participant_id"]}))["ok"]
    token = (await first.next("admitted"))["rejoin"]
    second = await Peer().connect(client)
    back = await second.call("join", {"v": 1, "visit_id": visit["id"], "rejoin": token})
    assert back["ok"] and back["admitted"] and back["rejoin"]
    left = await judge.next("participant_left")
    while left["participant_id"] != joined["participant_id"]:
        left = await judge.next("participant_left")
    assert left["reason"] == "replaced"
    await wait_for(_closed(first), within=10)
    for peer in (second, judge):
        await peer.close()


async def test_a_rejoin_replacing_the_rooms_last_connection_keeps_the_room_for_the_newcomer(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    """After a server pause the judge's old connection may be gone before the petitioner's
    new tab replaces its own: the room must not close under the newcomer, who then could
    neither publish nor show evidence (an internal error), nor be met by the judge."""
    client, _, judge = await _staff_peer(make_client, "judge_a")
    judge_id = (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["participant_id"]
    first = await Peer().connect(client)
    joined = await first.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
    )
    assert (await judge.call("admit", {"participant_id": joined["participant_id"]}))["ok"]
    token = (await first.next("admitted"))["rejoin"]
    await judge.close()  # the judge's connection is gone first
    assert (await first.next("participant_left"))["participant_id"] == judge_id
    second = await Peer().connect(client)
    back = await second.call("join", {"v": 1, "visit_id": visit["id"], "rejoin": token})
    assert back["ok"] and back["admitted"]
    await wait_for(_closed(first), within=10)
    for stream in ("main", "evidence"):
        published = await second.call(
            "publish", {"type": "offer", "sdp": await _offer(("video",)), "stream": stream}
        )
        assert published["ok"], (stream, published)
    # the judge coming back meets the petitioner in the same room
    _, _, again = await _staff_peer(make_client, "judge_a")
    met = await again.call("join", {"v": 1, "visit_id": visit["id"]})
    assert met["ok"]
    assert back["participant_id"] in {p["participant_id"] for p in met["participants"]}
    for peer in (second, again):
        await peer.close()


async def test_a_room_joined_again_while_it_closes_keeps_its_placement(
    make_client: MakeClient, app_server: Any, visit: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last one leaves and the room closes (its media closing takes a while); a join
    meanwhile opens the room again, which must stay pinned to this node: the closing does
    not release the new room's placement."""
    namespace = app_server.app[VISITS]
    assert namespace.relay is not None
    closing, go_on, closed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    close_media, close_room = namespace.relay.close_room, namespace._close_room

    async def slow_media_close(visit_id: str) -> None:
        await close_media(visit_id)
        closing.set()
        await go_on.wait()

    async def watched_close(visit_id: str) -> None:
        await close_room(visit_id)
        closed.set()

    monkeypatch.setattr(namespace.relay, "close_room", slow_media_close)
    monkeypatch.setattr(namespace, "_close_room", watched_close)
    client, _, judge = await _staff_peer(make_client, "judge_a")
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    await judge.close()
    await asyncio.wait_for(closing.wait(), timeout=10)
    again = await Peer().connect(client, _cookie(client))
    assert (await again.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    go_on.set()
    await asyncio.wait_for(closed.wait(), timeout=10)
    assert visit["id"] in namespace.rooms
    assert await namespace.placement.held(visit["id"])
    await again.close()


async def test_unknown_visits_and_lobby_media_events_get_their_documented_codes(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    client, _, judge = await _staff_peer(make_client, "judge_a")
    unknown = await judge.call("join", {"v": 1, "visit_id": "f" * 32})
    assert unknown["error"]["code"] == "visit_closed"
    guest = await Peer().connect(client)
    lost = await guest.call(
        "join", {"v": 1, "visit_id": "f" * 32, "code": visit["codes"]["petitioner"]}
    )
    assert lost["error"]["code"] == "visit_closed"
    assert (
        await guest.call(
            "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
        )
    )["ok"]  # the code was not spent on the unknown visit
    for event, data in (
        ("publish", {"type": "offer", "sdp": "v=0"}),
        ("unpublish", {"stream": "main"}),
        ("subscribe", {}),
        ("subscribe_answer", {"type": "answer", "sdp": "v=0"}),
    ):
        answer = await guest.call(event, data)
        assert answer["error"]["code"] == "not_admitted", event
    for peer in (guest, judge):
        await peer.close()


async def test_the_others_are_told_tracks_changed_when_a_publisher_leaves(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    _, judge, guest, joined = await admitted_call(make_client, visit)
    published = await guest.call("publish", {"type": "offer", "sdp": await _offer()})
    assert published["ok"], published
    assert (await judge.next("tracks_changed"))["participant_id"] == joined["participant_id"]
    assert (await guest.call("leave"))["ok"]
    changed = await judge.next("tracks_changed")
    assert changed["participant_id"] == joined["participant_id"]
    for peer in (guest, judge):
        await peer.close()


async def test_a_failed_publishing_connection_is_closed_and_the_others_are_told(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    """A publisher's connection fails (aiortc never brings one back; here its page is gone
    without a word): within a second the relay closes it, its tracks end and the others get
    ``tracks_changed``, so their subscriptions drop tiles that would carry nothing. Evidence
    whose connection failed is no longer shown, on the pages and on the visit's record."""
    client, judge, guest, joined = await admitted_call(make_client, visit)
    assert (await guest.call("publish", {"type": "offer", "sdp": await _offer()}))["ok"]
    assert (await judge.next("tracks_changed"))["participant_id"] == joined["participant_id"]
    media = client.server.app[VISITS].relay.rooms[visit["id"]]
    shown = await guest.call(
        "publish", {"type": "offer", "sdp": await _offer(("video",)), "stream": "evidence"}
    )
    assert shown["ok"], shown
    assert (await judge.next("tracks_changed"))["participant"]["evidence"] is True
    fail_connection(media.publishers[(joined["participant_id"], Stream.evidence)])
    stopped = await judge.next("tracks_changed")
    assert stopped["participant"]["evidence"] is False
    events = await room_events(migrated, visit["id"])
    assert [e.detail["event"] for e in events][-2:] == ["evidence_shown", "evidence_stopped"]

    pc = media.publishers[(joined["participant_id"], Stream.main)]
    assert len(media.tracks) == 2
    fail_connection(pc)

    changed = await judge.next("tracks_changed")
    assert changed["participant_id"] == joined["participant_id"]
    assert changed["participant"]["role"] == "petitioner"
    assert not media.publishers and pc.signalingState == "closed"

    async def ended() -> bool:
        return not media.tracks

    await wait_for(ended, within=5)
    for peer in (guest, judge):
        await peer.close()


# ---------------------------------------------------------------- malformed SDP


def _with_candidates(sdp: str, lines: list[str]) -> str:
    """``sdp`` with ``lines`` as the candidates of every media section (aiortc takes a
    bundle's candidates from its last section)."""
    out = []
    for line in sdp.splitlines():
        if not line.startswith("a=candidate:"):
            out.append(line)
        if line.startswith("m="):
            out.extend(lines)
    return "\r\n".join(out) + "\r\n"


async def test_malformed_sdp_is_refused_as_invalid_sdp_without_traces(
    make_client: MakeClient,
    visit: dict[str, Any],
    app_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, _, judge = await _staff_peer(make_client, "judge_a")
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    good = await _offer()
    head = good.partition("m=")[0]
    cases = {
        "bad candidate line": _with_candidates(good, ["a=candidate:1 1 udp"]),
        "candidate port out of range": _with_candidates(
            good, ["a=candidate:1 1 udp 2130706431 127.0.0.1 70000 typ host"]
        ),
        "media port out of range": re.sub(
            r"^m=video \d+ ", "m=video 99999 ", good, count=1, flags=re.M
        ),
        "no payload types": head + "m=audio 9 UDP/TLS/RTP/SAVPF\r\na=mid:0\r\n",
        "thousands of media sections": head
        + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n" * 1000,
        "no ICE credentials": re.sub(r"^a=ice-(ufrag|pwd):.*\r\n", "", good, flags=re.M),
        "no DTLS setup": re.sub(r"^a=setup:.*\r\n", "", good, flags=re.M),
        "thousands of candidates": _with_candidates(
            good,
            [
                f"a=candidate:{i} 1 udp 2130706431 127.0.0.1 {1000 + i} typ host"
                for i in range(1000)
            ],
        ),
        "not an SDP": "hello",
    }
    caplog.set_level(logging.INFO)
    relay = app_server.app[VISITS].relay
    for name, sdp in cases.items():
        if len(sdp) > 64 * 1024:
            sdp = sdp[: 64 * 1024]
        answer = await judge.call("publish", {"type": "offer", "sdp": sdp})
        assert answer["ok"] is False and answer["error"]["code"] == "invalid_sdp", (name, answer)
        assert "SDP" in answer["error"]["message"]
        room = relay.rooms.get(visit["id"])
        assert room is None or not room.publishers, name
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert (await judge.call("publish", {"type": "offer", "sdp": good}))["ok"]
    await judge.close()


# ---------------------------------------------------------------- ICE checks stay inside


@pytest.fixture
def udp_listeners() -> Iterator[dict[str, socket.socket]]:
    """One UDP socket inside the allowed networks (127.0.0.1), one outside (127.0.0.2)."""
    opened = {}
    for host in ("127.0.0.1", "127.0.0.2"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        s.setblocking(False)
        opened[host] = s
    yield opened
    for s in opened.values():
        s.close()


def _drain(s: socket.socket) -> int:
    count = 0
    while True:
        try:
            s.recvfrom(2048)
        except BlockingIOError:
            return count
        count += 1


async def test_ice_checks_go_only_to_candidates_inside_the_allowed_networks(
    udp_listeners: dict[str, socket.socket],
) -> None:
    announce_addresses(["127.0.0.1"])
    relay = Relay(allowed_networks=LOOPBACK)
    inside, outside = udp_listeners["127.0.0.1"], udp_listeners["127.0.0.2"]
    offer = _with_candidates(
        await _offer(),
        [
            f"a=candidate:1 1 udp 2130706431 127.0.0.2 {outside.getsockname()[1]} typ host",
            f"a=candidate:2 1 udp 2130706431 127.0.0.1 {inside.getsockname()[1]} typ host",
            "a=candidate:3 1 udp 2130706431 3f2a9c1e-0b0e-4c7c.local 9 typ host",
        ],
    )
    room = relay.room("c" * 32)
    await room.publish("p1", offer)
    received = {"inside": 0, "outside": 0}

    async def checks_arrived() -> bool:
        received["inside"] += _drain(inside)
        received["outside"] += _drain(outside)
        return received["inside"] >= 3  # a first check and its retransmissions

    try:
        await wait_for(checks_arrived, within=30)
        assert received["outside"] + _drain(outside) == 0
    finally:
        await relay.close_room("c" * 32)


def test_screening_drops_mdns_names_and_foreign_addresses() -> None:
    sdp = _with_candidates(
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=rtpmap:111 opus/48000/2\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n"
        "a=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\n",
        [
            "a=candidate:1 1 udp 1 127.0.0.1 5000 typ host",
            "a=candidate:2 1 udp 1 abc.local 5001 typ host",
            "a=candidate:3 1 udp 1 192.0.2.9 5002 typ host",
            "a=candidate:4 1 udp 1 example.org 5003 typ host",
        ],
    )
    kept = [line for line in screen_sdp(sdp, LOOPBACK).splitlines() if "candidate" in line]
    assert kept == ["a=candidate:1 1 udp 1 127.0.0.1 5000 typ host"]
    with pytest.raises(MediaError) as refused:
        screen_sdp("v=0", LOOPBACK)
    assert refused.value.code == "invalid_sdp"


def test_the_allowed_networks_setting_and_its_default() -> None:
    assert default_allowed_networks(["127.0.0.1"]) == [ipaddress.ip_network("127.0.0.0/8")]
    assert default_allowed_networks(["203.0.113.7"]) == [ipaddress.ip_network("203.0.113.0/24")]
    settings = load_settings(env={"VRECEPTION_MEDIA_ALLOWED_NETWORKS": "10.1.2.3/16, 10.9.0.0/16"})
    assert settings.media_allowed_networks == ["10.1.0.0/16", "10.9.0.0/16"]
    assert load_settings(env={}).media_networks is None
    with pytest.raises(ConfigError, match="media_allowed_networks"):
        load_settings(env={"VRECEPTION_MEDIA_ALLOWED_NETWORKS": '["not a network"]'})


async def test_a_long_polling_client_still_joins(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    """The guard reads polling bodies before engine.io: they must still reach it whole."""
    client = await make_client()
    polling = socketio.AsyncClient(reconnection=False)
    await polling.connect(str(client.make_url("/")), namespaces=["/visit"], transports=["polling"])
    try:
        joined = await polling.call(
            "join",
            {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]},
            namespace="/visit",
            timeout=30,
        )
        assert joined["ok"] and joined["role"] == "petitioner", joined
    finally:
        await polling.disconnect()


async def test_evidence_stays_shown_through_a_mute_and_stops_on_the_record_when_its_owner_leaves(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    """Whether someone shows evidence is the relay's to say: a ``media_state`` (the page's
    mute button, which says nothing of evidence) does not clear it, so the evidence
    connection failing afterwards is still on the record as stopped; and evidence shown by
    someone who leaves is on the record as stopped too."""
    client, judge, guest, joined = await admitted_call(make_client, visit)
    media = client.server.app[VISITS].relay.rooms[visit["id"]]
    shown = await guest.call(
        "publish", {"type": "offer", "sdp": await _offer(("video",)), "stream": "evidence"}
    )
    assert shown["ok"], shown
    assert (await judge.next("tracks_changed"))["participant"]["evidence"] is True
    assert (await guest.call("media_state", {"audio": False, "video": True}))["ok"]
    assert (await judge.next("media_state"))["evidence"] is True
    fail_connection(media.publishers[(joined["participant_id"], Stream.evidence)])
    assert (await judge.next("tracks_changed"))["participant"]["evidence"] is False
    events = [e.detail["event"] for e in await room_events(migrated, visit["id"])]
    assert events[-2:] == ["evidence_shown", "evidence_stopped"]

    again = await guest.call(
        "publish", {"type": "offer", "sdp": await _offer(("video",)), "stream": "evidence"}
    )
    assert again["ok"], again
    assert (await guest.call("leave"))["ok"]
    await judge.next("participant_left")
    events = [e.detail["event"] for e in await room_events(migrated, visit["id"])]
    assert events[-3:] == ["evidence_shown", "left", "evidence_stopped"]
    for peer in (guest, judge):
        await peer.close()


async def test_a_socket_gone_while_its_join_waits_leaves_nobody_behind(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    """The network drops while a join is being checked (the database is slow): the join
    does not put a participant nobody will ever remove into the room (a judge held
    present for good, a room that never empties and a recording that never stops)."""
    staff = await make_client()
    await login(staff, "judge_a")
    visits = staff.server.app[VISITS]
    entitling, go, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    entitle, join = visits.gateway.entitle, visits._handlers["join"]

    async def slow_entitle(*args: Any, **kwargs: Any) -> Any:
        entitling.set()
        await go.wait()
        return await entitle(*args, **kwargs)

    async def watched_join(*args: Any) -> Any:
        try:
            return await join(*args)
        finally:
            done.set()

    visits.gateway.entitle = slow_entitle
    visits._handlers["join"] = watched_join
    try:
        judge = await Peer().connect(staff, _cookie(staff))
        pending = asyncio.ensure_future(judge.call("join", {"v": 1, "visit_id": visit["id"]}))
        await asyncio.wait_for(entitling.wait(), 30)
        await judge.close()

        async def gone() -> bool:
            return not visits._buckets

        await wait_for(gone, within=30)
        go.set()
        await asyncio.wait_for(done.wait(), 30)
        room = visits.rooms.get(visit["id"])
        assert room is None or not room.participants, room
        pending.cancel()
    finally:
        visits.gateway.entitle = entitle
        visits._handlers["join"] = join


async def test_a_guest_whose_join_did_not_complete_can_use_the_same_code_again(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    """The petitioner's connection drops just after their code was accepted, before the
    join was answered: the code is usable again (the page retries with it), instead of the
    petitioner waiting at the terminal for the operator to issue a new one."""
    staff = await make_client()
    visits = staff.server.app[VISITS]
    redeemed, go, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    redeem, join = visits.gateway.redeem, visits._handlers["join"]

    async def slow_redeem(*args: Any, **kwargs: Any) -> Any:
        identity = await redeem(*args, **kwargs)  # the code is spent here
        redeemed.set()
        await go.wait()
        return identity

    async def watched_join(*args: Any) -> Any:
        try:
            return await join(*args)
        finally:
            done.set()

    visits.gateway.redeem = slow_redeem
    visits._handlers["join"] = watched_join
    code = visit["codes"]["petitioner"]
    try:
        guest = await Peer().connect(staff)
        pending = asyncio.ensure_future(
            guest.call("join", {"v": 1, "visit_id": visit["id"], "code": code})
        )
        await asyncio.wait_for(redeemed.wait(), 30)
        await guest.close()

        async def gone() -> bool:
            return not visits._buckets

        await wait_for(gone, within=30)
        go.set()
        await asyncio.wait_for(done.wait(), 30)
        pending.cancel()
    finally:
        visits.gateway.redeem = redeem
        visits._handlers["join"] = join
    again = await Peer().connect(staff)
    joined = await again.call("join", {"v": 1, "visit_id": visit["id"], "code": code})
    assert joined["ok"] and joined["rejoin"], joined
    other = await Peer().connect(staff)  # a complete join spends it for good
    refused = await other.call("join", {"v": 1, "visit_id": visit["id"], "code": code})
    assert refused["error"]["code"] == "used_code", refused
    for peer in (again, other):
        await peer.close()


async def test_a_judge_no_longer_on_the_visit_cannot_invite_admit_refuse_or_note(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    """The visit is given to another judge while judge_a waits in its call: judge_a's
    powers are checked at each action, not only when joining."""
    staff = await make_client()
    await login(staff, "judge_a")
    judge = await Peer().connect(staff, _cookie(staff))
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    guest = await Peer().connect(staff)
    lobby = await guest.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
    )
    db = Database(migrated)
    try:
        async with db.writer() as s:
            other = await s.scalar(select(User.id).where(User.username == "judge_b"))
            await s.execute(update(Visit).where(Visit.id == visit["id"]).values(judge_id=other))
    finally:
        await db.dispose()
    for event, data in (
        ("invite", {"role": "lawyer", "label": "值班律师"}),
        ("admit", {"participant_id": lobby["participant_id"]}),
        ("refuse", {"participant_id": lobby["participant_id"], "reason": "无关"}),
        ("note", {"text": "备注"}),
    ):
        answer = await judge.call(event, data)
        assert answer["error"]["code"] == "forbidden", (event, answer)
    for peer in (guest, judge):
        await peer.close()


async def test_a_join_tells_how_the_recording_stands_when_it_cannot_write(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    """The recorder cannot write and every page shows it: a page that joins (a reload, a
    rejoin) gets that state in its join answer, which it applies last, so it does not
    show 正在录音录像 while nothing is written."""
    client, judge, guest, joined = await admitted_call(make_client, visit)
    visits = client.server.app[VISITS]
    await visits.recording_failed(visit["id"], "录像写入暂时中断（磁盘空间不足）")
    again = await Peer().connect(client)
    back = await again.call("join", {"v": 1, "visit_id": visit["id"], "rejoin": joined["rejoin"]})
    assert back["ok"] and back["recording"] is True
    assert back["recording_ok"] is False
    assert back["recording_message"] == "录像写入暂时中断（磁盘空间不足）"
    await visits.recording_recovered(visit["id"], "已恢复")
    third = await Peer().connect(client)
    fine = await third.call("join", {"v": 1, "visit_id": visit["id"], "rejoin": back["rejoin"]})
    assert fine["recording_ok"] is True and fine["recording_message"] is None
    for peer in (third, again, guest, judge):
        await peer.close()
