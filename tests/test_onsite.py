"""On-site receptions (现场接待, 一案一录音视频即时传输): an operator at a window of the basic
court records a walk-in conversation on the case — a visit of kind ``onsite``, in progress at
once, recorded from when the operator's terminal enters, hosted and ended by the operator,
processed and signed like a visit; a walk-in contact and a timeline entry on the case. The
rules are scheduler/lifecycle.py's; the browser test records one in Chromium end to end."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import AuditEvent
from config.db import Database, utcnow
from config.errors import ConflictError, InvalidError, PermissionDeniedError
from config.settings import Settings
from config.vocabulary import ParticipantRole
from recorder.manifest import verify
from recorder.models import Recording, RecordingState
from scheduler import lifecycle
from scheduler.booking import book_visit
from scheduler.cases.models import CaseEvent, Contact
from scheduler.cases.words import Channel, EventKind, VisitKind
from scheduler.housekeeping import housekeeping
from scheduler.lifecycle import Action, may
from scheduler.models import Petition, Role, Visit, VisitEvent, VisitState
from scheduler.onsite import start_onsite
from scheduler.scope import SYSTEM_ACTOR, Actor
from tests.conftest import (
    LiveServer,
    MakeClient,
    launch_chromium,
    start_live_server,
    stop_live_server,
)
from tests.helpers import Booking, local_time, login, next_weekday, wait_for, wait_until
from tests.live import page_login
from tests.media_fixtures import write_counter_y4m
from tests.visits import Peer, _cookie
from web.keys import GATEWAY

BASIC, OTHER_BASIC = 1, 2
OPERATOR = Actor(21, "o", Role.operator, BASIC)
ACTORS = {
    "operator, this court": OPERATOR,
    "operator, other court": Actor(22, "o2", Role.operator, OTHER_BASIC),
    "judge, this court": Actor(11, "j", Role.judge, BASIC),
    "admin": Actor(41, "ad", Role.admin, None),
    "system": SYSTEM_ACTOR,
}
# who may do what to an on-site reception: no judge, no guests; the operator hosts it
TABLE = {
    "operator, this court": "enter end cancel manage",
    "operator, other court": "",
    "judge, this court": "",
    "admin": "end cancel manage watch",
    "system": "end cancel manage",
}


def _onsite() -> Visit:
    return Visit(
        id="0" * 32,
        petition_id=1,
        court_id=BASIC,
        receiving_court_id=BASIC,
        judge_id=None,
        state=VisitState.in_progress,
        kind=VisitKind.onsite,
    )


@pytest.mark.parametrize("who", sorted(TABLE))
def test_an_onsite_reception_has_no_judge_and_its_operator_enters_and_ends_it(who: str) -> None:
    visit, actor = _onsite(), ACTORS[who]
    assert {a.value for a in Action if may(actor, a, visit)} == set(TABLE[who].split())
    role = lifecycle.room_role(actor, visit)
    assert role is (ParticipantRole.operator if "enter" in TABLE[who] else None)


def test_an_onsite_reception_is_recorded_and_held_by_its_operator() -> None:
    onsite, reception = _onsite(), Visit(kind=VisitKind.reception)
    assert lifecycle.starts_recording(ParticipantRole.operator, onsite)
    assert not lifecycle.starts_recording(ParticipantRole.petitioner, onsite)
    assert lifecycle.hosts(ParticipantRole.operator, onsite)
    assert not lifecycle.hosts(ParticipantRole.judge, onsite)
    assert lifecycle.hosts(ParticipantRole.judge, reception)
    assert not lifecycle.hosts(ParticipantRole.operator, reception)


def test_only_an_onsite_reception_begins_in_progress() -> None:
    booked = Visit(id="0" * 32, court_id=BASIC, receiving_court_id=BASIC, kind=VisitKind.reception)
    with pytest.raises(InvalidError):
        lifecycle.begin_onsite(cast(AsyncSession, None), OPERATOR, booked)
    assert booked.state is not VisitState.in_progress  # untouched
    with pytest.raises(PermissionDeniedError):
        lifecycle.begin_onsite(cast(AsyncSession, None), ACTORS["judge, this court"], _onsite())


async def _start(client: Any, csrf: str, **body: Any) -> Any:
    return await client.post("/api/v1/onsite-receptions", json=body, headers={"X-CSRF-Token": csrf})


async def _window_in(make_client: MakeClient, petition: int, window: str) -> tuple[Any, str, Peer]:
    """op_a starts an on-site reception and its window's terminal joins it (as host)."""
    op = await make_client()
    csrf = await login(op, "op_a")
    started = await (await _start(op, csrf, petition_id=petition, window=window)).json()
    visit_id = started["visit"]["id"]
    terminal = await Peer().connect(op, _cookie(op))
    assert (await terminal.call("join", {"v": 1, "visit_id": visit_id}))["ok"]
    return op, visit_id, terminal


async def test_starting_an_onsite_reception_binds_a_walk_in_contact_and_a_timeline_entry(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    w = booking.world
    op = await make_client()
    csrf = await login(op, "op_a")
    petition = booking.petitions["a0"]
    resp = await _start(op, csrf, petition_id=petition, room_id=w.rooms["basic_a"])
    body = await resp.json()
    assert resp.status == 201, body
    visit_id = body["visit"]["id"]
    assert body["visit"]["state"] == "in_progress" and body["window"] == "第一接访室"
    assert body["call_url"] == f"/call/{visit_id}"
    db = Database(migrated)
    try:
        async with db.reader() as s:
            visit = await s.get(Visit, visit_id)
            assert visit is not None and visit.kind is VisitKind.onsite
            assert visit.judge_id is None and visit.court_id == w.courts["basic_a"]
            contact = (
                await s.scalars(select(Contact).where(Contact.petition_id == petition))
            ).one()
            assert contact.channel is Channel.walk_in and contact.visit_id == visit_id
            assert contact.id == body["contact_id"]
            entry = (
                await s.scalars(
                    select(CaseEvent).where(
                        CaseEvent.petition_id == petition, CaseEvent.kind == EventKind.visit
                    )
                )
            ).one()
            assert entry.kind == EventKind.visit.value
            assert entry.detail["link"] == f"/archive/visits/{visit_id}"
            assert entry.detail["visit_id"] == visit_id and entry.actor_name == "op_a"
            case = await s.get(Petition, petition)
            assert case is not None and case.contact_count == 2
            history = (
                await s.scalars(select(VisitEvent).where(VisitEvent.visit_id == visit_id))
            ).one()
            assert (history.from_state, history.to_state) == (None, "in_progress")
            actions = set(
                (
                    await s.scalars(
                        select(AuditEvent.action).where(
                            AuditEvent.target_id.in_([visit_id, str(petition)])
                        )
                    )
                ).all()
            )
            assert {"visit.onsite_started", "case.contact", "case.visit"} <= actions
    finally:
        await db.dispose()


async def test_an_onsite_reception_is_refused_without_a_window_or_outside_the_court(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    w = booking.world
    op = await make_client()
    csrf = await login(op, "op_a")
    petition = booking.petitions["a0"]
    missing = await _start(op, csrf, petition_id=petition)
    assert missing.status == 422
    assert (await missing.json())["error"]["details"][0]["field"] == "window"
    foreign_room = await _start(op, csrf, petition_id=petition, room_id=w.rooms["basic_b"])
    assert foreign_room.status == 404
    foreign_case = await _start(op, csrf, petition_id=booking.petitions["b0"], window="一号窗口")
    assert foreign_case.status == 404
    judge = await make_client()
    judge_csrf = await login(judge, "judge_a")
    assert (await _start(judge, judge_csrf, petition_id=petition, window="一号窗口")).status == 403
    db = Database(migrated)
    try:
        async with db.reader() as s:  # nothing was stored by any refusal
            assert (await s.scalars(select(Visit))).all() == []
            assert (await s.scalars(select(Contact))).all() == []
    finally:
        await db.dispose()


async def test_an_onsite_reception_holds_its_room_like_a_visit_until_it_ends(
    booking: Booking, migrated: Settings
) -> None:
    """No visit is booked into the room while a reception goes on there, no reception starts
    in a room a visit holds then (409 in Chinese), and the room is free once it ends."""
    w = booking.world
    op = Actor(w.users["op_a"], "op_a", Role.operator, w.courts["basic_a"])
    room = w.rooms["basic_a"]
    monday = next_weekday(0, weeks_ahead=-1)  # a past day: a contact is never in the future
    db = Database(migrated)

    async def book(hour: int, minute: int = 0) -> Visit:
        async with db.writer() as s:
            return await book_visit(
                s,
                op,
                migrated,
                petition_id=booking.petitions["a1"],
                receiving_court_id=w.courts["mid_a"],
                judge_id=w.users["judge_a"],
                room_id=room,
                starts_at=local_time(monday, hour, minute),
                now=local_time(monday, 8),
            )

    async def start(hour: int, minute: int = 0) -> Visit:
        async with db.writer() as s:
            started = await start_onsite(
                s,
                op,
                petition_id=booking.petitions["a0"],
                room_id=room,
                window="",
                now=local_time(monday, hour, minute),
            )
            return started.visit

    try:
        reception = await start(10)
        with pytest.raises(ConflictError) as taken:
            await book(10)
        assert taken.value.code == "double_booking"
        assert taken.value.message == "时间冲突：接访室在该时段已有预约"
        # and the other way round: a visit holds the room at 14:00, a reception there waits
        await book(14)
        with pytest.raises(ConflictError) as held:
            await start(14, 10)
        assert held.value.code == "double_booking"
        assert held.value.message == "时间冲突：第一接访室在该时段已有安排"  # by its name
        async with db.writer() as s:  # nothing of the refused reception was stored
            assert (await s.scalars(select(Visit.id).where(Visit.kind == "onsite"))).all() == [
                reception.id
            ]
        # it goes on past its first 30 minutes: housekeeping holds the room on, so a visit
        # at 10:30 is refused too; far from the hold's end nothing is extended
        async with db.writer() as s:
            done = await housekeeping(s, migrated, now=local_time(monday, 10, 5))
            assert done["onsite_extended"] == 0
            done = await housekeeping(s, migrated, now=local_time(monday, 10, 25))
            assert done["onsite_extended"] == 1
            stretched = await s.get(Visit, reception.id)
            assert stretched is not None and stretched.ends_at == local_time(monday, 11)
        with pytest.raises(ConflictError):
            await book(10, 30)
        # a visit booked right after the hold keeps its time: no further extension
        await book(11)
        async with db.writer() as s:
            assert (await housekeeping(s, migrated, now=local_time(monday, 10, 55)))[
                "onsite_extended"
            ] == 0
            stretched = await s.get(Visit, reception.id)
            assert stretched is not None and stretched.ends_at == local_time(monday, 11)
        async with db.writer() as s:
            ongoing = await s.get(Visit, reception.id)
            assert ongoing is not None
            await lifecycle.end_visit(s, op, migrated, ongoing)
        later = await book(10, 30)  # the reception ended: its room is free again
        assert later.room_id == room
    finally:
        await db.dispose()


async def test_the_operator_hosts_the_reception_recording_starts_and_they_end_it(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    op = await make_client()
    csrf = await login(op, "op_a")
    started = await (
        await _start(op, csrf, petition_id=booking.petitions["a0"], window="二号窗口")
    ).json()
    visit_id = started["visit"]["id"]
    judge_http = await make_client()
    await login(judge_http, "judge_a")
    judge = await Peer().connect(judge_http, _cookie(judge_http))
    refused = await judge.call("join", {"v": 1, "visit_id": visit_id})
    assert not refused["ok"] and refused["error"]["code"] == "not_entitled"

    window = await Peer().connect(op, _cookie(op))
    joined = await window.call("join", {"v": 1, "visit_id": visit_id})
    assert joined["ok"] and joined["role"] == "operator"
    assert joined["host"] is True and joined["recording"] is True  # recorded from now on
    gateway = op.server.app[GATEWAY]
    limit = timedelta(minutes=migrated.visit_abandon_minutes)
    assert await gateway.reap_abandoned(utcnow() + 2 * limit) == []  # its host is there
    assert (await window.call("end", {}))["ok"]
    assert (await window.next("ended"))["reason"] == "ended"
    db = Database(migrated)
    try:
        async with db.reader() as s:
            visit = await s.get(Visit, visit_id)
            assert visit is not None and visit.state is VisitState.ended

        async def processed() -> bool:  # nobody published media: signed as empty
            async with db.reader() as s:
                row = await s.get(Recording, visit_id)
                return row is not None and row.state is RecordingState.empty

        await wait_for(processed, within=120)
    finally:
        await db.dispose()
    await judge.close()
    await window.close()


async def test_a_supervising_court_lists_and_watches_an_onsite_reception_and_it_is_audited(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    """监看 covers on-site receptions too: the high court finds the basic court's reception
    in its monitor list, joins it receiving only, the operator's window sees it listed, and
    the watch is audited."""
    _, visit_id, window = await _window_in(make_client, booking.petitions["a0"], "三号窗口")
    high_http = await make_client()
    await login(high_http, "judge_high")
    listed = await (await high_http.get("/api/v1/monitor/visits")).json()
    assert visit_id in [w["visit"]["id"] for w in listed]
    high = await Peer().connect(high_http, _cookie(high_http))
    joined = await high.call("join", {"v": 1, "visit_id": visit_id, "watch": True})
    assert joined["ok"] and joined["role"] == "observer" and joined["host"] is False
    seen = await window.next("participant_joined")
    assert (seen["role"], seen["court"]) == ("observer", "某省高级人民法院")
    refused = await high.call("end", {})
    assert not refused["ok"] and refused["error"]["code"] == "forbidden"
    assert (await high.call("leave", {}))["ok"]
    db = Database(migrated)
    try:

        async def audited() -> bool:
            async with db.reader() as s:
                actions = (
                    await s.scalars(
                        select(AuditEvent.action).where(
                            AuditEvent.target_id == visit_id,
                            AuditEvent.action.like("visit.watch_%"),
                        )
                    )
                ).all()
            return sorted(actions) == ["visit.watch_started", "visit.watch_stopped"]

        await wait_for(audited, within=30)
    finally:
        await db.dispose()
    assert (await window.call("end", {}))["ok"]
    await high.close()
    await window.close()


async def test_an_onsite_reception_left_by_its_operator_ends_as_abandoned(
    make_client: MakeClient, booking: Booking, migrated: Settings
) -> None:
    op, visit_id, window = await _window_in(make_client, booking.petitions["a1"], "三号窗口")
    await window.close()  # the terminal was closed
    gateway = op.server.app[GATEWAY]
    limit = timedelta(minutes=migrated.visit_abandon_minutes)

    async def reaped() -> bool:  # the room notices the disconnect first
        return await gateway.reap_abandoned(utcnow() + limit + timedelta(seconds=1)) == [visit_id]

    await wait_for(reaped)


# ---------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def window_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium with a numbered-frames camera and a tone as the window's microphone."""
    folder = tmp_path_factory.mktemp("window-media")
    video = write_counter_y4m(folder / "camera.y4m")
    audio = folder / "microphone.wav"
    tone = ["-b", "16", str(audio), "synth", "3", "sine", "440"]
    subprocess.run(["sox", "-n", "-r", "48000", "-c", "1", *tone], check=True)
    with sync_playwright() as pw:
        browser = launch_chromium(
            pw,
            f"--use-file-for-fake-video-capture={video}",
            f"--use-file-for-fake-audio-capture={audio}",
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def onsite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_live_server(tmp_path_factory.mktemp("onsite") / "var")
    yield server
    stop_live_server(server)


def _frames_sent(page: Any) -> int:
    return int(
        page.evaluate("""async () => {
        const pc = window.vrCall && window.vrCall.publisher;
        let n = 0;
        if (pc) (await pc.getStats()).forEach((s) => {
            if (s.type === "outbound-rtp" && s.kind === "video") n += s.framesEncoded || 0;
        });
        return n;
    }""")
    )


FFPROBE_TYPES = ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0"]


@pytest.mark.browser
def test_an_operator_records_an_onsite_reception_in_chromium_and_it_is_signed(
    onsite_server: LiveServer, window_browser: Any, artifacts: Path
) -> None:
    server = onsite_server
    ctx = window_browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page_login(page, server, "operator", server.passwords["operator"], "/operator")
    page.click("button[data-tab=tab-petitions]")
    page.locator("#petition-rows button", has_text="现场接待录音录像").first.click()
    page.fill("#action-fields input[name=window]", "诉讼服务中心一号窗口")
    page.click("#action-ok")
    page.wait_for_url("**/call/*", timeout=30_000)
    visit_id = page.url.rsplit("/", 1)[-1]
    page.wait_for_selector("body[data-joined='1']", timeout=60_000)
    expect(page.locator("#rec-state")).to_have_text("● 本次接待全程录音录像", timeout=30_000)
    expect(page.locator("#end")).to_have_text("结束接待")
    expect(page.locator("#end")).to_be_visible()
    expect(page.locator("#lobby-card")).to_be_hidden()  # no remote party, nobody to admit
    expect(page.locator("#self-video")).to_be_visible()
    wait_until(lambda: _frames_sent(page) > 90, timeout=90, what="the window's camera is sent")
    page.screenshot(path=str(artifacts / "onsite-window.png"))
    page.click("#end")
    expect(page.locator("#ended-text")).to_contain_text("现场接待已结束", timeout=30_000)

    # processed and signed like a visit: a composite with sound and picture
    folder = server.data_dir / "recordings" / visit_id

    def signed() -> bool:
        state = page.request.get(server.url + f"/api/v1/visits/{visit_id}").json()
        assert state["recording_state"] != "failed", state["recording_note"]
        return bool(state["recording_state"] == "ready")

    wait_until(signed, timeout=600, interval=1, what="the recording processed and signed")
    assert verify(folder).ok
    kinds = subprocess.run(
        [*FFPROBE_TYPES, str(folder / "composite.mp4")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(kinds) == ["audio", "video"]

    # the case has a walk-in contact with this visit, and a timeline entry linking to it
    with sqlite3.connect(server.data_dir / "vreception.db") as db:
        contacts = db.execute(
            "SELECT channel, visit_id FROM case_contacts WHERE visit_id = ?", (visit_id,)
        ).fetchall()
        links = db.execute(
            "SELECT detail FROM case_events WHERE kind = 'visit' AND detail LIKE ?",
            (f"%{visit_id}%",),
        ).fetchall()
    assert contacts == [("walk_in", visit_id)]
    assert len(links) == 1 and f"/archive/visits/{visit_id}" in links[0][0]
    page.goto(server.url + f"/archive/visits/{visit_id}")  # the link plays for the operator
    expect(page.locator("video").first).to_be_visible(timeout=30_000)
    ctx.close()
