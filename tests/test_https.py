"""HTTPS: the tls_* and proxy settings, ``vreception serve`` speaking TLS itself, and the
server behind a real nginx with config/nginx/vreception.conf (TLS, redirect, socket.io over
WebSocket and long-polling, range requests of a large recording, client addresses)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import sqlite3
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import pytest
import socketio
from aiohttp.test_utils import make_mocked_request

from config.settings import ConfigError, Settings, load_settings
from tests.archive_fixtures import add_visit, signed_recording
from tests.conftest import ROOT, LiveServer, start_live_server, stop_live_server
from tests.helpers import free_port, wait_until
from tests.live import checked_in_visit
from tests.pki import CourtPKI, make_pki
from web.auth import client_address, request_scheme
from web.cli import main

SITE = ROOT / "config" / "nginx" / "vreception.conf"
NGINX = "/usr/sbin/nginx"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> CourtPKI:
    return make_pki(tmp_path_factory.mktemp("pki"), ["court.example"], ["127.0.0.1"])


# ---------------------------------------------------------------- settings


def _tls_env(cert: Path | str, key: Path | str) -> dict[str, str]:
    return {"VRECEPTION_TLS_CERT": str(cert), "VRECEPTION_TLS_KEY": str(key)}


def test_tls_settings_take_a_certificate_and_its_key(pki: CourtPKI) -> None:
    settings = load_settings(env=_tls_env(pki.cert, pki.key))
    assert settings.tls and settings.ssl_context() is not None
    assert settings.node_url == "https://127.0.0.1:8080"
    plain = load_settings(env={})
    assert not plain.tls and plain.ssl_context() is None
    assert plain.node_url == "http://127.0.0.1:8080"


def test_bad_tls_settings_stop_start_up_naming_the_key(pki: CourtPKI, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other", ["other.example"])
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(pki.key), "-aes256", "-passout", "pass:secret"],
        stdout=encrypted.open("wb"),
        check=True,
    )
    cases = [
        ({"VRECEPTION_TLS_CERT": str(pki.cert)}, "'tls_key'", "give both or neither"),
        ({"VRECEPTION_TLS_KEY": str(pki.key)}, "'tls_key'", "give both or neither"),
        (_tls_env(tmp_path / "missing.crt", pki.key), "'tls_cert'", "cannot read"),
        (_tls_env(pki.key, pki.key), "'tls_cert'", "is not a PEM certificate"),
        (_tls_env(pki.cert, tmp_path / "missing.key"), "'tls_key'", "cannot read"),
        (_tls_env(pki.cert, pki.cert), "'tls_key'", "is not a PEM private key"),
        (_tls_env(pki.cert, other.key), "'tls_key'", "is not the private key of tls_cert"),
        (_tls_env(pki.cert, encrypted), "'tls_key'", "is encrypted"),
        ({"VRECEPTION_TRUSTED_PROXIES": '["127.0.0.1", "nginx"]'}, "'trusted_proxies'", "nginx"),
    ]
    for env, key, reason in cases:
        with pytest.raises(ConfigError) as err:
            load_settings(env=env)
        assert key in str(err.value) and reason in str(err.value), (env, str(err.value))


def test_serve_refuses_a_key_that_does_not_match(
    pki: CourtPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    other = make_pki(tmp_path / "other", ["other.example"])
    for name, value in _tls_env(pki.cert, other.key).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VRECEPTION_DATA_DIR", str(tmp_path / "var"))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and "'tls_key'" in err
    assert not (tmp_path / "var").exists()  # stopped before touching anything


def test_cookie_secure_follows_https(pki: CourtPKI) -> None:
    assert load_settings(env={}).cookie_secure is False
    assert load_settings(env=_tls_env(pki.cert, pki.key)).cookie_secure is True
    behind_proxy = {"VRECEPTION_PUBLIC_URL": "https://court.example"}
    assert load_settings(env=behind_proxy).cookie_secure is True
    assert load_settings(env={"VRECEPTION_PUBLIC_URL": "http://n1:8080"}).cookie_secure is False
    told = {**behind_proxy, "VRECEPTION_COOKIE_SECURE": "false"}
    assert load_settings(env=told).cookie_secure is False  # set explicitly: kept
    told = {"VRECEPTION_COOKIE_SECURE": "true"}
    assert load_settings(env=told).cookie_secure is True


def _request(peer: str, headers: dict[str, str]) -> Any:
    """A request that came over a connection from ``peer``."""
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda key, default=None: (
        (peer, 50000) if key == "peername" else default
    )
    return make_mocked_request("GET", "/", headers=headers, transport=transport)


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    settings = Settings(trusted_proxies=["127.0.0.1", "10.1.0.0/16"])
    forged = {"X-Forwarded-For": "198.51.100.66, 192.0.2.10", "X-Forwarded-Proto": "https"}
    # straight from a client: its own address, whatever it writes into the headers
    assert client_address(_request("192.0.2.50", forged), settings) == "192.0.2.50"
    assert request_scheme(_request("192.0.2.50", forged), settings) == "http"
    # through the proxy: the entry the proxy added, not what the client wrote before it
    assert client_address(_request("127.0.0.1", forged), settings) == "192.0.2.10"
    assert request_scheme(_request("127.0.0.1", forged), settings) == "https"
    # two proxies of ours (10.1.x and loopback): past both
    chain = {"X-Forwarded-For": "198.51.100.66, 192.0.2.10, 10.1.2.3"}
    assert client_address(_request("127.0.0.1", chain), settings) == "192.0.2.10"
    # a proxy that adds nothing, or garbage: the proxy's own address
    assert client_address(_request("127.0.0.1", {}), settings) == "127.0.0.1"
    garbage = {"X-Forwarded-For": "not-an-address"}
    assert client_address(_request("127.0.0.1", garbage), settings) == "127.0.0.1"
    # nobody trusted (the default): headers are ignored
    assert client_address(_request("127.0.0.1", forged), Settings()) == "127.0.0.1"


def test_older_trust_forwarded_for_means_a_proxy_on_this_machine() -> None:
    older = load_settings(env={"VRECEPTION_TRUST_FORWARDED_FOR": "true"})
    headers = {"X-Forwarded-For": "192.0.2.10"}
    assert client_address(_request("127.0.0.1", headers), older) == "192.0.2.10"
    assert client_address(_request("192.0.2.99", headers), older) == "192.0.2.99"
    listed = load_settings(
        env={"VRECEPTION_TRUST_FORWARDED_FOR": "true", "VRECEPTION_TRUSTED_PROXIES": "[]"}
    )
    assert [str(n) for n in listed.proxy_networks] == ["127.0.0.1/32", "::1/128"]


# ---------------------------------------------------------------- TLS served by vreception


def _session(tls: ssl.SSLContext, source: str = "127.0.0.1") -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls, local_addr=(source, 0)),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    )


async def _login(
    http: aiohttp.ClientSession, url: str, user: str, password: str, **headers: str
) -> aiohttp.ClientResponse:
    async with http.post(
        url + "/api/v1/auth/login", json={"username": user, "password": password}, headers=headers
    ) as r:
        await r.read()
        return r


async def _socket_accepted(pki: CourtPKI, url: str, origin: str) -> bool:
    async with _session(pki.client_context()) as http:
        client = socketio.AsyncClient(reconnection=False, http_session=http)
        try:
            await client.connect(
                url, headers={"Origin": origin}, transports=["websocket"], wait_timeout=15
            )
        except socketio.exceptions.ConnectionError:
            return False
        await client.disconnect()
        return True


async def test_serve_speaks_https_itself(pki: CourtPKI, tmp_path: Path) -> None:
    server = await asyncio.to_thread(
        start_live_server, tmp_path / "var", _tls_env(pki.cert, pki.key), cafile=pki.ca_cert
    )
    try:
        assert server.url.startswith("https://")
        assert f"listening on {server.url}/" in server.log.read_text()
        async with _session(pki.client_context()) as http:
            r = await _login(http, server.url, "admin", server.passwords["admin"])
            assert r.status == 200
            cookie = r.cookies["vr_session"]
            assert cookie["secure"] and cookie["httponly"]
        # the server's own pages may open socket.io (engine.io alone took them for another
        # origin, being served over HTTPS); other sites' pages may not
        assert await _socket_accepted(pki, server.url, origin=server.url)
        assert not await _socket_accepted(pki, server.url, origin="https://evil.example")
        # plain HTTP to the TLS port gets no page
        port = int(server.url.rsplit(":", 1)[1])
        async with aiohttp.ClientSession() as plain:
            with pytest.raises(aiohttp.ClientError):
                async with plain.get(f"http://127.0.0.1:{port}/readyz") as r:
                    await r.read()
    finally:
        await asyncio.to_thread(stop_live_server, server)


# ---------------------------------------------------------------- behind nginx


@dataclass
class Proxied:
    backend: LiveServer
    url: str  # nginx's HTTPS address
    http_url: str  # nginx's plain HTTP address
    pki: CourtPKI
    nginx_dir: Path

    def audit_address(self, action: str) -> str | None:
        """The address of the newest audit event ``action`` in the backend's database."""
        with sqlite3.connect(self.backend.data_dir / "vreception.db") as db:
            row = db.execute(
                "SELECT address FROM audit_events WHERE action = ? ORDER BY id DESC LIMIT 1",
                (action,),
            ).fetchone()
        return None if row is None else row[0]


def render_site(upstream_port: int, https_port: int, http_port: int, pki: CourtPKI) -> str:
    """config/nginx/vreception.conf with this test's ports and certificate (each line that
    is changed must be there exactly once)."""
    text = SITE.read_text()
    changes = {
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "/etc/vreception/tls/server.crt": str(pki.cert),
        "/etc/vreception/tls/server.key": str(pki.key),
    }
    for old, new in changes.items():
        assert text.count(old) == 1, f"{SITE} no longer has exactly one {old!r}"
        text = text.replace(old, new)
    return text


def _nginx_conf(folder: Path, site: Path) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    temps = "\n".join(
        f"  {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off;\n{user}worker_processes 1;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} info;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n  access_log {folder / 'access.log'};\n{temps}\n  include {site};\n}}\n"
    )


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def proxied(pki: CourtPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """vreception on loopback behind a real nginx with the repository's site file."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: run ./scripts/bootstrap --dev, which installs it")
    folder = tmp_path_factory.mktemp("nginx")
    https_port, http_port = free_port(), free_port()
    url = f"https://127.0.0.1:{https_port}"
    backend = start_live_server(
        folder / "var",
        {
            "VRECEPTION_TRUSTED_PROXIES": '["127.0.0.1"]',
            "VRECEPTION_PUBLIC_URL": url,
            "VRECEPTION_LOGIN_MAX_FAILURES_PER_ADDRESS": "3",
        },
    )
    site = folder / "site.conf"
    upstream = int(backend.url.rsplit(":", 1)[1])
    site.write_text(render_site(upstream, https_port, http_port, pki))
    conf = folder / "nginx.conf"
    conf.write_text(_nginx_conf(folder, site))
    test = subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")],
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stderr
    proc = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            assert proc.poll() is None, (folder / "error.log").read_text()
            return _listening(https_port) and _listening(http_port)

        wait_until(up, timeout=30, what="nginx listening")
        yield Proxied(backend, url, f"http://127.0.0.1:{http_port}", pki, folder)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        stop_live_server(backend)


async def test_plain_http_is_sent_to_https(proxied: Proxied) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(proxied.http_url + "/join?visit=abc", allow_redirects=False) as r,
    ):
        assert r.status == 301
        assert r.headers["Location"] == "https://127.0.0.1/join?visit=abc"


async def test_login_through_nginx_secure_cookie_and_the_clients_address(
    proxied: Proxied,
) -> None:
    password = proxied.backend.passwords["admin"]
    forged = {"X-Forwarded-For": "198.51.100.7"}
    async with _session(proxied.pki.client_context(), source="127.0.0.5") as http:
        r = await _login(http, proxied.url, "admin", password, **forged)
        assert r.status == 200
        cookie = r.cookies["vr_session"]
        assert cookie["secure"] and cookie["httponly"]
        # the server saw the browser's address, as nginx forwarded it: not nginx's own,
        # nor what the browser wrote itself
        assert proxied.audit_address("auth.login") == "127.0.0.5"
        async with http.get(proxied.url + "/api/v1/auth/me") as me:
            assert me.status == 200, await me.text()
    # straight to the server (not through the proxy): the header is not believed
    async with _session(proxied.pki.client_context(), source="127.0.0.3") as direct:
        r = await _login(direct, proxied.backend.url, "admin", password, **forged)
        assert r.status == 200
        assert proxied.audit_address("auth.login") == "127.0.0.3"


async def test_the_servers_figures_pass_nginx_only_for_the_monitoring_server(
    proxied: Proxied,
) -> None:
    """/metrics (visit ids, load, failures) reached every browser through the site file;
    now only the addresses it allows (a Prometheus on this machine)."""
    tls = proxied.pki.client_context()
    async with _session(tls, source="127.0.0.5") as browser:
        async with browser.get(proxied.url + "/metrics") as r:
            assert r.status == 403
        async with browser.get(proxied.url + "/healthz") as ok:
            assert ok.status < 500  # the rest of the site is served as before
    async with _session(tls) as monitoring, monitoring.get(proxied.url + "/metrics") as r:
        assert r.status == 200 and "vreception_" in await r.text()


async def test_login_throttle_counts_each_client_behind_the_proxy(proxied: Proxied) -> None:
    """Three failures from one browser block that browser's address, not nginx's: another
    browser behind the same proxy may still log in."""
    tls = proxied.pki.client_context()
    async with _session(tls, source="127.0.0.6") as guesser, _session(tls, "127.0.0.7") as other:
        for n in range(3):
            r = await _login(guesser, proxied.url, f"nobody{n}", "wrong-password-1")
            assert r.status == 401
            assert proxied.audit_address("auth.login_failed") == "127.0.0.6"
        r = await _login(guesser, proxied.url, "nobody9", "wrong-password-1")
        assert r.status == 429
        r = await _login(other, proxied.url, "operator", proxied.backend.passwords["operator"])
        assert r.status == 200


async def test_calendar_feed_links_use_https_behind_the_proxy(proxied: Proxied) -> None:
    async with _session(proxied.pki.client_context()) as http:
        r = await _login(http, proxied.url, "judge", proxied.backend.passwords["judge"])
        csrf = {"X-CSRF-Token": (await r.json())["csrf_token"]}
        async with http.get(proxied.url + "/api/v1/auth/me") as me:
            judge_id = (await me.json())["id"]
        async with http.post(
            proxied.url + "/api/v1/calendar-feeds",
            json={"kind": "judge", "owner_id": judge_id},
            headers=csrf,
        ) as created:
            assert created.status == 201, await created.text()
            assert (await created.json())["url"].startswith(proxied.url + "/calendar/")


@asynccontextmanager
async def _socket(
    proxied: Proxied, transport: str, cookie: str | None = None
) -> AsyncIterator[tuple[socketio.AsyncClient, dict[str, asyncio.Queue[Any]]]]:
    http = _session(proxied.pki.client_context())
    client = socketio.AsyncClient(reconnection=False, http_session=http)
    events: dict[str, asyncio.Queue[Any]] = {n: asyncio.Queue() for n in ("lobby", "admitted")}
    for name, queue in events.items():
        client.on(name, queue.put, namespace="/visit")
    try:
        await client.connect(
            proxied.url,
            namespaces=["/visit"],
            headers={"Cookie": f"vr_session={cookie}"} if cookie else {},
            transports=[transport],
            wait_timeout=15,
        )
        assert client.transport() == transport
        yield client, events
    finally:
        if transport == "polling":  # without waiting out the pending long poll (25 s)
            await client.eio.disconnect(abort=True)
        else:
            await client.disconnect()
        await http.close()


async def test_socketio_websocket_and_long_polling_through_nginx(proxied: Proxied) -> None:
    """The judge on a WebSocket, the petitioner on long-polling, both through nginx: the
    judge hears of the petitioner in the lobby, the petitioner of being admitted."""
    backend = proxied.backend
    through_nginx = dataclasses.replace(backend, url=proxied.url)
    tls = proxied.pki.client_context()
    visit_id, code = await checked_in_visit(through_nginx, backend.passwords, tls)
    async with _session(proxied.pki.client_context()) as http:
        r = await _login(http, proxied.url, "judge", backend.passwords["judge"])
        cookie = r.cookies["vr_session"].value
    async with (
        _socket(proxied, "websocket", cookie) as (judge, judge_events),
        _socket(proxied, "polling") as (guest, guest_events),
    ):
        joined = await judge.call("join", {"v": 1, "visit_id": visit_id}, "/visit", timeout=30)
        assert joined["ok"], joined
        waiting = await guest.call(
            "join", {"v": 1, "visit_id": visit_id, "code": code}, "/visit", timeout=30
        )
        assert waiting["ok"] and not waiting["admitted"], waiting

        async def lobby_has_guest() -> None:
            while True:
                lobby = await judge_events["lobby"].get()
                if any(p["participant_id"] == waiting["participant_id"] for p in lobby["waiting"]):
                    return

        await asyncio.wait_for(lobby_has_guest(), timeout=30)
        admit = {"participant_id": waiting["participant_id"]}
        assert (await judge.call("admit", admit, "/visit", timeout=30))["ok"]
        await asyncio.wait_for(guest_events["admitted"].get(), timeout=30)


async def _recording_of_size(proxied: Proxied, size: int) -> str:
    """A signed recording in the backend's archive whose composite.mp4 is ``size`` bytes
    (sparse: it takes no disk)."""
    settings = Settings(data_dir=proxied.backend.data_dir)
    with sqlite3.connect(proxied.backend.data_dir / "vreception.db") as db:
        court = dict(db.execute("SELECT code, id FROM courts").fetchall())
        judge = db.execute("SELECT id FROM users WHERE username = 'judge'").fetchone()[0]
    visit_id = await add_visit(
        settings,
        court_id=court["BJHD"],
        receiving_court_id=court["BJ1Z"],
        judge_id=judge,
        number="(2026)京01信访1号",
        petitioner="张某某",
        id_number="110105194912310021",
    )
    folder = await signed_recording(settings, visit_id)
    os.truncate(folder / "composite.mp4", size)
    return visit_id


async def test_playback_range_request_of_a_large_file_through_nginx(proxied: Proxied) -> None:
    size = 3 * 1024**3  # a long visit's composite
    visit_id = await _recording_of_size(proxied, size)
    file_url = f"{proxied.url}/api/v1/recordings/{visit_id}/files/composite.mp4"
    async with _session(proxied.pki.client_context()) as http:
        r = await _login(http, proxied.url, "admin", proxied.backend.passwords["admin"])
        assert r.status == 200
        first, last = size - 1_000_000, size - 1
        async with http.get(file_url, headers={"Range": f"bytes={first}-{last}"}) as part:
            assert part.status == 206, await part.text()
            assert part.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
            assert len(await part.read()) == 1_000_000
        # the whole file streams from the start, nginx holding none of it back
        async with http.get(file_url) as whole:
            assert whole.status == 200
            assert int(whole.headers["Content-Length"]) == size
            assert len(await whole.content.readexactly(4 * 1024 * 1024)) == 4 * 1024 * 1024
        assert not [p for p in (proxied.nginx_dir / "proxy").rglob("*") if p.is_file()]
