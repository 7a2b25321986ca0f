"""Demo data for a first start: a four-level court tree, a reception room, one user per role."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import Settings
from scheduler import availability, service
from scheduler.cases import service as cases
from scheduler.cases.words import CaseCategory, Channel
from scheduler.models import Court, CourtLevel, IdType, Role, User
from scheduler.scope import SYSTEM_ACTOR, Actor

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
    ("officer", "北京高院信访专员", Role.petition_officer, "BJGY"),
    ("leader", "海淀法院院领导", Role.leader, "BJHD"),
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


async def create_demo_data(db: AsyncSession, settings: Settings) -> list[DemoAccount]:
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
    room = await service.create_room(
        db, SYSTEM_ACTOR, court_id=ids["BJHD"], name="第一接访室", location="诉讼服务中心二楼"
    )
    for weekday in range(5):
        await availability.add_room_hours(
            db,
            SYSTEM_ACTOR,
            room_id=room.id,
            weekday=weekday,
            start_minute=8 * 60 + 30,
            end_minute=17 * 60 + 30,
        )
    accounts = []
    for username, display, role, court_key in DEMO_USERS:
        password = demo_password()
        user = await service.create_user(
            db,
            SYSTEM_ACTOR,
            username=username,
            display_name=display,
            role=role,
            court_id=ids[court_key] if court_key else None,
            password=password,
            password_min_length=settings.password_min_length,
            temporary=False,  # accounts for trying the system, not a court's
        )
        accounts.append(DemoAccount(username=username, role=role, password=password))
        if role is Role.operator:
            clerk = Actor(user.id, user.username, role, user.court_id)
        if role is Role.judge:
            for weekday in range(5):
                for start, end in ((9 * 60, 12 * 60), (14 * 60, 17 * 60)):
                    await availability.add_template(
                        db,
                        SYSTEM_ACTOR,
                        judge_id=user.id,
                        weekday=weekday,
                        start_minute=start,
                        end_minute=end,
                        slot_minutes=30,
                        valid_from=None,
                        valid_until=None,
                    )
    # one case registered at the counter as any other (a letter: channel, original case,
    # the triage deadline, its timeline), so a visit can be booked from it at once
    await cases.register(
        db,
        clerk,
        cases.Registration(
            channel=Channel.letter,
            petitioners=[
                cases.PersonIn("王某某", IdType.resident_id, "11010519491231002X", "13800138000")
            ],
            category=CaseCategory.civil_retrial,
            summary="对一审民事判决不服，申请再审。",
            original_numbers=["（2025）京0108民初123号"],
            original_court="北京市海淀区人民法院",
            number="（2026）京0108信1号",
        ),
        settings=settings,
    )
    return accounts
