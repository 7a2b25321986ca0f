"""The live-visit pages in headless Chromium (fake camera and microphone) against a whole
server process: the recording notice from the lobby on, the lobby's layout, the lost-connection
banner and the evidence shown again after a reconnect, a graceful stop with pages connected
and their return to the restarted server, the ended call page, and joining with the code
alone (short link, copy button)."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from recorder.state import RecordingState, VisitRecording, load_state
from tests.conftest import LiveServer, start_live_server, stop_live_server
from tests.helpers import free_port, wait_until
from tests.live import checked_in_visit
from tests.test_browser_archive import _in_thread
from tests.test_browser_visit import _api_login, _video_streams, evidence_image

pytestmark = pytest.mark.browser

__all__ = ["evidence_image"]  # a fixture of this module too

RECORDED = "本次接访将全程录音录像"
NOTICE = "● 正在录音录像"
# the moment each page shows the lost-connection banner, and whether it still claimed to record
WATCH_BANNER = """() => {
    window.__lostAt = null;
    const banner = document.getElementById("conn-state");
    new MutationObserver(() => {
        if (!banner.classList.contains("hidden") && window.__lostAt === null) {
            window.__lostAt = Date.now();
            window.__recordingShownAtLoss =
                !document.getElementById("rec-state").classList.contains("hidden");
        }
    }).observe(banner, { attributes: true });
}"""
# frames decoded of the petitioner's evidence, as received on the judge's current subscription
EVIDENCE_FRAMES = """async () => {
    const video = document.querySelector(".tile.remote.evidence[data-role=petitioner] video");
    const pc = window.vrCall && window.vrCall.subscriber;
    if (!video || !video.srcObject || !pc) return 0;
    const id = video.srcObject.getVideoTracks()[0].id;
    const receiver = pc.getReceivers().find((r) => r.track && r.track.id === id);
    if (!receiver) return 0;
    let n = 0;
    (await receiver.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp") n += s.framesDecoded || 0;
    });
    return n;
}"""


# the petitioner's camera as the judge receives it: the tile, its inbound video statistics,
# and the subscribing connection's transport (selected candidate pair, DTLS state)
CAMERA_TILE = ".tile.remote[data-role=petitioner][data-source=camera]"
CAMERA_STATS = """async () => {
    const video = document.querySelector('CAMERA video');
    const pc = window.vrCall && window.vrCall.subscriber;
    if (!video || !video.srcObject || !pc) return null;
    const id = video.srcObject.getVideoTracks()[0].id;
    const receiver = pc.getReceivers().find((r) => r.track && r.track.id === id);
    if (!receiver) return null;
    const out = { framesDecoded: 0, freezeCount: 0, keyFrames: 0, pli: 0, pair: null, dtls: null };
    (await receiver.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp") {
            out.framesDecoded = s.framesDecoded || 0;
            out.freezeCount = s.freezeCount || 0;
            out.freezes = s.totalFreezesDuration || 0;
            out.keyFrames = s.keyFramesDecoded || 0;
            out.pli = (s.pliCount || 0) + (s.firCount || 0);
        }
        if (s.type === "transport") {
            out.pair = s.selectedCandidatePairId;
            out.dtls = s.dtlsState;
        }
    });
    out.samePc = pc === window.__pc;
    out.sameTile = video === window.__tile;
    out.sameTransport = receiver.transport === window.__transport;
    return out;
}""".replace("CAMERA", CAMERA_TILE)
# keep the judge's subscribing connection, camera tile and transport to compare with later;
# sample the camera's statistics every 100 ms and note when each re-offer is applied
WATCH_CAMERA = (
    """() => {
    window.__cameraStats = """
    + CAMERA_STATS
    + """;
    const pc = window.vrCall.subscriber;
    window.__pc = pc;
    window.__tile = document.querySelector('CAMERA video');
    const id = window.__tile.srcObject.getVideoTracks()[0].id;
    window.__transport = pc.getReceivers().find((r) => r.track && r.track.id === id).transport;
    window.__offers = [];
    const apply = pc.setRemoteDescription.bind(pc);
    pc.setRemoteDescription = (d) => { window.__offers.push(performance.now()); return apply(d); };
    window.__samples = [];
    setInterval(async () => {
        const t = performance.now();
        const s = await window.__cameraStats();
        if (s) window.__samples.push({ t, frames: s.framesDecoded, freezes: s.freezeCount });
    }, 100);
}""".replace("CAMERA", CAMERA_TILE)
)


def _visit(server: LiveServer) -> tuple[str, str]:
    """A visit booked and checked in by the operator: (visit id, the petitioner's code)."""
    return _in_thread(checked_in_visit(server, server.passwords))


def _judge_page(chromium: Any, server: LiveServer, visit_id: str) -> Any:
    ctx = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    _api_login(ctx, server, "judge")
    page = ctx.new_page()
    page.goto(server.url + f"/call/{visit_id}")
    page.wait_for_selector("body[data-joined='1']", timeout=60_000)
    return page


def _guest_page(chromium: Any, server: LiveServer, path: str, width: int = 414) -> Any:
    height = 844 if width < 600 else 720
    ctx = chromium.new_context(locale="zh-CN", viewport={"width": width, "height": height})
    page = ctx.new_page()
    page.goto(server.url + path)
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    return page


def _in_call(chromium: Any, server: LiveServer) -> tuple[str, Any, Any]:
    """The judge's page and the admitted petitioner's page of a new visit."""
    visit_id, code = _visit(server)
    judge = _judge_page(chromium, server, visit_id)
    guest = _guest_page(chromium, server, f"/join?visit={visit_id}")
    guest.fill("#code-input", code)
    guest.click("#code-submit")
    expect(guest.locator("#lobby-step")).to_be_visible(timeout=30_000)
    judge.locator("#lobby-rows button", has_text="准许进入").click()
    expect(guest.locator("#call-step")).to_be_visible(timeout=30_000)
    return visit_id, judge, guest


def _close(*pages: Any) -> None:
    for page in pages:
        page.context.close()


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
def test_lobby_says_the_visit_is_recorded_and_its_message_is_on_screen(
    live_server: LiveServer, chromium: Any, artifacts: Path, width: int
) -> None:
    visit_id, code = _visit(live_server)
    guest = _guest_page(chromium, live_server, f"/join?visit={visit_id}", width)
    expect(guest.locator("#code-step")).to_contain_text(RECORDED)  # before the code, too
    guest.click("#check")
    expect(guest.locator("#check-msg")).to_contain_text("设备正常", timeout=30_000)
    guest.fill("#code-input", code)
    guest.click("#code-submit")
    expect(guest.locator("#lobby-step")).to_be_visible(timeout=30_000)
    guest.screenshot(path=str(artifacts / f"live-lobby-{width}.png"))
    viewport = guest.viewport_size
    assert guest.evaluate("() => window.scrollY") == 0
    for selector in ("#lobby-step h2", "#lobby-notice", "#lobby-step p.muted"):
        box = guest.locator(selector).bounding_box()
        assert box is not None, selector
        assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], (selector, box)
        assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], (selector, box)
    expect(guest.locator("#lobby-notice")).to_have_text(RECORDED + "。")
    _close(guest)


def test_admitted_petitioner_sees_the_recording_notice(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    _, judge, guest = _in_call(chromium, live_server)
    expect(guest.locator("#rec-state")).to_have_text(NOTICE, timeout=10_000)
    expect(judge.locator("#rec-state")).to_have_text(NOTICE, timeout=10_000)
    guest.screenshot(path=str(artifacts / "live-call-petitioner-notice.png"))
    _close(judge, guest)


def test_lost_connection_shows_within_2s_and_evidence_returns_after_reconnect(
    live_server: LiveServer, chromium: Any, artifacts: Path, evidence_image: Path
) -> None:
    _, judge, guest = _in_call(chromium, live_server)
    guest.select_option("#evidence-source", "file")
    guest.set_input_files("#evidence-file", str(evidence_image))
    guest.click("#evidence-show")
    expect(guest.locator("#evidence-msg")).to_have_text("正在向各方出示证据", timeout=30_000)
    wait_until(lambda: judge.evaluate(EVIDENCE_FRAMES) > 10, timeout=60, what="evidence")
    for page in (judge, guest):
        expect(page.locator("#rec-state")).to_have_text(NOTICE, timeout=10_000)
        page.evaluate(WATCH_BANNER)
    judge.evaluate("() => { window.__before = window.vrCall.subscriber; }")

    # the server stops answering (frozen: its connections stay open, nothing comes back)
    stopped = time.time()
    os.kill(live_server.proc.pid, signal.SIGSTOP)
    try:
        for page in (judge, guest):
            lost_at = wait_until(partial(page.evaluate, "() => window.__lostAt"), timeout=10)
            assert lost_at / 1000 - stopped < 2.0, lost_at / 1000 - stopped
            assert page.evaluate("() => window.__recordingShownAtLoss") is False
            expect(page.locator("#conn-state")).to_contain_text("连接中断")
            expect(page.locator("#rec-state")).to_be_hidden()
        expect(guest.locator("#evidence-msg")).to_contain_text("证据暂未出示")
        guest.screenshot(path=str(artifacts / "live-connection-lost-petitioner.png"))
        # both pages give the connection up, then try again by themselves
        wait_until(lambda: not any(p.evaluate("() => vrCall.connected") for p in (judge, guest)))
    finally:
        os.kill(live_server.proc.pid, signal.SIGCONT)

    for page in (judge, guest):
        expect(page.locator("#conn-state")).to_be_hidden(timeout=30_000)
        expect(page.locator("#rec-state")).to_have_text(NOTICE, timeout=30_000)
    # the evidence is published again, and the judge receives it on a new subscription
    expect(guest.locator("#evidence-msg")).to_have_text("正在向各方出示证据", timeout=30_000)
    wait_until(
        lambda: (
            judge.evaluate("() => window.vrCall.subscriber !== window.__before")
            and judge.evaluate(EVIDENCE_FRAMES) > 10
        ),
        timeout=60,
        what="the evidence received again",
    )
    assert sum(1 for n in _video_streams(judge) if n > 0) == 2  # camera and evidence
    judge.screenshot(path=str(artifacts / "live-reconnected-judge.png"))
    _close(judge, guest)


def test_a_short_silence_shows_the_banner_and_clears_it_on_the_same_connection(
    live_server: LiveServer, chromium: Any
) -> None:
    _, judge, guest = _in_call(chromium, live_server)
    expect(judge.locator("#rec-state")).to_have_text(NOTICE, timeout=10_000)
    before = judge.evaluate("() => window.vrCall.me.participant_id")
    os.kill(live_server.proc.pid, signal.SIGSTOP)
    try:
        expect(judge.locator("#conn-state")).to_be_visible(timeout=2_000)
        expect(judge.locator("#rec-state")).to_be_hidden()
    finally:
        os.kill(live_server.proc.pid, signal.SIGCONT)
    # the pings resume before the connection is given up: the server confirms it again
    expect(judge.locator("#conn-state")).to_be_hidden(timeout=10_000)
    expect(judge.locator("#rec-state")).to_have_text(NOTICE)
    assert judge.evaluate("() => window.vrCall.me.participant_id") == before  # no rejoin
    _close(judge, guest)


def test_a_judge_who_closes_the_tab_is_announced_at_once_and_welcomed_back(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    visit_id, judge, guest = _in_call(chromium, live_server)
    expect(guest.locator("#judge-state")).to_be_hidden()
    _close(judge)  # the judge closes the tab
    expect(guest.locator("#judge-state")).to_be_visible(timeout=10_000)
    expect(guest.locator("#judge-state")).to_have_text("法官已离开，请稍候；法官返回后将继续接访")
    guest.screenshot(path=str(artifacts / "live-judge-left.png"))
    back = _judge_page(chromium, live_server, visit_id)
    expect(guest.locator("#judge-state")).to_be_hidden(timeout=30_000)
    expect(guest.locator("#rec-state")).to_have_text(NOTICE)
    _close(back, guest)


def test_ended_visit_call_page_shows_only_that_it_ended(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    _, judge, guest = _in_call(chromium, live_server)
    judge.click("#end")
    expect(guest.locator("#ended-step")).to_be_visible(timeout=30_000)
    _close(guest)
    judge.reload()
    expect(judge.locator("#ended-step")).to_be_visible(timeout=30_000)
    expect(judge.locator("#ended-text")).to_contain_text("已结束")
    expect(judge.locator("#ended-link")).to_have_attribute("href", "/")
    for hidden in ("#call-step", "#lobby-card", "#notes-card", "#rec-state", "#conn-state"):
        expect(judge.locator(hidden)).to_be_hidden()
    judge.screenshot(path=str(artifacts / "live-ended-call.png"))
    judge.click("#ended-link")
    judge.wait_for_url(re.compile(r"/judge$"))
    _close(judge)


def test_invited_lawyer_joins_with_the_code_alone_from_the_copied_short_link(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    visit_id, judge, guest = _in_call(chromium, live_server)
    judge.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    judge.select_option("#invite-form select[name=role]", "lawyer")
    judge.fill("#invite-form input[name=label]", "值班律师张某")
    judge.click("#invite-form button[type=submit]")
    expect(judge.locator("#invite-msg")).to_contain_text("邀请链接", timeout=30_000)
    judge.click("#invite-copy")
    expect(judge.locator("#invite-copy")).to_have_text("已复制")
    copied = judge.evaluate("() => navigator.clipboard.readText()")
    link = re.search(r"http://\S+/j/([A-Z0-9]{8,})", copied)
    assert link is not None, copied
    assert link.group(1) in (judge.text_content("#invite-msg") or "")
    judge.screenshot(path=str(artifacts / "live-invitation.png"))

    # the short link: the join page without the visit, the code filled in
    lawyer = _guest_page(chromium, live_server, link.group(0)[len(live_server.url) :])
    assert lawyer.url == live_server.url + "/join"
    expect(lawyer.locator("#code-input")).to_have_value(link.group(1))
    lawyer.fill("#code-input", "ABCDEFGH23")  # a wrong code first: said so, nothing spent
    lawyer.click("#code-submit")
    expect(lawyer.locator("#code-msg")).to_contain_text("接访码无效", timeout=30_000)
    lawyer.fill("#code-input", link.group(1).lower())
    lawyer.click("#code-submit")
    expect(lawyer.locator("#lobby-step")).to_be_visible(timeout=30_000)
    assert lawyer.url.endswith(f"/join?visit={visit_id}")
    expect(lawyer.locator("#lobby-notice")).to_have_text(RECORDED + "。")
    expect(lawyer.locator("#rec-state")).to_be_hidden()  # not in the call (yet)
    expect(judge.locator("#lobby-rows")).to_contain_text("值班律师张某", timeout=30_000)
    lawyer.screenshot(path=str(artifacts / "live-lawyer-lobby.png"))
    _close(judge, guest, lawyer)


def test_notes_show_the_courts_local_time(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    # a judge whose computer is set to another zone still sees the court's time
    ctx = chromium.new_context(locale="zh-CN", timezone_id="America/New_York")
    _api_login(ctx, live_server, "judge")
    visit_id, _ = _visit(live_server)
    page = ctx.new_page()
    page.goto(live_server.url + f"/call/{visit_id}")
    page.wait_for_selector("body[data-joined='1']", timeout=60_000)
    page.fill("#note-text", "信访人陈述了诉求")
    page.click("#note-form button[type=submit]")
    expect(page.locator("#note-list")).to_contain_text("信访人陈述了诉求")
    shown = re.search(r"\[(\d\d):(\d\d):\d\d\]", page.text_content("#note-list") or "")
    assert shown is not None
    court = time.gmtime(time.time() + 8 * 3600)  # Asia/Shanghai: +08:00, no daylight saving
    minutes = int(shown.group(1)) * 60 + int(shown.group(2))
    assert abs(minutes - (court.tm_hour * 60 + court.tm_min)) % (24 * 60) in (0, 1, 1439)
    ctx.close()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A server of this test alone, on a port it keeps across a restart."""
    state: dict[str, Any] = {"port": free_port(), "data": tmp_path / "var"}
    state["server"] = start_live_server(state["data"], port=state["port"])
    yield state
    if state["server"].proc.poll() is None:
        stop_live_server(state["server"])


def test_sigterm_with_pages_connected_stops_within_5s_and_pages_come_back(
    own_server: dict[str, Any], chromium: Any, artifacts: Path
) -> None:
    server: LiveServer = own_server["server"]
    visit_id, judge, guest = _in_call(chromium, server)
    for page in (judge, guest):
        expect(page.locator("#rec-state")).to_have_text(NOTICE, timeout=10_000)
    folder = server.data_dir / "recordings" / visit_id
    wait_until(lambda: any(t.files for t in (load_state(folder) or _no_state()).tracks))

    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("the server did not stop within 5 s of SIGTERM")
    took = time.monotonic() - started
    assert took < 5.0, took
    assert server.proc.returncode == 0
    state = load_state(folder)
    assert state is not None and state.state is RecordingState.queued  # files closed
    for page in (judge, guest):  # told, not just cut off
        expect(page.locator("#conn-state")).to_contain_text("服务器正在重启")
        expect(page.locator("#rec-state")).to_be_hidden()
    judge.screenshot(path=str(artifacts / "live-server-stopped-judge.png"))
    log = server.log.read_text()
    assert "Traceback" not in log, log

    # a server on the same port again: the pages return into the call by themselves
    own_server["server"] = start_live_server(own_server["data"], port=own_server["port"])
    for page in (judge, guest):
        expect(page.locator("#conn-state")).to_be_hidden(timeout=30_000)
        expect(page.locator("#rec-state")).to_have_text(NOTICE, timeout=30_000)
    expect(judge.locator("#call-msg")).to_contain_text("信访人", timeout=30_000)
    wait_until(lambda: (load_state(folder) or _no_state()).state is RecordingState.recording)
    _close(judge, guest)


def _no_state() -> VisitRecording:
    return VisitRecording(visit_id="")


def test_evidence_shown_and_stopped_renegotiates_without_interrupting_the_camera(
    live_server: LiveServer, chromium: Any, artifacts: Path, evidence_image: Path
) -> None:
    """The petitioner shows a document and stops: the judge's page gets its tile and then
    loses it by re-offers on the same subscribing connection (same RTCPeerConnection, DTLS
    transport and selected candidate pair), while the petitioner's camera keeps being
    decoded: no freeze while a re-offer is applied, no keyframe asked for."""
    _, judge, guest = _in_call(chromium, live_server)
    wait_until(
        lambda: (judge.evaluate(CAMERA_STATS) or {}).get("framesDecoded", 0) > 30,
        timeout=60,
        what="the petitioner's camera at the judge",
    )
    judge.evaluate(WATCH_CAMERA)
    before = judge.evaluate(CAMERA_STATS)
    assert before["pair"] and before["dtls"] == "connected", before

    guest.select_option("#evidence-source", "file")
    guest.set_input_files("#evidence-file", str(evidence_image))
    guest.click("#evidence-show")
    expect(guest.locator("#evidence-msg")).to_have_text("正在向各方出示证据", timeout=30_000)
    wait_until(lambda: judge.evaluate(EVIDENCE_FRAMES) > 10, timeout=60, what="evidence")
    shown = judge.evaluate(CAMERA_STATS)
    judge.screenshot(path=str(artifacts / "live-evidence-renegotiated-judge.png"))

    guest.click("#evidence-stop")
    expect(judge.locator(".tile.remote.evidence")).to_have_count(0, timeout=30_000)
    expect(judge.locator(CAMERA_TILE)).to_have_count(1)
    start = shown["framesDecoded"]
    wait_until(
        lambda: judge.evaluate(CAMERA_STATS)["framesDecoded"] > start + 30,
        timeout=60,
        what="the camera decoded on after the evidence stopped",
    )
    after = judge.evaluate(CAMERA_STATS)
    for state in (shown, after):
        assert state["samePc"] and state["sameTile"] and state["sameTransport"], state
        assert state["pair"] == before["pair"] and state["dtls"] == "connected", state
        assert state["pli"] == before["pli"], (before, state)  # the decoder never lost its way
    offers = judge.evaluate("() => window.__offers")
    assert len(offers) >= 2, offers  # shown, stopped (a participant_left would add one)
    wait_until(
        lambda: judge.evaluate("() => window.__samples.at(-1).t") > max(offers) + 1000,
        what="a second of samples after the last re-offer",
    )
    samples = judge.evaluate("() => window.__samples")
    frames = [s["frames"] for s in samples]
    assert frames == sorted(frames) and before["framesDecoded"] < start < after["framesDecoded"]
    for at in offers:  # from just before a re-offer is applied to 1 s after
        window = [s for s in samples if s["t"] <= at][-1:] + [
            s for s in samples if at < s["t"] <= at + 1000
        ]
        since, until = window[0], window[-1]
        assert until["frames"] > since["frames"], (at, window)
        # a freeze counts when the page itself kept time (its 100 ms sampler ran): on a
        # machine so loaded that the renderer stalls, every video freezes, renegotiated or not
        if max(b["t"] - a["t"] for a, b in itertools.pairwise(window)) < 300:
            assert until["freezes"] == since["freezes"], (at, window)
    _close(judge, guest)


# the page receives video frames and audio samples on its subscribing connection
RECEIVING = """async () => {
    const pc = window.vrCall.subscriber;
    if (!pc) return false;
    let video = 0, audio = 0;
    (await pc.getStats()).forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        if (s.kind === "video") video += s.framesDecoded || 0;
        if (s.kind === "audio") audio += s.totalSamplesReceived || 0;
    });
    return video > 10 && audio > 0;
}"""
NO_CAMERA = """() => {
    navigator.mediaDevices.getUserMedia = () =>
        Promise.reject(new DOMException("Could not start video source", "NotReadableError"));
}"""


def test_a_petitioner_whose_camera_cannot_open_still_sees_and_hears_the_judge(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    """The phone's camera is held by another app: the petitioner is told so in plain words,
    and still receives the judge's picture and voice (receiving does not wait for sending)."""
    visit_id, code = _visit(live_server)
    judge = _judge_page(chromium, live_server, visit_id)
    ctx = chromium.new_context(locale="zh-CN", viewport={"width": 414, "height": 844})
    ctx.add_init_script(f"({NO_CAMERA})()")
    guest = ctx.new_page()
    guest.goto(live_server.url + f"/join?visit={visit_id}")
    guest.wait_for_selector("body[data-ready='1']", timeout=60_000)
    guest.fill("#code-input", code)
    guest.click("#code-submit")
    expect(guest.locator("#lobby-step")).to_be_visible(timeout=30_000)
    judge.locator("#lobby-rows button", has_text="准许进入").click()
    expect(guest.locator("#call-step")).to_be_visible(timeout=30_000)
    expect(guest.locator("#call-msg")).to_contain_text("摄像头或麦克风正被其他程序占用")
    expect(guest.locator(".tile.remote[data-role=judge] video")).to_have_count(1, timeout=30_000)
    wait_until(
        lambda: guest.evaluate(RECEIVING),
        timeout=30,
        what="the judge's picture and voice on the petitioner's page",
    )
    guest.screenshot(path=str(artifacts / "live-petitioner-without-camera.png"))
    _close(judge, guest)


def test_a_call_opened_again_in_another_tab_stops_the_first_and_says_so(
    live_server: LiveServer, chromium: Any, artifacts: Path
) -> None:
    """The judge opens the same call in a second tab: the server hands the call to it and
    closes the first tab's connection, which does not come back by itself; the first tab
    says so, and lets go of its camera and its connections instead of saying 正在重新连接
    for good."""
    visit_id, _ = _visit(live_server)
    first = _judge_page(chromium, live_server, visit_id)
    wait_until(lambda: first.evaluate("() => Boolean(window.vrCall.publisher)"), timeout=30)
    second = _judge_page(chromium, live_server, visit_id)
    expect(first.locator("#ended-step")).to_be_visible(timeout=30_000)
    expect(first.locator("#ended-text")).to_contain_text("本页已停止")
    expect(first.locator("#conn-state")).to_be_hidden()
    assert first.evaluate("() => window.vrCall.publisher.connectionState") == "closed"
    first.screenshot(path=str(artifacts / "live-call-opened-elsewhere.png"))
    expect(second.locator("#call-step")).to_be_visible()
    expect(second.locator("#ended-step")).to_be_hidden()
    _close(first, second)
