"""The ``vreception`` command: serve --demo on a fresh data dir, create-user, migrate."""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web as aiohttp_web

from config.settings import Settings
from recorder import manifest
from tests.conftest import ROOT, start_live_server, stop_live_server
from web import cli


def _post(url: str, body: dict[str, str]) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(  # noqa: S310
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_serve_demo_then_restart_keeps_data(tmp_path: Path) -> None:
    data = tmp_path / "var"
    server = start_live_server(data)
    try:
        assert set(server.passwords) == {
            "admin",
            "operator",
            "judge",
            "archivist",
            "officer",
            "leader",
        }
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as r:  # noqa: S310
            assert json.loads(r.read()) == {"status": "ok"}
        status, me = _post(
            server.url + "/api/v1/auth/login",
            {"username": "judge", "password": server.passwords["judge"]},
        )
        assert status == 200 and me["role"] == "judge"
    finally:
        stop_live_server(server)
    # the demo case is registered as any other: a letter with its original case, at triage
    # with the rule's deadline, its registration on the timeline
    with sqlite3.connect(data / "vreception.db") as con:
        (channel, node, due, original), *more = con.execute(
            "SELECT channel, node, due_at, original_court FROM petitions"
        ).fetchall()
        kinds = [k for (k,) in con.execute("SELECT kind FROM case_events ORDER BY id")]
    assert not more and (channel, node, original) == ("letter", "triage", "北京市海淀区人民法院")
    assert due is not None and kinds == ["registered", "contact"]
    again = start_live_server(data)
    try:
        assert again.passwords == {}  # demo data is created once, on an empty database
        assert "demo data skipped" in again.log.read_text()
        status, _ = _post(
            again.url + "/api/v1/auth/login",
            {"username": "admin", "password": server.passwords["admin"]},
        )
        assert status == 200
    finally:
        stop_live_server(again)


def test_migrate_and_create_user(tmp_path: Path) -> None:
    env = {"VRECEPTION_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "web.cli", *a],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = run("migrate")
    assert out.returncode == 0 and "up to date" in out.stdout, out.stderr
    out = run("create-user", "--username", "root", "--role", "admin")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "password (shown once): Vr-" in out.stdout
    out = run("create-user", "--username", "root", "--role", "admin", "--password", "Another-pw-1")
    assert out.returncode == 2 and "已被使用" in out.stdout
    out = run(
        "create-user",
        "--username",
        "op",
        "--role",
        "operator",
        "--court",
        "NOPE",
        "--password",
        "Another-pw-1",
    )
    assert out.returncode == 2 and "no court" in out.stdout


def test_serve_freezes_what_start_up_loaded_once_every_start_up_step_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector is kept off start-up's objects (gc.freeze), after the other start-up
    steps, so a full collection under load is a short pause, not 100+ ms."""
    started: list[aiohttp_web.Application] = []
    monkeypatch.setattr(aiohttp_web, "run_app", lambda app, **_: started.append(app))
    assert cli._serve(Settings(data_dir=tmp_path), demo=False) == 0
    (app,) = started
    assert list(app.on_startup)[-1] is cli._settle_heap
    try:
        asyncio.run(cli._settle_heap(app))
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_serve_hands_the_gil_to_sqlite_threads_within_half_a_millisecond(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read run on a connection's thread takes the GIL back for every row it steps: with
    Python's 5 ms default each row waited behind the busy event loop (the board's reads)."""
    seen: list[float] = []
    monkeypatch.setattr(
        aiohttp_web, "run_app", lambda app, **_: seen.append(sys.getswitchinterval())
    )
    before = sys.getswitchinterval()
    try:
        assert cli._serve(Settings(data_dir=tmp_path), demo=False) == 0
    finally:
        sys.setswitchinterval(before)
    assert seen == [pytest.approx(0.0005)]


class _Stopped(Exception):
    pass


def test_serve_waits_for_a_database_that_does_not_answer_yet(tmp_path: Path) -> None:
    """PostgreSQL on another machine still booting: start-up tries the database again every
    few seconds instead of exiting (systemd gave up after a minute, and the node stayed
    down); an error that is not about reaching the database still stops it at once."""
    from tests.helpers import free_port

    down = Settings(
        data_dir=tmp_path / "var",
        database_url=f"postgresql+asyncpg://vreception@127.0.0.1:{free_port()}/vreception",
    )
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise _Stopped

    with pytest.raises(_Stopped):
        cli.migrate_when_up(down, sleep=sleep)
    assert waits == [cli.DATABASE_RETRY_SECONDS] * 3
    (tmp_path / "file").write_text("")
    broken = Settings(data_dir=tmp_path / "file" / "var")  # not a folder: no retry
    with pytest.raises(OSError):
        cli.migrate_when_up(broken, sleep=sleep)
    assert len(waits) == 3


class _Started(Exception):
    pass


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_with_redis_serve_and_worker_refuse_to_start_without_the_shared_keys(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    """Several machines: a secret or a signing key made by one of them for itself would
    differ from the others' (codes, CSRF and rejoin tokens refused on the next node, the
    worker's signatures failing verification), so none is made; the start is refused."""

    def started(*_: object, **__: object) -> int:
        raise _Started

    monkeypatch.setattr(cli, "_serve", started)
    monkeypatch.setattr(cli, "migrate", started)  # the worker's first step
    data = tmp_path / "var"
    monkeypatch.setenv("VRECEPTION_DATA_DIR", str(data))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    for name in ("VRECEPTION_REDIS_URL", "VRECEPTION_SECRET_KEY", "VRECEPTION_CONFIG"):
        monkeypatch.delenv(name, raising=False)

    assert cli.main([command]) == 2
    said = capsys.readouterr().err
    assert "secret_key" in said and "签名密钥" in said and "signing key" in said
    assert not (data / "secret.key").exists() and not (data / "signing-key.pem").exists()

    monkeypatch.setenv("VRECEPTION_SECRET_KEY", "k" * 40)  # the secret, still no signing key
    assert cli.main([command]) == 2
    said = capsys.readouterr().err
    assert "secret_key" not in said and "vreception public-key" in said

    manifest.load_signing_key(data)  # copied from the first machine
    with pytest.raises(_Started):
        cli.main([command])


def test_embedded_serve_starts_without_configured_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One machine makes its own secret.key (and signing key) on first use, as before."""
    monkeypatch.setattr(cli, "_serve", lambda settings, demo: 0)
    monkeypatch.setenv("VRECEPTION_DATA_DIR", str(tmp_path / "var"))
    for name in ("REDIS_URL", "VRECEPTION_REDIS_URL", "VRECEPTION_SECRET_KEY", "VRECEPTION_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["serve"]) == 0
