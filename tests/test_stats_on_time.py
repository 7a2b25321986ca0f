"""按期办结率 (on_time_rate) through the real case service: a case closed after the deadline
of the node it was at counts late, whatever closing then does to ``due_at`` (化解: the 回访
deadline a month on; 信访终结 and 导入诉讼程序: none); reopening clears the kept deadline;
migration 0016 recovers it from the timeline for cases closed before it and marks the
stored months stale."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import Database, create_engine, create_sessionmaker, utcnow
from config.settings import Settings
from scheduler.cases import service as cases
from scheduler.cases.words import (
    CaseCategory,
    CaseState,
    CaseTrack,
    Channel,
    HandlingMode,
    Node,
    Procedure,
    ResolutionGround,
    TerminationGround,
)
from scheduler.models import IdType, Petition, Role
from scheduler.scope import SYSTEM_ACTOR, Actor
from scheduler.stats import figures
from scheduler.stats.models import MonthlyFigure, MonthlyRefresh
from tests.helpers import World, seed_world
from web.cli import downgrade, migrate

ADMIN = Actor(user_id=None, username="admin", role=Role.admin, court_id=None)


@pytest.fixture
async def db(migrated: Settings, world: World) -> AsyncIterator[AsyncSession]:
    engine = create_engine(migrated)
    async with create_sessionmaker(engine)() as session:
        yield session
    await engine.dispose()


def staff(world: World, username: str, role: Role, court: str) -> Actor:
    return Actor(
        user_id=world.users[username], username=username, role=role, court_id=world.courts[court]
    )


def officers(world: World) -> tuple[Actor, Actor]:
    """The basic court's petition officer (handles) and the high court's (hands down, ends)."""
    return (
        staff(world, "po_a", Role.petition_officer, "basic_a"),
        staff(world, "po_high", Role.petition_officer, "high"),
    )


async def registered(
    db: AsyncSession,
    world: World,
    settings: Settings,
    number: str,
    occurred_at: datetime | None = None,
) -> int:
    clerk = staff(world, "op_a", Role.operator, "basic_a")
    reg = cases.Registration(
        channel=Channel.letter,
        petitioners=[cases.PersonIn("张三", IdType.resident_id, "110101199003071233")],
        category=CaseCategory.enforcement,
        summary="判决生效两年仍未执行到位",
        original_numbers=[number],
        original_court="甲市某区人民法院",
        occurred_at=occurred_at,
    )
    return (await cases.register(db, clerk, reg, settings=settings)).case.id


async def petition_case(db: AsyncSession, world: World, settings: Settings, number: str) -> int:
    """Registered and triaged as a petition matter at the basic court (handling node)."""
    case_id = await registered(db, world, settings, number)
    basic, _ = officers(world)
    await cases.triage(
        db,
        basic,
        case_id,
        track=CaseTrack.petition,
        mode=HandlingMode.careful,
        responsible_id=world.users["po_a"],
        settings=settings,
    )
    return case_id


async def deadline_passed(db: AsyncSession, case_id: int) -> datetime:
    """The deadline of the case's current node, moved two days into the past."""
    past = utcnow() - timedelta(days=2)
    await db.execute(
        text("UPDATE petitions SET due_at = :d WHERE id = :i"), {"d": past, "i": case_id}
    )
    db.expire_all()
    return past


async def resolve(db: AsyncSession, world: World, settings: Settings, case_id: int) -> Petition:
    basic, _ = officers(world)
    return await cases.resolve(
        db, basic, case_id, ground=ResolutionGround.enforced, settings=settings, remark="已到位"
    )


async def terminate(db: AsyncSession, world: World, settings: Settings, case_id: int) -> Petition:
    _, high = officers(world)
    return await cases.terminate(
        db,
        high,
        case_id,
        ground=TerminationGround.no_new_facts,
        approval="院长 审批",
        settings=settings,
    )


async def on_time(settings: Settings) -> tuple[float, float]:
    """按期办结率 of this month, the whole country, as the dashboard reads it (the monthly
    store recomputed first): (cases closed on time, cases closed)."""
    month = utcnow().astimezone(settings.tz).strftime("%Y-%m")
    database = Database(settings)
    try:
        async with database.reader() as reader:
            scope = await figures.scope_for(reader, ADMIN, None)
            dash = await figures.fresh_dashboard(
                database,
                reader,
                scope,
                figures.parse_period(month, month, settings.tz),
                timedelta(0),
                keys=["on_time_rate"],
            )
    finally:
        await database.dispose()
    cell = dash.result("on_time_rate").total
    assert cell is not None
    return cell.num, cell.den


Closing = Callable[[AsyncSession, World, Settings, int], Awaitable[Petition]]


@pytest.mark.parametrize("close", [resolve, terminate], ids=["resolve", "terminate"])
async def test_a_case_closed_after_its_deadline_counts_late(
    db: AsyncSession, world: World, migrated: Settings, close: Closing
) -> None:
    """Handed down (交办), its feedback deadline passes, then it is closed: late, although
    化解 moves due_at to the 回访 deadline a month on and 信访终结 to none. A case closed
    within its deadline beside it: on time. 1 of 2."""
    _, high = officers(world)
    late = await petition_case(db, world, migrated, "（2024）甲0101执501号")
    await cases.assign(
        db, high, late, to_court_id=world.courts["basic_a"], deadline=None, settings=migrated
    )
    deadline = await deadline_passed(db, late)
    timely = await petition_case(db, world, migrated, "（2024）甲0101执502号")
    running = (await db.get(Petition, timely)).due_at  # type: ignore[union-attr]
    case = await close(db, world, migrated, late)
    await close(db, world, migrated, timely)
    await db.commit()
    assert await on_time(migrated) == (1.0, 2.0)
    assert case.state in (CaseState.resolved, CaseState.terminated)
    assert case.closed_due_at == deadline
    if case.state is CaseState.resolved:
        assert case.due_at is not None and case.due_at > utcnow() + timedelta(days=20)
    else:
        assert case.due_at is None
    assert (await db.get(Petition, timely)).closed_due_at == running  # type: ignore[union-attr]


async def test_a_matter_guided_to_litigation_after_the_triage_deadline_counts_late(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    """A letter that came ten days ago (triage: 3 days) guided to a legal procedure now: the
    node done has no deadline, the triage deadline that ran counts."""
    came = utcnow() - timedelta(days=10)
    case_id = await registered(db, world, migrated, "（2024）甲0101执503号", occurred_at=came)
    basic, _ = officers(world)
    case = await cases.triage(
        db,
        basic,
        case_id,
        track=CaseTrack.litigation,
        procedure=Procedure.enforcement_objection,
        guidance="告知可依法提出执行异议",
        settings=migrated,
    )
    await db.commit()
    assert await on_time(migrated) == (0.0, 1.0)
    assert case.state is CaseState.guided and case.due_at is None
    assert case.closed_due_at == cases.day_end(came + timedelta(days=3), migrated)


async def test_reopening_clears_the_kept_deadline_and_closing_again_keeps_the_new_one(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    _, high = officers(world)
    case_id = await petition_case(db, world, migrated, "（2024）甲0101执504号")
    await deadline_passed(db, case_id)
    await resolve(db, world, migrated, case_id)
    case = await cases.reopen(db, high, case_id, reason="执行款被退回", settings=migrated)
    assert case.state is CaseState.handling
    assert case.closed_at is None and case.closed_due_at is None
    assert case.node is Node.handling and case.due_at is not None
    running = case.due_at
    await db.commit()
    assert await on_time(migrated) == (0.0, 0.0)  # nothing closed this month now
    case = await resolve(db, world, migrated, case_id)
    assert case.closed_due_at == running
    await db.commit()
    assert await on_time(migrated) == (1.0, 1.0)


async def test_migration_recovers_the_deadline_from_the_timeline_and_marks_months_stale(
    backend: Settings,
) -> None:
    """Cases closed through every path the timeline knows: with the column dropped (0015)
    and added again (0016), the backfill finds the deadline the service kept, including
    a deadline counted by a rule changed since; the stored months with 按期办结率 rows are
    marked stale, the others keep their time. SQLite and PostgreSQL."""
    migrated = backend
    engine = create_engine(migrated)
    async with create_sessionmaker(engine)() as db, db.begin():
        world = await seed_world(db)
    basic, high = officers(world)
    soon = (utcnow() + timedelta(days=5, hours=7)).replace(microsecond=123456)
    later = (utcnow() + timedelta(days=9, hours=3)).replace(microsecond=654321)
    async with create_sessionmaker(engine)() as db:
        ids: dict[str, int] = {}

        async def handed_down(name: str, deadline: datetime | None = None) -> int:
            ids[name] = await petition_case(db, world, migrated, f"（2024）甲0101执6{len(ids)}号")
            await cases.assign(
                db,
                high,
                ids[name],
                to_court_id=world.courts["basic_a"],
                deadline=deadline,
                settings=migrated,
            )
            return ids[name]

        # handling (triaged), its rule changed afterwards: the rule of the time counts
        ids["handling"] = await petition_case(db, world, migrated, "（2024）甲0101执600号")
        await cases.set_rule(db, SYSTEM_ACTOR, Node.handling, days=10, remind_days_before=2)
        await resolve(db, world, migrated, ids["handling"])
        # 交办 with a deadline typed
        await resolve(db, world, migrated, await handed_down("assigned", soon))
        # 反馈, then 退回重办 with a new deadline, then 信访终结
        case_id = await handed_down("returned")
        await cases.report(db, basic, case_id, result="已约谈", settings=migrated)
        await cases.review_feedback(
            db, high, case_id, accept=False, remark="未见执行", deadline=later, settings=migrated
        )
        await terminate(db, world, migrated, case_id)
        # 反馈 (review node), ended there
        case_id = await handed_down("reported")
        await cases.report(db, basic, case_id, result="已约谈", settings=migrated)
        await terminate(db, world, migrated, case_id)
        # 审核通过 (handling again), then 化解
        case_id = await handed_down("accepted")
        await cases.report(db, basic, case_id, result="已执行", settings=migrated)
        await cases.review_feedback(db, high, case_id, accept=True, settings=migrated)
        await resolve(db, world, migrated, case_id)
        # 导入诉讼程序 of a letter that came two days ago
        ids["guided"] = await registered(
            db, world, migrated, "（2024）甲0101执700号", occurred_at=utcnow() - timedelta(days=2)
        )
        await cases.triage(
            db,
            basic,
            ids["guided"],
            track=CaseTrack.litigation,
            procedure=Procedure.enforcement_objection,
            guidance="告知可依法提出执行异议",
            settings=migrated,
        )
        # closed, reopened and closed again; closed and reopened (open: nothing kept)
        for name in ("reclosed", "reopened"):
            ids[name] = await handed_down(name)
            await resolve(db, world, migrated, ids[name])
            await cases.reopen(db, high, ids[name], reason="重新办理", settings=migrated)
        await resolve(db, world, migrated, ids["reclosed"])
        await db.commit()
        kept = dict((await db.execute(select(Petition.id, Petition.closed_due_at))).all())
    await engine.dispose()
    assert kept[ids["assigned"]] == soon and kept[ids["returned"]] == later
    assert kept[ids["reopened"]] is None
    assert all(kept[ids[n]] is not None for n in ids if n != "reopened")

    await asyncio.to_thread(downgrade, migrated, "0015")
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            stamp = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
            db.add_all(
                [MonthlyRefresh(month=m, refreshed_at=stamp) for m in ("2025-11", "2025-12")]
            )
            db.add(
                MonthlyFigure(
                    figure="on_time_rate",
                    court_id=world.courts["supreme"],
                    month="2025-11",
                    key="",
                    num=3,
                    den=3,
                )
            )
    finally:
        await engine.dispose()
    # to 0016, whose marking this is (0017 marks every month: the contacts of visits)
    await asyncio.to_thread(migrate, migrated, "0016")

    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db:
            found = dict((await db.execute(select(Petition.id, Petition.closed_due_at))).all())
            refreshed = dict(
                (await db.execute(select(MonthlyRefresh.month, MonthlyRefresh.refreshed_at))).all()
            )
    finally:
        await engine.dispose()
    assert {n: found[i] for n, i in ids.items()} == {n: kept[i] for n, i in ids.items()}
    assert refreshed["2025-11"].year == 1970  # recomputed before it is read again
    assert refreshed["2025-12"] == stamp
