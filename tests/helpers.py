"""Helpers shared by tests: a seeded court tree, logins, free ports, waiting."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import service
from scheduler.models import CourtLevel, Role
from scheduler.scope import SYSTEM_ACTOR

PASSWORD = "Test-Passw0rd!"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value {last!r})")


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
    ]
    for username, role, court_key in users:
        user = await service.create_user(
            db,
            SYSTEM_ACTOR,
            username=username,
            display_name=username,
            role=role,
            court_id=world.courts[court_key] if court_key else None,
            password=PASSWORD,
            password_min_length=10,
        )
        world.users[username] = user.id
    for key in ("basic_a", "basic_b"):
        room = await service.create_room(
            db, SYSTEM_ACTOR, court_id=world.courts[key], name="第一接访室", location=""
        )
        world.rooms[key] = room.id
    return world


async def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in on ``client`` (its cookie jar keeps the session); returns the CSRF token."""
    resp = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    body = await resp.json()
    assert resp.status == 200, body
    return str(body["csrf_token"])


async def wait_for(predicate: Callable[[], Any], within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met")
