"""监看: staff of a court above a visit's court (or its receiving court) watch it live as
observers who send nothing and whom everyone in the room sees; every watch is audited; staff
of unrelated courts, other roles and visits not in progress are refused. The rule is
scheduler/lifecycle.py's ``Action.watch``; the browser test watches a visit in Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from config.audit import AuditEvent
from config.db import Database
from config.settings import Settings
from config.vocabulary import ParticipantRole
from scheduler.lifecycle import Action, may
from scheduler.models import Role, Visit, VisitState
from scheduler.scope import SYSTEM_ACTOR, Actor
from signaling.gateway import Identity
from signaling.namespace import _sends
from tests.conftest import MakeClient, start_live_server, stop_live_server
from tests.helpers import Booking, login, wait_until
from tests.live import (
    Client,
    beside_playwright,
    checked_in_visit,
    first_login,
    http_login,
    page_login,
    staff_cookie,
)
from tests.visits import Peer, _cookie
from web.audit_text import sentence
from web.keys import VISITS

HIGH, MID, BASIC, OTHER_MID = 1, 2, 3, 4
WATCH_TABLE = {  # who, and whether the visit's courts are below theirs → may watch
    ("judge", True): True,
    ("petition_officer", True): True,
    ("leader", True): True,
    ("admin", False): True,  # every court's
    ("judge", False): False,  # an unrelated court's judge
    ("leader", False): False,
    ("operator", True): False,
    ("archivist", True): False,
    ("system", True): False,  # a watch is a person's
}


@pytest.mark.parametrize(("role", "above"), sorted(WATCH_TABLE))
def test_who_may_watch_a_visit_as_a_table(role: str, above: bool) -> None:
    visit = Visit(id="0" * 32, court_id=BASIC, receiving_court_id=MID, judge_id=None)
    if role == "system":
        actor = SYSTEM_ACTOR
    else:
        court = None if role == "admin" else (HIGH if above else OTHER_MID)
        actor = Actor(7, "w", Role(role), court)
    assert may(actor, Action.watch, visit, above={HIGH, MID}) is WATCH_TABLE[role, above]


def test_an_answer_that_would_send_media_is_recognised() -> None:
    head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    video = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    assert not _sends(head + video + "a=recvonly\r\n")
    assert not _sends(head + video + "a=inactive\r\n")
    assert _sends(head + video + "a=sendrecv\r\n")
    assert _sends(head + video + "a=sendonly\r\n")
    assert _sends(head + video)  # no direction: sendrecv
    assert _sends(head + "a=sendonly\r\n" + video)  # the session's direction
    assert not _sends(head + "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\n")  # rejected


async def _in_call(make_client: MakeClient, visit: dict[str, Any]) -> tuple[Peer, Peer]:
    """judge_a and the petitioner of ``visit`` in its call (in progress)."""
    staff = await make_client()
    await login(staff, "judge_a")
    judge = await Peer().connect(staff, _cookie(staff))
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    guest = await Peer().connect(staff)
    ans = await guest.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
    )
    assert (await judge.call("admit", {"participant_id": ans["participant_id"]}))["ok"]
    await guest.next("admitted")
    return judge, guest


async def _watcher(make_client: MakeClient, username: str) -> Peer:
    http = await make_client()
    await login(http, username)
    return await Peer().connect(http, _cookie(http))


async def test_a_supervising_court_watches_receiving_only_and_everyone_sees_it(
    make_client: MakeClient, booking: Booking, visit: dict[str, Any], migrated: Settings
) -> None:
    judge, guest = await _in_call(make_client, visit)
    high = await _watcher(make_client, "judge_high")  # 某省高级人民法院, above both courts
    joined = await high.call("join", {"v": 1, "visit_id": visit["id"], "watch": True})
    assert joined["ok"], joined
    assert joined["role"] == "observer" and joined["host"] is False
    assert "lobby" not in joined  # an observer sees no lobby
    # nor a rejoin token: an observer comes back with their login; anyone holding a token
    # could watch without one (and past a logout or a transfer), unaudited
    assert "rejoin" not in joined
    for peer in (guest, judge):  # listed for everyone, with their court
        seen = await peer.next("participant_joined")
        while seen["role"] == "petitioner":  # the judge saw the petitioner come in first
            seen = await peer.next("participant_joined")
        assert (seen["role"], seen["name"], seen["court"]) == (
            "observer",
            "高院法官",
            "某省高级人民法院",
        )

    # it never sends: publishing, a sending answer, media state and ending are refused
    offer = {"type": "offer", "sdp": "v=0\r\n"}
    for event, data in (
        ("publish", offer),
        ("unpublish", {"stream": "main"}),
        ("media_state", {"audio": True, "video": True}),
        ("subscribe_answer", {"type": "answer", "sdp": "v=0\r\nm=video 9 RTP/SAVPF 96\r\n"}),
        ("end", {}),
    ):
        refused = await high.call(event, data)
        assert not refused["ok"] and refused["error"]["code"] == "forbidden", (event, refused)

    assert (await high.call("leave", {}))["ok"]
    left = await guest.next("participant_left")
    assert left["role"] == "observer"
    db = Database(migrated)
    try:

        async def audited() -> list[AuditEvent]:
            async with db.reader() as s:
                return list(
                    (
                        await s.scalars(
                            select(AuditEvent)
                            .where(
                                AuditEvent.target_id == visit["id"],
                                AuditEvent.action.like("visit.watch_%"),
                            )
                            .order_by(AuditEvent.id)
                        )
                    ).all()
                )

        deadline = asyncio.get_running_loop().time() + 30
        while len(events := await audited()) < 2:
            assert asyncio.get_running_loop().time() < deadline, events
            await asyncio.sleep(0.05)
        assert [e.action for e in events] == ["visit.watch_started", "visit.watch_stopped"]
        assert all(e.actor_id == str(booking.judge_high) for e in events)
        words = [sentence(e, migrated.tz) for e in events]
        assert words == [
            "高院法官（某省高级人民法院）开始监看视频接访。",
            "高院法官（某省高级人民法院）结束监看视频接访（原因：主动离开）。",
        ]
        async with db.reader() as s:
            v = await s.get(Visit, visit["id"])
            assert v is not None and v.state is VisitState.in_progress  # nothing else changed
    finally:
        await db.dispose()
    for peer in (high, guest, judge):
        await peer.close()


async def test_watching_is_refused_to_unrelated_courts_other_roles_and_closed_visits(
    make_client: MakeClient, booking: Booking, visit: dict[str, Any], migrated: Settings
) -> None:
    judge, guest = await _in_call(make_client, visit)
    for username in ("judge_b", "op_a", "arch_high"):  # another branch; wrong roles
        peer = await _watcher(make_client, username)
        refused = await peer.call("join", {"v": 1, "visit_id": visit["id"], "watch": True})
        assert not refused["ok"] and refused["error"]["code"] == "not_entitled", username
        await peer.close()
    high = await _watcher(make_client, "judge_high")
    not_started = await high.call("join", {"v": 1, "visit_id": visit["other"], "watch": True})
    assert not not_started["ok"] and "正在进行" in not_started["error"]["message"]
    code = await high.call(
        "join", {"v": 1, "visit_id": visit["id"], "watch": True, "code": "ABCDEFGH"}
    )
    assert not code["ok"] and code["error"]["code"] == "invalid_message"
    db = Database(migrated)
    try:
        async with db.reader() as s:  # refusals watched nothing
            assert not (
                await s.scalars(select(AuditEvent).where(AuditEvent.action.like("visit.watch_%")))
            ).all()
    finally:
        await db.dispose()
    for peer in (high, guest, judge):
        await peer.close()


async def test_the_monitor_list_shows_what_is_live_below_the_court(
    make_client: MakeClient, booking: Booking, visit: dict[str, Any]
) -> None:
    judge, guest = await _in_call(make_client, visit)

    async def listed(username: str) -> tuple[int, list[str]]:
        http = await make_client()
        await login(http, username)
        resp = await http.get("/api/v1/monitor/visits")
        body = await resp.json()
        return resp.status, [w["visit"]["id"] for w in body] if resp.status == 200 else []

    assert await listed("judge_high") == (200, [visit["id"]])  # not the one still booked
    assert await listed("admin") == (200, [visit["id"]])
    assert await listed("leader_high") == (200, [visit["id"]])
    assert await listed("po_high") == (200, [visit["id"]])
    assert await listed("po_a") == (200, [])  # the visit's own court is not above it
    assert await listed("judge_b") == (200, [])  # another branch of the tree
    assert (await listed("op_a"))[0] == 403
    page = await make_client()
    await login(page, "judge_high")
    assert (await page.get("/monitor")).status == 200
    await login(page, "leader_high")  # the call page opens for every watching role
    assert (await page.get(f"/call/{visit['id']}?watch=1")).status == 200
    await login(page, "op_a")
    assert (await page.get("/monitor")).status == 403
    for peer in (guest, judge):
        await peer.close()


# ---------------------------------------------------------------- in Chromium


async def test_a_token_for_an_observer_does_not_let_anyone_watch_without_a_login(
    make_client: MakeClient, booking: Booking, visit: dict[str, Any]
) -> None:
    """Tokens made before observers had none: refused, the watcher must log in."""
    judge, guest = await _in_call(make_client, visit)
    http = await make_client()
    tokens = http.server.app[VISITS].tokens
    watcher = Identity(key="user:999", role=ParticipantRole.observer, name="高院法官")
    anyone = await Peer().connect(http)
    answer = await anyone.call(
        "join",
        {"v": 1, "visit_id": visit["id"], "rejoin": tokens.issue(visit["id"], watcher, True)},
    )
    assert answer["error"]["code"] == "unauthenticated", answer
    for peer in (anyone, guest, judge):
        await peer.close()


@pytest.fixture(scope="module")
def watch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = start_live_server(tmp_path_factory.mktemp("watch") / "var")
    yield server
    stop_live_server(server)


def _video(page: Any, kind: str) -> int:
    """framesDecoded (``inbound``) or framesEncoded (``outbound``) of the page's call."""
    return int(
        page.evaluate(
            """async (kind) => {
        let n = 0;
        for (const pc of [window.vrCall.publisher, window.vrCall.subscriber]) {
            if (!pc) continue;
            (await pc.getStats()).forEach((s) => {
                if (s.type === kind + "-rtp" && s.kind === "video")
                    n += (kind === "inbound" ? s.framesDecoded : s.framesEncoded) || 0;
            });
        }
        return n;
    }""",
            kind,
        )
    )


async def _staff(server: Any, court: dict[str, Any], username: str, role: str) -> str:
    """An admin creates a court (if ``court`` names one) and a staff account; its password."""
    password = "Watch-Passw0rd-1"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        csrf = await http_login(http, server, "admin", server.passwords["admin"])
        headers = {"X-CSRF-Token": csrf}
        async with http.get(server.url + "/api/v1/courts") as r:
            courts = {c["code"]: c["id"] for c in await r.json()}
        if court["code"] not in courts:
            body = {**court, "parent_id": courts[court["parent"]]}
            body.pop("parent")
            async with http.post(server.url + "/api/v1/courts", json=body, headers=headers) as r:
                assert r.status == 201, await r.text()
                courts[court["code"]] = (await r.json())["id"]
        user = {
            "username": username,
            "display_name": username,
            "role": role,
            "court_id": courts[court["code"]],
            "password": password,
        }
        async with http.post(server.url + "/api/v1/users", json=user, headers=headers) as r:
            assert r.status == 201, await r.text()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        return await first_login(http, server, username, password)


@pytest.mark.browser
def test_a_high_court_watches_a_basic_courts_visit_in_chromium(
    watch_server: Any, chromium: Any, artifacts: Path
) -> None:
    server = watch_server
    high = {"code": "BJGY", "parent": "SPC"}
    other = {"code": "TJGY", "name": "天津市高级人民法院", "level": "high", "parent": "SPC"}
    watcher_pw = beside_playwright(_staff(server, high, "gaoyuan", "judge"))
    stranger_pw = beside_playwright(_staff(server, other, "tianjin", "judge"))
    visit_id, code = beside_playwright(checked_in_visit(server, server.passwords))

    guest_ctx = chromium.new_context(locale="zh-CN")
    guest = guest_ctx.new_page()
    guest.goto(server.url + f"/join?visit={visit_id}")
    guest.fill("#code-input", code)
    guest.click("#code-submit")
    expect(guest.locator("#lobby-step")).to_be_visible(timeout=30_000)

    async def judge_admits() -> Client:
        judge = await Client().connect(
            server, await staff_cookie(server, "judge", server.passwords["judge"])
        )
        answer = await judge.call("join", {"v": 1, "visit_id": visit_id})
        assert answer["ok"], answer
        waiting = answer["lobby"] or (await asyncio.wait_for(judge.lobby.get(), 30))["waiting"]
        assert (await judge.call("admit", {"participant_id": waiting[0]["participant_id"]}))["ok"]
        await judge.close()  # the call goes on (it ends as abandoned only after minutes)
        return judge

    beside_playwright(judge_admits())
    expect(guest.locator("#call-step")).to_be_visible(timeout=30_000)
    wait_until(lambda: _video(guest, "outbound") > 30, what="the petitioner publishes")

    watch_ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = watch_ctx.new_page()
    page_login(page, server, "gaoyuan", watcher_pw, "/monitor")
    row = page.locator("#live-rows tr", has_text="王某某")
    expect(row).to_contain_text("视频接访")
    row.locator("a", has_text="监看").click()
    page.wait_for_selector("body[data-joined='1']", timeout=60_000)
    expect(page.locator("#who")).to_contain_text("监看")
    wait_until(lambda: _video(page, "inbound") > 30, what="the observer receives video")
    first = _video(page, "inbound")
    wait_until(lambda: _video(page, "inbound") > first + 30, what="frames keep coming")
    assert page.evaluate("() => window.vrCall.publisher") is None  # it sends nothing
    assert _video(page, "outbound") == 0
    shown = "监看：gaoyuan（北京市高级人民法院）"
    expect(guest.locator("#watch-state")).to_have_text(shown, timeout=30_000)
    expect(page.locator("#watch-state")).to_have_text(shown)
    guest.screenshot(path=str(artifacts / "watched-petitioner.png"))
    page.screenshot(path=str(artifacts / "watching.png"))
    page.click("#leave")
    expect(guest.locator("#watch-state")).to_be_hidden(timeout=30_000)

    async def stranger_refused() -> dict[str, Any]:
        peer = await Client().connect(server, await staff_cookie(server, "tianjin", stranger_pw))
        try:
            return await peer.call("join", {"v": 1, "visit_id": visit_id, "watch": True})
        finally:
            await peer.close()

    refused = beside_playwright(stranger_refused())
    assert not refused["ok"] and refused["error"]["code"] == "not_entitled"
    stranger = watch_ctx.request  # logged in as the watcher: log in as the stranger instead
    r = stranger.post(
        server.url + "/api/v1/auth/login", data={"username": "tianjin", "password": stranger_pw}
    )
    assert r.ok
    assert stranger.get(server.url + "/api/v1/monitor/visits").json() == []
    # the call page says why, not a blank page
    refused_page = watch_ctx.new_page()
    refused_page.goto(server.url + f"/call/{visit_id}?watch=1")
    expect(refused_page.locator("#enter-title")).to_have_text("未能进入", timeout=30_000)
    expect(refused_page.locator("#enter-msg")).to_be_visible()
    expect(refused_page.locator("#enter-msg")).not_to_be_empty()
    refused_page.screenshot(path=str(artifacts / "watch-refused.png"))

    admin = chromium.new_context()
    admin.request.post(
        server.url + "/api/v1/auth/login",
        data={"username": "admin", "password": server.passwords["admin"]},
    )

    def watch_audited() -> list[str]:
        items = admin.request.get(
            server.url + "/api/v1/audit", params={"target_id": visit_id}
        ).json()["items"]
        return sorted(i["action"] for i in items if i["action"].startswith("visit.watch_"))

    wait_until(
        lambda: watch_audited() == ["visit.watch_started", "visit.watch_stopped"],
        what="the watch's start and stop audited",
    )
    for ctx in (admin, watch_ctx, guest_ctx):
        ctx.close()
