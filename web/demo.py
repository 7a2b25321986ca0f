"""Demo data for a first start: a four-level court tree, a reception room, one user per role."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scheduler import service
from scheduler.models import Court, CourtLevel, Role, User
from scheduler.scope import SYSTEM_ACTOR

DEMO_COURTS = [
    ("SPC", "最高人民法院", CourtLevel.supreme, None),
    ("BJGY", "北京市高级人民法院", CourtLevel.high, "SPC"),
    ("BJ1Z", "北京市第一中级人民法院", CourtLevel.intermediate, "BJGY"),
    ("BJHD", "北京市海淀区人民法院", CourtLevel.basic, "BJ1Z"),
]
DEMO_USERS = [
    ("admin", "系统管理员", Role.admin, None),
    ("operator", "海淀法院操作员", Role.operator, "BJHD"),
    ("judge", "一中院接访法官", Role.judge, "BJ1Z"),
    ("archivist", "一中院档案员", Role.archivist, "BJ1Z"),
]


@dataclass(frozen=True)
class DemoAccount:
    username: str
    role: Role
    password: str


def demo_password() -> str:
    return "Vr-" + secrets.token_urlsafe(12)


async def database_is_empty(db: AsyncSession) -> bool:
    courts = await db.scalar(select(func.count()).select_from(Court))
    users = await db.scalar(select(func.count()).select_from(User))
    return not courts and not users


async def create_demo_data(db: AsyncSession, password_min_length: int) -> list[DemoAccount]:
    """Create the demo tree and accounts; returns the generated passwords (shown once)."""
    ids: dict[str, int] = {}
    for code, name, level, parent in DEMO_COURTS:
        court = await service.create_court(
            db,
            SYSTEM_ACTOR,
            code=code,
            name=name,
            level=level,
            parent_id=ids[parent] if parent else None,
        )
        ids[code] = court.id
    await service.create_room(
        db, SYSTEM_ACTOR, court_id=ids["BJHD"], name="第一接访室", location="诉讼服务中心二楼"
    )
    accounts = []
    for username, display, role, court_key in DEMO_USERS:
        password = demo_password()
        await service.create_user(
            db,
            SYSTEM_ACTOR,
            username=username,
            display_name=display,
            role=role,
            court_id=ids[court_key] if court_key else None,
            password=password,
            password_min_length=password_min_length,
        )
        accounts.append(DemoAccount(username=username, role=role, password=password))
    return accounts
