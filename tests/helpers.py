"""Helpers shared by tests: a seeded court tree, logins, free ports, waiting."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import service
from scheduler.cases.words import CaseCategory
from scheduler.models import CourtLevel, IdType, Petition, Role
from scheduler.scope import SYSTEM_ACTOR

PASSWORD = "Test-Passw0rd!"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(
    proc: subprocess.Popen[Any], timeout: float = 10, how: int = signal.SIGTERM
) -> None:
    """Ask ``proc`` to stop (SIGTERM by default), and kill it if it has not within ``timeout``."""
    proc.send_signal(how)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_until(
    predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {what} (last value {last!r})")


@dataclass
class World:
    """Two branches of the court tree, with users of every role.

    supreme ─ high ─ mid_a ─ basic_a
                   └ mid_b ─ basic_b
    """

    courts: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    rooms: dict[str, int] = field(default_factory=dict)


async def seed_world(db: AsyncSession) -> World:
    world = World()
    tree = [
        ("supreme", "最高人民法院", CourtLevel.supreme, None),
        ("high", "某省高级人民法院", CourtLevel.high, "supreme"),
        ("mid_a", "甲市中级人民法院", CourtLevel.intermediate, "high"),
        ("mid_b", "乙市中级人民法院", CourtLevel.intermediate, "high"),
        ("basic_a", "甲市某区人民法院", CourtLevel.basic, "mid_a"),
        ("basic_b", "乙市某区人民法院", CourtLevel.basic, "mid_b"),
    ]
    for key, name, level, parent in tree:
        court = await service.create_court(
            db,
            SYSTEM_ACTOR,
            code=key.upper(),
            name=name,
            level=level,
            parent_id=world.courts[parent] if parent else None,
        )
        world.courts[key] = court.id
    users: list[tuple[str, Role, str | None]] = [
        ("admin", Role.admin, None),
        ("op_a", Role.operator, "basic_a"),
        ("op_b", Role.operator, "basic_b"),
        ("judge_a", Role.judge, "mid_a"),
        ("judge_b", Role.judge, "mid_b"),
        ("arch_a", Role.archivist, "mid_a"),
        ("arch_high", Role.archivist, "high"),
        ("po_a", Role.petition_officer, "basic_a"),
        ("po_high", Role.petition_officer, "high"),
        ("leader_high", Role.leader, "high"),
    ]
    for username, role, court_key in users:
        await add_staff(db, world, username, role, court_key)
    for key in ("basic_a", "basic_b"):
        room = await service.create_room(
            db, SYSTEM_ACTOR, court_id=world.courts[key], name="第一接访室", location=""
        )
        world.rooms[key] = room.id
    return world


async def add_staff(
    db: AsyncSession, world: World, username: str, role: Role, court_key: str | None
) -> int:
    """A staff account (password PASSWORD) of ``world``'s court ``court_key``."""
    user = await service.create_user(
        db,
        SYSTEM_ACTOR,
        username=username,
        display_name=username,
        role=role,
        court_id=world.courts[court_key] if court_key else None,
        password=PASSWORD,
        password_min_length=10,
        temporary=False,
    )
    world.users[username] = user.id
    return user.id


async def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in on ``client`` (its cookie jar keeps the session); returns the CSRF token."""
    resp = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    body = await resp.json()
    assert resp.status == 200, body
    return str(body["csrf_token"])


def browser_login(page: Any, origin: str, username: str, password: str, home: str) -> None:
    """Log a staff member in through the login page and wait until their page is ready."""
    page.goto(origin + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("#login-submit")
    page.wait_for_url(origin + home)
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)


async def wait_for(predicate: Callable[[], Any], within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met")


LOCAL = ZoneInfo("Asia/Shanghai")


def next_weekday(weekday: int, weeks_ahead: int = 1) -> date:
    """A local date on ``weekday`` at least ``weeks_ahead`` weeks from today."""
    today = datetime.now(LOCAL).date()
    return today + timedelta(days=(weekday - today.weekday()) % 7 + 7 * weeks_ahead)


def local_time(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, clock_time(hour, minute), tzinfo=LOCAL)


@dataclass
class Booking:
    """The world plus reception hours, room hours and petitions ready to book."""

    world: World
    petitions: dict[str, int] = field(default_factory=dict)  # "a0".."a9", "b0"
    judge_high: int = 0


async def seed_booking(db: AsyncSession, world: World, petitions_a: int = 10) -> Booking:
    """Every day 08:00–20:00: judges receive (30-minute slots) and both rooms are open."""
    from scheduler import availability

    b = Booking(world=world)
    judge_high = await service.create_user(
        db,
        SYSTEM_ACTOR,
        username="judge_high",
        display_name="高院法官",
        role=Role.judge,
        court_id=world.courts["high"],
        password=PASSWORD,
        password_min_length=10,
        temporary=False,
    )
    b.judge_high = judge_high.id
    for judge_id in (world.users["judge_a"], world.users["judge_b"], judge_high.id):
        for weekday in range(7):
            await availability.add_template(
                db,
                SYSTEM_ACTOR,
                judge_id=judge_id,
                weekday=weekday,
                start_minute=8 * 60,
                end_minute=20 * 60,
                slot_minutes=30,
                valid_from=None,
                valid_until=None,
            )
    for room_id in world.rooms.values():
        for weekday in range(7):
            await availability.add_room_hours(
                db,
                SYSTEM_ACTOR,
                room_id=room_id,
                weekday=weekday,
                start_minute=8 * 60,
                end_minute=20 * 60,
            )
    ids = iter(VALID_IDS)
    for court, count in (("a", petitions_a), ("b", 1)):
        for i in range(count):
            p = await service.create_petitioner(
                db,
                SYSTEM_ACTOR,
                court_id=world.courts[f"basic_{court}"],
                name=f"信访人{court}{i}",
                id_type=IdType.other,
                id_number=f"T{court}{i:04d}{next(ids)}",
                phone="",
            )
            # the bare case a visit is booked for (registration itself: test_cases*)
            petition = Petition(
                court_id=p.court_id,
                petitioner_id=p.id,
                number=f"{court.upper()}-{i}",
                category=CaseCategory.enforcement,
                summary="请求",
            )
            db.add(petition)
            await db.flush()
            b.petitions[f"{court}{i}"] = petition.id
    return b


VALID_IDS = [f"{n:06d}" for n in range(100_000)]


async def query_plans(
    db: AsyncSession, run: Callable[[], Awaitable[Any]], marker: str
) -> list[list[str]]:
    """SQLite's own plan (the EXPLAIN QUERY PLAN lines) of each statement that ``run`` makes
    on ``db``'s engine whose text contains ``marker``, with the parameters it really bound."""
    engine = db.get_bind()
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if marker in statement:
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        await run()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    conn = await db.connection()
    return [
        [row.detail for row in await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + s, tuple(p))]
        for s, p in statements
    ]
