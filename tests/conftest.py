"""Fixtures: settings on a temp dir, the app on a test client, and real servers
(redis-server, PostgreSQL, the whole vreception process, headless Chromium)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config.db import create_engine, create_sessionmaker
from config.settings import Settings
from tests.helpers import (
    Booking,
    World,
    free_port,
    seed_booking,
    seed_world,
    stop_process,
    wait_until,
)
from web.app import create_app
from web.cli import migrate

pytest_plugins = ["tests.visits"]  # the booked-visit fixture of the live-visit tests

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
]
# Chromium on Linux takes its interface language from LANGUAGE (with the chromium-l10n
# package): date and time fields read 2026/12/04 14:30, as on a court's zh-CN desktop, not
# 12/04/2026, 02:30 PM. Only the browser gets it: other tools would speak Chinese too.
CHROMIUM_ENV: dict[str, str | float | bool] = {**os.environ, "LANGUAGE": "zh_CN"}


def launch_chromium(
    pw: Any,
    *extra: str,
    base: Sequence[str] = CHROMIUM_ARGS,
    executable: str | Path = CHROMIUM,
    home: Path | None = None,
) -> Any:
    """Debian's Chromium as every test launches it: ``base`` then ``extra`` arguments, the
    interface in Chinese (``CHROMIUM_ENV``); ``executable`` may be a wrapper (one that runs it
    in a network namespace). With Playwright's async API, await what it returns."""
    env = CHROMIUM_ENV if home is None else {**CHROMIUM_ENV, "HOME": str(home)}
    return pw.chromium.launch(executable_path=str(executable), args=[*base, *extra], env=env)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "var")


@pytest.fixture
async def migrated(settings: Settings) -> Settings:
    await asyncio.to_thread(migrate, settings)
    return settings


@pytest.fixture
async def world(migrated: Settings) -> World:
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            return await seed_world(db)
    finally:
        await engine.dispose()


@pytest.fixture
async def booking(migrated: Settings, world: World) -> Booking:
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            return await seed_booking(db, world)
    finally:
        await engine.dispose()


MakeClient = Callable[[], Any]


@pytest.fixture
async def app_server(aiohttp_server: Any, migrated: Settings) -> Any:
    return await aiohttp_server(create_app(migrated))


@pytest.fixture
async def make_client(app_server: Any) -> AsyncIterator[MakeClient]:
    """``await make_client()`` → a TestClient with its own cookie jar on the shared app."""
    clients: list[TestClient] = []

    async def make() -> TestClient:
        new = TestClient(app_server)
        await new.start_server()
        clients.append(new)
        return new

    yield make
    for each in clients:
        await each.close()


@pytest.fixture
async def client(make_client: MakeClient, world: World) -> TestClient:
    return await make_client()


# ---------------------------------------------------------------- real servers


@dataclass
class RedisServer:
    url: str
    port: int


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, without persistence."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: run ./scripts/test, which installs it")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="vr-redis-")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def ping() -> bool:
            try:
                out = subprocess.run(
                    ["redis-cli", "-p", str(port), "ping"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                )
            except (OSError, subprocess.TimeoutExpired):
                return False
            return out.stdout.strip() == "PONG"

        wait_until(ping, timeout=30)
        yield RedisServer(url=f"redis://127.0.0.1:{port}/0", port=port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class PostgresServer:
    url: str
    port: int
    bindir: Path

    def database_url(self, name: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        subprocess.run(
            [
                str(self.bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                name,
            ],
            check=True,
            capture_output=True,
        )
        return self.database_url(name)


def _pg_bindir() -> Path | None:
    base = Path("/usr/lib/postgresql")
    if not base.is_dir():
        return None
    versions = sorted((p for p in base.iterdir() if (p / "bin" / "initdb").exists()), reverse=True)
    return versions[0] / "bin" if versions else None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Migrated settings on SQLite and, second, on a fresh PostgreSQL database: for races
    that only PostgreSQL runs truly in parallel."""
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path)
    else:
        pg: PostgresServer = request.getfixturevalue("postgres_server")
        url = pg.create_database("vr_" + uuid.uuid4().hex[:12])
        settings = Settings(data_dir=tmp_path, database_url=url)
    await asyncio.to_thread(migrate, settings)
    return settings


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL (Debian's package) in a temp dir on a free loopback port."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL is not installed: run ./scripts/test, which installs it")
    port = free_port()
    datadir = Path(tempfile.mkdtemp(prefix="vr-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(datadir, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *as_user,
            str(bindir / "initdb"),
            "-D",
            str(datadir / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [
            *as_user,
            str(bindir / "postgres"),
            "-D",
            str(datadir / "data"),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(datadir),
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def ready() -> bool:
            return (
                subprocess.run(
                    [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                    capture_output=True,
                ).returncode
                == 0
            )

        wait_until(ready, timeout=60)
        yield PostgresServer(
            url=f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres",
            port=port,
            bindir=bindir,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(datadir, ignore_errors=True)


@dataclass
class LiveServer:
    """A whole ``vreception serve --demo`` process."""

    url: str
    passwords: dict[str, str]
    proc: subprocess.Popen[str]
    data_dir: Path
    log: Path


def start_live_server(
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    cafile: Path | None = None,
) -> LiveServer:
    """``cafile``: the server serves HTTPS (its tls_* settings in ``extra_env``) with a
    certificate of that CA, which the readiness check trusts."""
    port = port or free_port()
    env = {
        **os.environ,
        "VRECEPTION_DATA_DIR": str(data_dir),
        "VRECEPTION_HOST": host,
        "VRECEPTION_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
        # pages read the statistics just written, not the stored ones of a minute ago
        "VRECEPTION_STATS_REFRESH_SECONDS": "0",
        **(extra_env or {}),
    }
    log = data_dir.parent / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = log.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "serve", "--demo"],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"{'https' if cafile else 'http'}://{host}:{port}"
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError("server exited:\n" + log.read_text())
        return "listening on" in log.read_text()

    wait_until(up, timeout=120)
    import urllib.request

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5, context=context) as r:  # noqa: S310
                return bool(r.status == 200)
        except OSError:
            return False

    wait_until(healthy, timeout=60)
    passwords = dict(re.findall(r"^\s+\w+\s+(\w+)\s+(Vr-\S+)$", log.read_text(), re.M))
    return LiveServer(url=url, passwords=passwords, proc=proc, data_dir=data_dir, log=log)


def stop_live_server(server: LiveServer) -> None:
    stop_process(server.proc, timeout=20)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_live_server(tmp_path_factory.mktemp("live") / "var")
    yield server
    stop_live_server(server)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (no browser download).

    Module-scoped: sync Playwright runs an event loop in this thread while it is open, which
    must be closed before async tests of other modules run.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run ./scripts/test, which installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        yield browser
        browser.close()


@pytest.fixture
def browser_context(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    yield context
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = ROOT / "var" / "test-artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path
