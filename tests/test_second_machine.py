"""A reception room's terminal on another machine: Chromium in its own network namespace
(its own address, no loopback path to the server) trusts the court CA through its NSS
database, opens the server by its host name over HTTPS, and holds a visit with camera and
microphone; the judge admits from a browser on the server's side. The relay announces the
server's address on that network, and the terminal's media goes to it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import (
    CHROMIUM,
    LiveServer,
    launch_chromium,
    start_live_server,
    stop_live_server,
)
from tests.live import beside_playwright, checked_in_visit
from tests.netns import Namespace, netns_problem, network_namespace, staff_in_call
from tests.pki import CourtPKI, make_pki
from tests.test_browser_visit import _frames_decoded, _wait

pytestmark = pytest.mark.browser

HOST_NAME = "court.example"


@pytest.fixture(scope="module")
def room_network() -> Iterator[Namespace]:
    problem = netns_problem()
    if problem is not None:
        pytest.skip(f"a second machine needs a network namespace: {problem}")
    with network_namespace("vrs") as ns:
        yield ns


@pytest.fixture(scope="module")
def court_pki(room_network: Namespace, tmp_path_factory: pytest.TempPathFactory) -> CourtPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), [HOST_NAME], [room_network.host_address])


@pytest.fixture(scope="module")
def terminal_home(court_pki: CourtPKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home folder whose NSS database (where Chromium on Linux looks for locally trusted
    CAs) trusts the court CA, as on a terminal where the CA was installed."""
    if shutil.which("certutil") is None:
        pytest.fail("certutil is not installed: run ./scripts/bootstrap --dev (libnss3-tools)")
    home = tmp_path_factory.mktemp("terminal-home")
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    for args in (
        ["-N", "--empty-password"],
        ["-A", "-n", "法院根证书 court CA", "-t", "C,,", "-i", str(court_pki.ca_cert)],
    ):
        subprocess.run(["certutil", "-d", f"sql:{db}", *args], check=True, capture_output=True)
    return home


@pytest.fixture(scope="module")
def court_server(
    room_network: Namespace, court_pki: CourtPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """vreception serving HTTPS on the host's address on the room network only."""
    address = room_network.host_address
    server = start_live_server(
        tmp_path_factory.mktemp("court") / "var",
        {
            "VRECEPTION_TLS_CERT": str(court_pki.cert),
            "VRECEPTION_TLS_KEY": str(court_pki.key),
            "VRECEPTION_MEDIA_ANNOUNCED_ADDRESSES": f'["{address}"]',
        },
        host=address,
        cafile=court_pki.ca_cert,
    )
    yield server
    stop_live_server(server)


@dataclass
class Browsers:
    terminal: Any  # Chromium inside the room network's namespace
    judge: Any  # Chromium on the server's side


@pytest.fixture(scope="module")
def browsers(
    room_network: Namespace, terminal_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browsers]:
    resolve = f"--host-resolver-rules=MAP {HOST_NAME} {room_network.host_address}"
    wrapper = room_network.wrapper(
        tmp_path_factory.mktemp("bin") / "chromium-in-room",
        CHROMIUM,
        {"HOME": str(terminal_home)},
    )
    with sync_playwright() as pw:
        terminal = launch_chromium(pw, resolve, executable=wrapper)
        judge = launch_chromium(pw, resolve, home=terminal_home)
        yield Browsers(terminal, judge)
        terminal.close()
        judge.close()


SELECTED_PAIR = """async (which) => {
    const pc = window.vrCall && window.vrCall[which];
    if (!pc) return null;
    const stats = await pc.getStats();
    let pair = null;
    stats.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId) {
            pair = stats.get(s.selectedCandidatePairId);
        }
    });
    const offered = [];
    stats.forEach((s) => { if (s.type === "remote-candidate") offered.push(s.address); });
    if (!pair) return null;
    return {
        local: stats.get(pair.localCandidateId).address,
        remote: stats.get(pair.remoteCandidateId).address,
        offered,
        sent: pair.bytesSent,
        received: pair.bytesReceived,
    };
}"""

AUDIO_PACKETS = """async () => {
    const pc = window.vrCall && window.vrCall.subscriber;
    let n = 0;
    if (pc) (await pc.getStats()).forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "audio") n += s.packetsReceived || 0;
    });
    return n;
}"""


def test_a_terminal_on_another_machine_holds_a_visit_over_https(
    room_network: Namespace, court_server: LiveServer, court_pki: CourtPKI, browsers: Browsers
) -> None:
    port = int(court_server.url.rsplit(":", 1)[1])
    # the terminal reaches the server over the room network only, never over a loopback
    assert room_network.can_connect(room_network.host_address, port)
    assert not room_network.can_connect("127.0.0.1", port)
    origin = f"https://{HOST_NAME}:{port}"
    visit_id, code = beside_playwright(
        checked_in_visit(court_server, court_server.passwords, court_pki.client_context())
    )

    judge_ctx = browsers.judge.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    judge = judge_ctx.new_page()
    staff_in_call(judge, origin, "judge", court_server.passwords["judge"], visit_id)

    room_ctx = browsers.terminal.new_context(locale="zh-CN", viewport={"width": 414, "height": 860})
    guest = room_ctx.new_page()
    guest.goto(origin + f"/join?visit={visit_id}")  # an untrusted certificate stops here
    assert guest.evaluate("window.isSecureContext") is True
    guest.click("#check")
    expect(guest.locator("#check-msg")).to_contain_text("设备正常", timeout=30_000)
    guest.fill("#code-input", code)
    guest.click("#code-submit")
    expect(guest.locator("#lobby-step")).to_be_visible(timeout=30_000)

    expect(judge.locator("#lobby-rows button", has_text="准许进入")).to_be_visible(timeout=30_000)
    judge.locator("#lobby-rows button", has_text="准许进入").click()
    expect(guest.locator("#call-step")).to_be_visible(timeout=30_000)

    # media both ways: each side decodes the other's video; the terminal hears the judge
    _wait(lambda: _frames_decoded(guest) > 30 and _frames_decoded(judge) > 30)
    first = (_frames_decoded(guest), _frames_decoded(judge))
    _wait(lambda: _frames_decoded(guest) > first[0] + 30 and _frames_decoded(judge) > first[1] + 30)
    _wait(lambda: guest.evaluate(AUDIO_PACKETS) > 50)

    # the relay offered the server's address on the room network, and media flows there
    for which in ("publisher", "subscriber"):
        pair = guest.evaluate(SELECTED_PAIR, which)
        assert pair is not None, which
        assert pair["remote"] == room_network.host_address, pair
        assert pair["local"] == room_network.address, pair
        assert set(pair["offered"]) == {room_network.host_address}, pair
        assert pair["sent"] > 0 and pair["received"] > 0, pair

    judge.click("#end")
    expect(guest.locator("#ended-step")).to_be_visible(timeout=30_000)
    room_ctx.close()
    judge_ctx.close()
