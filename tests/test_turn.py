"""TURN (coturn) for terminals behind NAT or a strict firewall.

A real coturn, started here with the shared secret the server holds, checks the credentials
the server issues per participant (the TURN REST API scheme). Then a reception room's
terminal — Chromium in its own network namespace — holds a visit although it has no route to
the relay's media ports, only to the TURN server: its selected candidate pair is relayed. In
the second case the TURN server takes no UDP from clients (as behind a firewall that drops
UDP) and the visit still holds, over TCP to TURN.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioice.stun
import aioice.turn
import pytest
from playwright.sync_api import expect, sync_playwright

from config.settings import ConfigError, load_settings
from config.turn import IceServers, turn_credentials
from tests.conftest import (
    CHROMIUM,
    LiveServer,
    launch_chromium,
    start_live_server,
    stop_live_server,
)
from tests.helpers import free_port, stop_process, wait_until
from tests.live import checked_in_visit
from tests.netns import Namespace, netns_problem, network_namespace, staff_in_call
from tests.test_browser_visit import _frames_decoded, _wait

SECRET = "court-turn-secret-" + secrets.token_hex(8)
TURNSERVER = "/usr/bin/turnserver"


# ------------------------------------------------------------------ credentials and settings


def test_credentials_follow_the_turn_rest_scheme_and_expire_after_the_ttl() -> None:
    servers = IceServers(
        ["stun:stun.court:3478"], ["turn:turn.court:3478"], SECRET, 600, clock=lambda: 1000.0
    )
    stun, turn = servers.issue("code:42")
    assert stun.public() == {"urls": ["stun:stun.court:3478"]}
    assert turn.username == "1600:code:42"
    assert turn.credential == turn_credentials(SECRET, "code:42", 1600)[1]
    # each participant its own credential; the secret itself is never handed out
    other = servers.issue("user:7")[1]
    assert other.username == "1600:user:7" and other.credential != turn.credential
    assert SECRET not in repr(servers) and SECRET not in str(turn.public())


def test_a_plain_turn_url_is_offered_over_udp_and_over_tcp() -> None:
    servers = IceServers(
        (), ["turn:turn.court:3478", "turns:turn.court:5349?transport=tcp"], SECRET
    )
    assert servers.issue("user:1")[0].urls == (
        "turn:turn.court:3478?transport=udp",
        "turn:turn.court:3478?transport=tcp",
        "turns:turn.court:5349?transport=tcp",
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"VRECEPTION_TURN_URLS": '["turn:turn.court:3478"]'}, "static-auth-secret"),
        (
            {"VRECEPTION_TURN_URLS": '["http://turn.court"]', "VRECEPTION_TURN_SECRET": SECRET},
            "is not a TURN URL",
        ),
        (
            {
                "VRECEPTION_TURN_URLS": '["turns:turn.court:5349?transport=udp"]',
                "VRECEPTION_TURN_SECRET": SECRET,
            },
            "TLS",
        ),
        (
            {
                "VRECEPTION_TURN_URLS": '["turn:turn.court"]',
                "VRECEPTION_TURN_SECRET": "short-secret",
            },
            "at least 16",
        ),
        ({"VRECEPTION_MEDIA_ICE_SERVERS": '["turn:turn.court:3478"]'}, "go in turn_urls"),
        ({"VRECEPTION_TURN_TTL_SECONDS": "5"}, "turn_ttl_seconds"),
    ],
)
def test_bad_turn_settings_stop_start_up_with_a_clear_message(
    env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env=env)
    assert expected in str(caught.value)
    assert env.get("VRECEPTION_TURN_SECRET", SECRET) not in str(caught.value)


def test_the_turn_secret_is_never_shown_with_the_settings() -> None:
    settings = load_settings(
        env={"VRECEPTION_TURN_URLS": '["turn:turn.court"]', "VRECEPTION_TURN_SECRET": SECRET}
    )
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    assert settings.ice_servers().issue("user:1")[0].credential


# ------------------------------------------------------------------------- a real coturn


@dataclass
class Coturn:
    address: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path


@contextmanager
def coturn(
    folder: Path,
    address: str,
    *,
    udp: bool = True,
    peers: tuple[str, ...] = ("127.0.0.1",),
    denied: tuple[str, ...] = (),
) -> Iterator[Coturn]:
    """coturn on ``address`` with the shared secret, relaying from 127.0.0.1 to ``peers``
    only (coturn refuses loopback peers unless told); ``udp=False``: clients reach it over
    TCP only."""
    if not Path(TURNSERVER).exists():
        pytest.fail("coturn is not installed: run ./scripts/bootstrap --dev")
    port = free_port()
    first = random.randrange(50000, 59000, 100)
    conf = folder / f"turnserver-{port}.conf"
    log = folder / f"turnserver-{port}.log"
    lines = [
        f"listening-ip={address}",
        f"listening-port={port}",
        "relay-ip=127.0.0.1",
        f"min-port={first}",
        f"max-port={first + 99}",
        "use-auth-secret",
        f"static-auth-secret={SECRET}",
        "realm=court.test",
        "no-cli",
        "no-tls",
        "no-dtls",
        "no-multicast-peers",
        "allow-loopback-peers",
        f"pidfile={folder / f'turnserver-{port}.pid'}",
        f"log-file={log}",
        "simple-log",
        "verbose",
        *(f"allowed-peer-ip={p}" for p in peers),
        *(f"denied-peer-ip={p}" for p in denied),
        *([] if udp else ["no-udp"]),
    ]
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [TURNSERVER, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )

    def listening() -> bool:
        assert proc.poll() is None, log.read_text() if log.exists() else "coturn exited"
        try:
            socket.create_connection((address, port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        wait_until(listening, timeout=30, what="coturn listening")
        yield Coturn(address, port, proc, log)
    finally:
        stop_process(proc)


async def _allocate(server: Coturn, username: str, password: str) -> bool:
    """Whether coturn grants a relayed address for these credentials."""
    try:
        transport, _protocol = await aioice.turn.create_turn_endpoint(
            asyncio.DatagramProtocol,
            server_addr=(server.address, server.port),
            username=username,
            password=password,
            transport="tcp",
        )
    except aioice.stun.TransactionFailed:
        return False
    transport.close()
    return True


def test_coturn_accepts_the_issued_credentials_and_refuses_expired_or_forged_ones(
    tmp_path: Path,
) -> None:
    with coturn(tmp_path, "127.0.0.1") as server:
        fresh = IceServers((), [f"turn:127.0.0.1:{server.port}"], SECRET, 600).issue("code:1")[0]
        expired = IceServers(
            (), ["turn:127.0.0.1"], SECRET, 600, clock=lambda: 1_000_000_000.0
        ).issue("code:1")[0]
        forged = IceServers((), ["turn:127.0.0.1"], "not-the-court-secret", 600).issue("code:1")
        assert fresh.username and fresh.credential and expired.username and expired.credential
        assert forged[0].username and forged[0].credential
        assert asyncio.run(_allocate(server, fresh.username, fresh.credential))
        assert not asyncio.run(_allocate(server, expired.username, expired.credential))
        assert not asyncio.run(_allocate(server, forged[0].username, forged[0].credential))


# ------------------------------------------------------- a terminal that needs TURN for media

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
    if (!pair) return null;
    const local = stats.get(pair.localCandidateId);
    const offered = [];
    stats.forEach((s) => {
        if (s.type === "remote-candidate") offered.push([s.candidateType, s.address]);
    });
    return {
        type: local.candidateType,
        protocol: local.relayProtocol || null,
        nominated: pair.nominated,
        sent: pair.bytesSent,
        received: pair.bytesReceived,
        offered,
    };
}"""


@pytest.fixture(scope="module")
def room_network() -> Iterator[Namespace]:
    problem = netns_problem()
    if problem is not None:
        pytest.skip(f"a terminal behind TURN needs a network namespace: {problem}")
    with network_namespace("vrt") as ns:
        yield ns


@contextmanager
def court_server(folder: Path, ns: Namespace, turn: Coturn) -> Iterator[LiveServer]:
    """vreception on the room network's host address; its relay announces only 127.0.0.1,
    which the terminal cannot reach (its namespace has a loopback of its own)."""
    server = start_live_server(
        folder / "var",
        {
            "VRECEPTION_TURN_URLS": f'["turn:{turn.address}:{turn.port}"]',
            "VRECEPTION_TURN_SECRET": SECRET,
            "VRECEPTION_MEDIA_ANNOUNCED_ADDRESSES": '["127.0.0.1"]',
        },
        host=ns.host_address,
    )
    try:
        yield server
    finally:
        stop_live_server(server)


def _hold_visit(ns: Namespace, server: LiveServer, folder: Path) -> dict[str, Any]:
    """A visit between the terminal (in the namespace) and the judge (on the server's side);
    returns the terminal's selected pair of its publishing and subscribing connections."""
    origin = server.url
    # camera and microphone need a secure context: plain HTTP to a court address is one here
    secure = f"--unsafely-treat-insecure-origin-as-secure={origin}"
    visit_id, code = asyncio.run(checked_in_visit(server, server.passwords))
    wrapper = ns.wrapper(folder / "chromium-in-room", CHROMIUM)
    with sync_playwright() as pw:
        terminal = launch_chromium(pw, secure, executable=wrapper)
        judge_browser = launch_chromium(pw, secure)
        try:
            judge = judge_browser.new_context(locale="zh-CN").new_page()
            staff_in_call(judge, origin, "judge", server.passwords["judge"], visit_id)

            guest = terminal.new_context(locale="zh-CN").new_page()
            guest.goto(origin + f"/join?visit={visit_id}")
            guest.fill("#code-input", code)
            guest.click("#code-submit")
            admit = judge.locator("#lobby-rows button", has_text="准许进入")
            expect(admit).to_be_visible(timeout=30_000)
            admit.click()
            expect(guest.locator("#call-step")).to_be_visible(timeout=30_000)

            # the terminal was given TURN with credentials of its own
            servers = guest.evaluate("window.vrCall.me.ice_servers")
            assert any(u.startswith("turn:") for s in servers for u in s["urls"]), servers
            assert re.fullmatch(r"\d+:code:\S+", servers[-1]["username"]), servers
            # media both ways, and on and on
            _wait(lambda: _frames_decoded(guest) > 30 and _frames_decoded(judge) > 30)
            first = (_frames_decoded(guest), _frames_decoded(judge))
            _wait(
                lambda: (
                    _frames_decoded(guest) > first[0] + 30
                    and _frames_decoded(judge) > first[1] + 30
                )
            )
            pairs = {w: guest.evaluate(SELECTED_PAIR, w) for w in ("publisher", "subscriber")}
            judge.click("#end")
            expect(guest.locator("#ended-step")).to_be_visible(timeout=30_000)
            return pairs
        finally:
            terminal.close()
            judge_browser.close()


def _no_route_to_the_relay(pairs: dict[str, Any]) -> None:
    for which, pair in pairs.items():
        assert pair is not None, which
        # the relay offered only host addresses the terminal cannot reach, yet media flows
        hosts = {address for kind, address in pair["offered"] if kind == "host"}
        assert hosts == {"127.0.0.1"}, pair
        assert pair["type"] == "relay" and pair["nominated"], pair
        assert pair["sent"] > 0 and pair["received"] > 0, pair


@pytest.mark.browser
def test_a_terminal_without_a_route_to_the_relay_holds_a_visit_through_turn(
    room_network: Namespace, tmp_path: Path
) -> None:
    ns = room_network
    with (
        coturn(tmp_path, ns.host_address, denied=(ns.address,)) as turn,
        court_server(tmp_path, ns, turn) as server,
    ):
        pairs = _hold_visit(ns, server, tmp_path)
    _no_route_to_the_relay(pairs)
    assert {pair["protocol"] for pair in pairs.values()} == {"udp"}, pairs
    # the relay got a relayed address of its own, with the credentials the server issued it
    for pair in pairs.values():
        assert any(kind == "relay" for kind, _ in pair["offered"]), pair


@pytest.mark.browser
def test_with_udp_blocked_the_visit_holds_over_tcp_to_turn(
    room_network: Namespace, tmp_path: Path
) -> None:
    ns = room_network
    with (
        coturn(tmp_path, ns.host_address, udp=False, denied=(ns.address,)) as turn,
        court_server(tmp_path, ns, turn) as server,
    ):
        pairs = _hold_visit(ns, server, tmp_path)
    _no_route_to_the_relay(pairs)
    assert {pair["protocol"] for pair in pairs.values()} == {"tcp"}, pairs
