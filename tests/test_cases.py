"""Petition cases through the service: registration (有录必全, 重复访), triage, assignment,
the deadline scan, closing and follow-up, and the rules as a table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import create_engine, create_sessionmaker, utcnow
from config.errors import ConflictError, InvalidError, PermissionDeniedError
from config.settings import Settings
from scheduler.cases import service as cases
from scheduler.cases.models import Assignment, CaseEvent, FollowUp
from scheduler.cases.rules import CaseAction, Standing, may, next_state
from scheduler.cases.words import (
    CaseCategory,
    CaseState,
    CaseTrack,
    Channel,
    FollowUpResult,
    HandlingMode,
    Node,
    ResolutionGround,
    TerminationGround,
)
from scheduler.models import CourtLevel, IdType, Notification, Role
from scheduler.scope import SYSTEM_ACTOR, Actor
from tests.helpers import World, add_staff, query_plans

ID_A = "110101199003071233"


@pytest.fixture
async def db(migrated: Settings, world: World) -> AsyncIterator[AsyncSession]:
    engine = create_engine(migrated)
    async with create_sessionmaker(engine)() as session:
        async with session.begin():
            await add_staff(session, world, "po_mid", Role.petition_officer, "mid_a")
        yield session
    await engine.dispose()


def actor(world: World, username: str, role: Role, court: str | None) -> Actor:
    return Actor(
        user_id=world.users[username],
        username=username,
        role=role,
        court_id=world.courts[court] if court else None,
    )


def letter(numbers: list[str], **over: object) -> cases.Registration:
    reg = cases.Registration(
        channel=Channel.letter,
        petitioners=[cases.PersonIn("张三", IdType.resident_id, ID_A, "13800138000")],
        category=CaseCategory.enforcement,
        summary="判决生效两年仍未执行到位",
        original_numbers=numbers,
        original_court="甲市某区人民法院",
    )
    for k, v in over.items():
        setattr(reg, k, v)
    return reg


async def test_an_incomplete_record_is_refused_naming_every_missing_field(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    clerk = actor(world, "op_a", Role.operator, "basic_a")
    incomplete = letter([], channel=None, summary=" ", original_court="")
    with pytest.raises(InvalidError) as err:
        await cases.register(db, clerk, incomplete, settings=migrated)
    assert err.value.code == "incomplete_record"
    assert err.value.details == {"fields": ["来源渠道", "信访诉求", "原案号", "原审法院"]}
    assert "来源渠道" in err.value.message and "原审法院" in err.value.message


async def test_a_second_contact_about_the_same_matter_is_linked_as_a_repeat(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    clerk = actor(world, "op_a", Role.operator, "basic_a")
    first = await cases.register(db, clerk, letter(["（2024）甲0101执123号"]), settings=migrated)
    again = await cases.register(
        db, clerk, letter(["(2024)甲0101执123号"], channel=Channel.walk_in), settings=migrated
    )
    assert not first.linked and again.linked
    assert again.case.id == first.case.id
    await db.refresh(first.case)
    assert first.case.contact_count == 2 and again.contact.repeat
    kinds = (
        await db.scalars(select(CaseEvent.kind).where(CaseEvent.petition_id == first.case.id))
    ).all()
    assert kinds == ["registered", "contact", "contact"]


async def test_a_case_number_carries_the_court_local_year_and_time(
    db: AsyncSession, world: World, migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20:00 UTC on New Year's Eve is 04:00 on New Year's Day in Beijing: the number says
    2027 and 0101 04:00, as the clerk's clock does."""
    assert str(migrated.tz) == "Asia/Shanghai"
    monkeypatch.setattr(cases, "utcnow", lambda: datetime(2026, 12, 31, 20, 0, 0, tzinfo=UTC))
    clerk = actor(world, "op_a", Role.operator, "basic_a")
    reg = await cases.register(db, clerk, letter(["（2024）甲0101执77号"]), settings=migrated)
    assert reg.case.number.startswith("（2027）"), reg.case.number
    assert "信0101040000" in reg.case.number, reg.case.number


async def test_the_whole_life_assign_overdue_resolve_followup(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    clerk = actor(world, "op_a", Role.operator, "basic_a")
    high = actor(world, "po_high", Role.petition_officer, "high")
    basic = actor(world, "po_a", Role.petition_officer, "basic_a")
    reg = await cases.register(db, clerk, letter(["（2024）甲0101执9号"]), settings=migrated)
    case_id = reg.case.id
    # the basic court triages it as a petition matter with its officer responsible
    await cases.triage(
        db,
        basic,
        case_id,
        track=CaseTrack.petition,
        mode=HandlingMode.careful,
        responsible_id=world.users["po_a"],
        settings=migrated,
    )
    with pytest.raises(ConflictError) as second:
        await cases.set_owner(db, basic, case_id, responsible_id=world.users["op_a"])
    assert second.value.code == "second_owner"
    # the high court hands it down to the basic court: not to itself, not in the past
    with pytest.raises(InvalidError) as not_below:
        await cases.assign(
            db, high, case_id, to_court_id=world.courts["high"], deadline=None, settings=migrated
        )
    assert not_below.value.code == "not_below"
    with pytest.raises(InvalidError) as past:
        await cases.assign(
            db,
            high,
            case_id,
            to_court_id=world.courts["basic_a"],
            deadline=utcnow() - timedelta(days=1),
            settings=migrated,
        )
    assert past.value.code == "past_deadline"
    due = utcnow() + timedelta(days=10)
    await cases.assign(
        db, high, case_id, to_court_id=world.courts["basic_a"], deadline=due, settings=migrated
    )
    case, _ = await cases.get_case(db, basic, case_id)
    assert case.state is CaseState.assigned and case.node is Node.feedback
    assert case.supervising_court_id == world.courts["high"]
    # the deadline passes: the scan alerts once and the board shows days overdue
    later = due + timedelta(days=3, hours=1)
    first = await cases.scan_deadlines(db, migrated, later)
    again = await cases.scan_deadlines(db, migrated, later)
    assert first.overdue == 1 and again.overdue == 0
    rows = await cases.board(db, high)
    assert [(r.case.id, r.days_overdue) for r in rows if r.case.id == case_id] == [
        (case_id, 0)
    ]  # the board counts from real time; the injected clock made only the alert
    await db.execute(
        text("UPDATE petitions SET due_at = :d WHERE id = :i"),
        {"d": utcnow() - timedelta(days=2, hours=1), "i": case_id},
    )
    db.expire_all()
    rows = await cases.board(db, high)
    assert [r.days_overdue for r in rows if r.case.id == case_id] == [3]
    (total,) = rows.totals
    assert (total.court_id, total.cases, total.overdue) == (world.courts["basic_a"], 1, 1)
    everywhere = await cases.board(db, SYSTEM_ACTOR)  # an admin's board: every court's cases
    assert [(r.case.id, r.days_overdue) for r in everywhere] == [(case_id, 3)]
    assert [(t.court_id, t.cases, t.overdue) for t in everywhere.totals] == [
        (world.courts["basic_a"], 1, 1)
    ]
    # a basic court may not end a petition (信访终结); nobody closes without grounds
    with pytest.raises(PermissionDeniedError):
        await cases.terminate(
            db,
            basic,
            case_id,
            ground=TerminationGround.no_new_facts,
            approval="x",
            settings=migrated,
        )
    with pytest.raises(InvalidError) as no_ground:
        await cases.resolve(db, basic, case_id, ground=None, settings=migrated, remark="已执行")
    assert no_ground.value.code == "missing_grounds"
    await cases.resolve(
        db,
        basic,
        case_id,
        ground=ResolutionGround.enforced,
        settings=migrated,
        remark="执行款已全部到位",
    )
    case, _ = await cases.get_case(db, basic, case_id)
    assert case.state is CaseState.resolved and case.node is Node.followup
    await cases.record_followup(
        db, basic, case_id, result=FollowUpResult.satisfied, remark="当事人表示满意"
    )
    await cases.reopen(db, high, case_id, reason="当事人反映执行款被退回", settings=migrated)
    tl = await cases.timeline(db, high, case_id)
    kinds = [e.kind for e in tl.events]
    assert kinds[:2] == ["registered", "contact"]
    for kind in ("triaged", "assigned", "overdue", "resolved", "followup", "reopened"):
        assert kind in kinds
    assert tl.case.state is CaseState.handling


async def test_the_timeline_cannot_be_changed_or_deleted(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    clerk = actor(world, "op_a", Role.operator, "basic_a")
    reg = await cases.register(db, clerk, letter(["（2024）甲0101执1号"]), settings=migrated)
    case_id = reg.case.id
    await db.commit()
    for sql in ("UPDATE case_events SET text = 'x'", "DELETE FROM case_events"):
        with pytest.raises(Exception, match="append-only"):
            await db.execute(text(sql))
        await db.rollback()
    assert (
        await db.scalar(select(CaseEvent.id).where(CaseEvent.petition_id == case_id).limit(1))
        is not None
    )


def test_who_may_do_what_as_a_table() -> None:
    def who(role: Role) -> Actor:
        return Actor(user_id=1, username="u", role=role, court_id=1)

    handler = Standing(handler=True, level=CourtLevel.basic)
    above = Standing(supervisor=True, level=CourtLevel.high)
    assigner = Standing(supervisor=True, assigner=True, level=CourtLevel.high)
    officer, leader, archivist = (
        who(Role.petition_officer),
        who(Role.leader),
        who(Role.archivist),
    )
    assert may(officer, CaseAction.triage_petition, CaseState.registered, handler)
    assert not may(officer, CaseAction.triage_petition, CaseState.registered, above)
    assert not may(officer, CaseAction.terminate, CaseState.handling, handler)
    assert may(officer, CaseAction.terminate, CaseState.handling, above)
    assert not may(officer, CaseAction.flag, CaseState.handling, handler)
    assert may(officer, CaseAction.flag, CaseState.assigned, above)
    assert may(leader, CaseAction.take_lead, CaseState.assigned, above)
    assert not may(officer, CaseAction.take_lead, CaseState.assigned, above)
    assert may(officer, CaseAction.accept, CaseState.reported, assigner)
    assert not may(officer, CaseAction.accept, CaseState.reported, above)
    # the handling court closes the case itself while assigned, not while its feedback
    # awaits the assigning court's review
    assert may(officer, CaseAction.resolve, CaseState.assigned, handler)
    assert not may(officer, CaseAction.resolve, CaseState.reported, handler)
    assert may(officer, CaseAction.resolve, CaseState.reported, assigner)
    # accepting the feedback of a hand-over handed further down: back to the court above
    assert next_state(CaseState.reported, CaseAction.accept) is CaseState.handling
    assert next_state(CaseState.reported, CaseAction.accept, chained=True) is CaseState.assigned
    assert may(archivist, CaseAction.view, CaseState.resolved, above)
    assert not may(archivist, CaseAction.add_contact, CaseState.resolved, above)
    assert not may(officer, CaseAction.resolve, CaseState.registered, handler)
    assert may(officer, CaseAction.reopen, CaseState.resolved, above)
    assert not may(officer, CaseAction.reopen, CaseState.handling, above)
    assert not may(officer, CaseAction.view, CaseState.handling, Standing())


async def test_deadlines_in_timeline_sentences_and_notices_read_as_court_local_time(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    """A deadline of 09:00 UTC reads 17:00 (Asia/Shanghai) in the 交办 entry and its notice,
    the overdue alert and the 回访 scheduled by 化解: never as ISO text in UTC."""
    basic = actor(world, "po_a", Role.petition_officer, "basic_a")
    high = actor(world, "po_high", Role.petition_officer, "high")
    case_id = await _petition_case(db, world, basic, "（2024）甲0101执31号", "po_a", migrated)
    due = (utcnow() + timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    day = f"{due:%Y-%m-%d}"
    await cases.assign(
        db, high, case_id, to_court_id=world.courts["basic_a"], deadline=due, settings=migrated
    )
    await cases.scan_deadlines(db, migrated, due + timedelta(hours=1))
    await cases.resolve(
        db, basic, case_id, ground=ResolutionGround.enforced, settings=migrated, remark="已到位"
    )
    texts = dict(
        (
            await db.execute(
                select(CaseEvent.kind, CaseEvent.text).where(CaseEvent.petition_id == case_id)
            )
        ).all()
    )
    assert f"限 {day} 17:00 前反馈" in texts["assigned"]
    assert f"期限 {day} 17:00" in texts["overdue"]
    followup = await db.scalar(select(FollowUp.due_at).where(FollowUp.petition_id == case_id))
    assert followup is not None
    local = followup.astimezone(migrated.tz)
    assert f"安排回访，{local:%Y-%m-%d %H:%M} 前完成" in texts["resolved"]
    notice = await db.scalar(
        select(Notification.body).where(
            Notification.user_id == world.users["po_a"], Notification.kind == "case_assigned"
        )
    )
    assert notice is not None and f"请于 {day} 17:00 前反馈" in notice
    for sentence in [*texts.values(), notice]:
        assert "+00:00" not in sentence and "T09:00" not in sentence


async def test_a_followup_scheduled_after_termination_is_its_own_entry_and_is_alerted(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    """安排回访 after 信访终结: a ``followup_scheduled`` entry naming its local due time, the
    follow-up node with that deadline (alerted once passed), one pending 回访 at a time."""
    basic = actor(world, "po_a", Role.petition_officer, "basic_a")
    high = actor(world, "po_high", Role.petition_officer, "high")
    case_id = await _petition_case(db, world, basic, "（2024）甲0101执41号", "po_a", migrated)
    await cases.terminate(
        db,
        high,
        case_id,
        ground=TerminationGround.no_new_facts,
        approval="院长 审批",
        settings=migrated,
    )
    due = (utcnow() + timedelta(days=2)).replace(hour=2, minute=30, second=0, microsecond=0)
    with pytest.raises(InvalidError) as past:
        await cases.schedule_followup(
            db, basic, case_id, due_at=utcnow() - timedelta(hours=1), settings=migrated
        )
    assert past.value.code == "past_deadline"
    case = await cases.schedule_followup(
        db, basic, case_id, due_at=due, settings=migrated, remark="电话回访"
    )
    assert case.state is CaseState.terminated and case.node is Node.followup
    assert case.due_at == due
    with pytest.raises(ConflictError) as pending:
        await cases.schedule_followup(db, basic, case_id, due_at=None, settings=migrated)
    assert pending.value.code == "followup_pending"
    assert pending.value.message == f"已安排回访（{due:%Y-%m-%d} 10:30 前完成），请先记录回访结果"
    assert (await cases.scan_deadlines(db, migrated, due + timedelta(hours=1))).overdue == 1
    tl = await cases.timeline(db, basic, case_id)
    entry = next(e for e in tl.events if e.kind == "followup_scheduled")
    assert entry.text == f"安排回访，{due:%Y-%m-%d} 10:30 前完成：电话回访"
    assert [e.kind for e in tl.events][-3:] == ["followup_scheduled", "overdue", "escalated"]
    await cases.record_followup(db, basic, case_id, result=FollowUpResult.satisfied)
    case, _ = await cases.get_case(db, basic, case_id)
    assert case.node is Node.done and case.due_at is None


async def test_a_case_not_yet_in_its_reminder_window_does_not_hold_back_the_others(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    basic = actor(world, "po_a", Role.petition_officer, "basic_a")
    now = utcnow()
    ids = []
    for n in (1, 2):
        case_id = await _petition_case(
            db, world, basic, f"（2024）甲0101执7{n}号", "po_a", migrated
        )
        ids.append(case_id)
    # due first, but a feedback deadline is reminded 5 days ahead: not yet
    early, later = ids
    await db.execute(
        text("UPDATE petitions SET node = 'feedback', due_at = :d WHERE id = :i"),
        {"d": now + timedelta(days=6), "i": early},
    )
    # due later, and a handling deadline is reminded 7 days ahead: now
    await db.execute(
        text("UPDATE petitions SET due_at = :d WHERE id = :i"),
        {"d": now + timedelta(days=6, hours=12), "i": later},
    )
    db.expire_all()
    done = await cases.scan_deadlines(db, migrated, now, batch=1)
    assert done.reminded == 1
    reminded = (
        await db.scalars(
            select(CaseEvent.petition_id).where(CaseEvent.kind == "reminder").order_by(CaseEvent.id)
        )
    ).all()
    assert reminded == [later]
    assert (await cases.scan_deadlines(db, migrated, now, batch=1)).reminded == 0


async def _petition_case(
    db: AsyncSession, world: World, clerk: Actor, number: str, responsible: str, zone: Settings
) -> int:
    """A case registered by ``clerk`` (a letter about ``number``) and triaged as a petition
    matter handled with care, ``responsible`` its responsible officer."""
    case_id = (await cases.register(db, clerk, letter([number]), settings=zone)).case.id
    await cases.triage(
        db,
        clerk,
        case_id,
        track=CaseTrack.petition,
        mode=HandlingMode.careful,
        responsible_id=world.users[responsible],
        settings=zone,
    )
    return case_id


async def _assigned_below(db: AsyncSession, world: World, settings: Settings) -> int:
    """A case the high court has handed to the basic court (a case on its board)."""
    basic = actor(world, "po_a", Role.petition_officer, "basic_a")
    high = actor(world, "po_high", Role.petition_officer, "high")
    case_id = await _petition_case(db, world, basic, "（2024）甲0101执31号", "po_a", settings)
    due = utcnow() + timedelta(days=10)
    await cases.assign(
        db, high, case_id, to_court_id=world.courts["basic_a"], deadline=due, settings=settings
    )
    return case_id


async def test_the_board_picks_its_cases_from_the_board_index_alone(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    """The supervising court's board picks the cases handed below it from the covering
    index ix_petitions_board (migration 0012) and reads only those rows: a high court with
    ~150 courts below does not read every open case of them. SQLite's own plan of the
    statements the board really runs."""
    case_id = await _assigned_below(db, world, migrated)
    high = actor(world, "po_high", Role.petition_officer, "high")
    shown: list[int] = []

    async def board() -> None:
        shown.extend(r.case.id for r in await cases.board(db, high))

    counted, rows = await query_plans(db, board, "FROM petitions")
    assert shown == [case_id]
    by_index = (
        "SEARCH petitions USING COVERING INDEX ix_petitions_board (handler_court_id=? AND state=?)"
    )
    assert [line for line in counted if "petitions" in line] == [by_index]  # the totals
    # the cases due first, from the index alone (the list subquery), then their rows alone
    assert [line for line in rows if "petitions" in line] == [
        "SEARCH petitions USING INTEGER PRIMARY KEY (rowid=?)",
        by_index,
    ]
    assert rows.index("LIST SUBQUERY 1") < rows.index(by_index)
    assert not any(line.startswith("SCAN") and "anon" not in line for line in counted + rows)


async def test_the_case_list_filters_find_cases_by_any_contact_and_by_their_people(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    """The list's channel is of any contact: a walk-in matter a letter later came about is
    listed under 来信 and under 来访, not under 12368; its plan reads no contacts. 我包案的
    and a responsible person's cases come from the partial indexes of the cases that have
    one, not from the court's whole scope (migration 0013); a node, category or overdue filter
    reads the handling courts' part of the scope from an index (0014). SQLite's own plans."""
    clerk = actor(world, "op_a", Role.operator, "basic_a")
    number = "（2024）甲0101执77号"
    first = await cases.register(
        db, clerk, letter([number], channel=Channel.walk_in), settings=migrated
    )
    await cases.register(db, clerk, letter([number]), settings=migrated)  # a letter, linked
    other = await cases.register(db, clerk, letter(["（2024）甲0101执78号"]), settings=migrated)

    async def listed(f: cases.CaseFilter) -> list[int]:
        return sorted(
            c.id for c in (await cases.list_cases(db, clerk, f, limit=50, offset=0)).items
        )

    assert await listed(cases.CaseFilter(channel=Channel.letter)) == sorted(
        [first.case.id, other.case.id]
    )
    assert await listed(cases.CaseFilter(channel=Channel.walk_in)) == [first.case.id]
    assert await listed(cases.CaseFilter(channel=Channel.phone)) == []
    plans = await query_plans(
        db, lambda: listed(cases.CaseFilter(channel=Channel.letter)), "FROM petitions"
    )
    assert plans and not any("case_contacts" in line for plan in plans for line in plan)
    for picked, index in (
        (cases.CaseFilter(led_by_me=True), "ix_petitions_leader_id (leader_id=?)"),
        (
            cases.CaseFilter(responsible_id=world.users["po_a"]),
            "ix_petitions_responsible_id (responsible_id=?)",
        ),
        # the handling courts' part of the scope (migration 0014)
        (cases.CaseFilter(node=Node.feedback), "ix_petitions_handler_node (handler_court_id=?"),
        (
            cases.CaseFilter(category=CaseCategory.enforcement),
            "ix_petitions_handler_category (handler_court_id=?",
        ),
        (
            cases.CaseFilter(overdue=True),
            "ix_petitions_handler_state (handler_court_id=? AND state=? AND due_at<?)",
        ),
    ):
        plans = await query_plans(db, partial(listed, picked), "FROM petitions")
        assert all(
            any(line.startswith(f"SEARCH petitions USING INDEX {index}") for line in plan)
            for plan in plans
        ), plans


async def test_the_board_read_whole_on_the_thread_gives_what_its_statement_gives(
    db: AsyncSession, world: World, migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the board's totals and rows come back from the connection's thread as one
    JSON value: decoded, they are the rows the plain statement gives, with the same types
    (dates with their zone, enums); the first page holds the cases due first, every court
    still counted."""
    high = actor(world, "po_high", Role.petition_officer, "high")
    handed: dict[int, tuple[str, int]] = {}  # case → (court, days to its deadline)
    for n, (court, days) in enumerate(
        [("basic_a", 9), ("mid_b", 3), ("basic_b", 5), ("basic_a", -1), ("mid_a", 7)]
    ):
        case_id = await _petition_case(
            db, world, high, f"（2024）甲0101执{40 + n}号", "po_high", migrated
        )
        due = utcnow() + timedelta(days=max(days, 1))
        await cases.assign(
            db, high, case_id, to_court_id=world.courts[court], deadline=due, settings=migrated
        )
        if days < 0:  # overdue
            await db.execute(
                text("UPDATE petitions SET due_at = :d WHERE id = :i"),
                {"d": utcnow() + timedelta(days=days), "i": case_id},
            )
        handed[case_id] = (court, days)
    db.expire_all()
    reads = cases._BOARD_WITHIN
    params = {"now": utcnow(), "ids": sorted(world.courts.values()), "limit": 10}
    for read in (reads.counted, reads.rows):
        plain = [tuple(row) for row in await db.execute(read.statement, params)]
        whole = await read.rows(db, params)
        assert sorted(whole, key=repr) == sorted(plain, key=repr) and len(plain) >= 4
        assert [[type(v) for v in row] for row in sorted(whole, key=repr)] == [
            [type(v) for v in row] for row in sorted(plain, key=repr)
        ]
    rows = await reads.rows.rows(db, params)
    assert all(row[7].tzinfo is not None for row in rows)  # due_at, a date with its zone

    async def shown() -> tuple[list[tuple[int, int, int]], list[int]]:
        found = await cases.board(db, high)
        totals = [(t.court_id, t.cases, t.overdue) for t in found.totals]
        return totals, [r.case.id for r in found]

    late = {court: 0 for court, _ in handed.values()}
    cases_of = dict(late)
    for court, days in handed.values():
        cases_of[court] += 1
        late[court] += days < 0
    totals, first = await shown()
    assert sorted(first) == sorted(handed)
    assert sorted(totals) == sorted((world.courts[c], cases_of[c], late[c]) for c in late)
    monkeypatch.setattr(cases, "BOARD_PAGE", 2)  # the two due first; every court still counted
    page_totals, page = await shown()
    assert page_totals == totals
    assert sorted(page) == sorted(sorted(handed, key=lambda c: handed[c][1])[:2])


async def test_the_deadline_scan_reads_pending_cases_through_its_partial_indexes(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    """Alerts come from ix_petitions_alert (not yet alerted) and reminders from
    ix_petitions_remind (neither reminded nor alerted) within the furthest reminder window
    (migration 0012): a reminded case, or one due months ahead, is not read again by every
    scan. SQLite's own plans of the statements the scan really runs."""
    await _assigned_below(db, world, migrated)

    async def scan() -> None:
        await cases.scan_deadlines(db, migrated, utcnow())

    alerts, reminders = await query_plans(db, scan, "UPDATE petitions")
    assert "SEARCH petitions USING INDEX ix_petitions_alert (due_at<?)" in alerts
    assert "SEARCH petitions USING INDEX ix_petitions_remind (due_at>? AND due_at<?)" in reminders


# ---------------------------------------------------------------- 交办 further down


async def _high_case(db: AsyncSession, world: World, settings: Settings, number: str) -> int:
    """A case registered and triaged at the high court (its officer responsible)."""
    high = actor(world, "po_high", Role.petition_officer, "high")
    reg = await cases.register(db, high, letter([number]), settings=settings)
    await cases.triage(
        db,
        high,
        reg.case.id,
        track=CaseTrack.petition,
        mode=HandlingMode.careful,
        responsible_id=world.users["po_high"],
        settings=settings,
    )
    return reg.case.id


async def _hand_overs(db: AsyncSession, case_id: int) -> list[tuple[str, str, str]]:
    """The case's hand-overs as (from court id, to court id, state), in order."""
    rows = await db.execute(
        select(Assignment.from_court_id, Assignment.to_court_id, Assignment.state)
        .where(Assignment.petition_id == case_id)
        .order_by(Assignment.id)
    )
    return [(str(f), str(t), s.value) for f, t, s in rows]


async def test_a_case_handed_further_down_keeps_the_upper_hand_over_and_its_deadline(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    """The high court hands a case to the intermediate court, which hands it on to the basic
    court: the high court's hand-over stays open (not 改派), the basic court's deadline is
    not later than the high court's, the basic court's feedback goes to the intermediate
    court, whose acceptance brings the case back to it to report to the high court."""
    high = actor(world, "po_high", Role.petition_officer, "high")
    mid = actor(world, "po_mid", Role.petition_officer, "mid_a")
    basic = actor(world, "po_a", Role.petition_officer, "basic_a")
    c = {k: str(v) for k, v in world.courts.items()}
    case_id = await _high_case(db, world, migrated, "（2024）甲0101执80号")
    upper_due = cases.day_end(utcnow() + timedelta(days=5), migrated)
    await cases.assign(
        db, high, case_id, to_court_id=world.courts["mid_a"], deadline=upper_due, settings=migrated
    )
    # the intermediate court may not give the basic court more time than it has itself
    with pytest.raises(InvalidError) as later:
        await cases.assign(
            db,
            mid,
            case_id,
            to_court_id=world.courts["basic_a"],
            deadline=upper_due + timedelta(days=1),
            settings=migrated,
        )
    assert later.value.code == "deadline_after_upper"
    # by default (the 30-day rule) it gets the high court's deadline
    lower = await cases.assign(
        db, mid, case_id, to_court_id=world.courts["basic_a"], deadline=None, settings=migrated
    )
    assert lower.deadline == upper_due
    assert await _hand_overs(db, case_id) == [
        (c["high"], c["mid_a"], "open"),
        (c["mid_a"], c["basic_a"], "open"),
    ]
    tl = await cases.timeline(db, high, case_id)
    assert not any("改派" in e.text for e in tl.events if e.kind == "assigned")
    case = tl.case
    assert (case.handler_court_id, case.supervising_court_id) == (
        world.courts["basic_a"],
        world.courts["mid_a"],
    )
    # the basic court's deadline passes: the high court, whose hand-over awaits, is alerted too
    await cases.scan_deadlines(db, migrated, upper_due + timedelta(hours=1))
    told = set(
        (
            await db.scalars(
                select(Notification.user_id).where(Notification.kind == "case_overdue")
            )
        ).all()
    )
    assert {world.users["po_high"], world.users["po_mid"], world.users["po_a"]} <= told
    # the basic court reports; while the intermediate court reviews, it may not close it
    await cases.report(db, basic, case_id, result="已执行到位", settings=migrated)
    with pytest.raises(PermissionDeniedError):
        await cases.resolve(
            db, basic, case_id, ground=ResolutionGround.enforced, settings=migrated, remark="x"
        )
    with pytest.raises(PermissionDeniedError):  # not the high court's to review
        await cases.review_feedback(db, high, case_id, accept=True, settings=migrated)
    # the intermediate court accepts: the case is back with it, owing the high court
    await cases.review_feedback(db, mid, case_id, accept=True, settings=migrated)
    case, _ = await cases.get_case(db, mid, case_id)
    assert case.state is CaseState.assigned and case.node is Node.feedback
    assert (case.handler_court_id, case.supervising_court_id) == (
        world.courts["mid_a"],
        world.courts["high"],
    )
    assert case.due_at == upper_due
    assert await _hand_overs(db, case_id) == [
        (c["high"], c["mid_a"], "open"),
        (c["mid_a"], c["basic_a"], "accepted"),
    ]
    # the intermediate court reports upwards; the high court reviews it
    await cases.report(db, mid, case_id, result="经审核，基层法院已执行到位", settings=migrated)
    _, where = await cases.get_case(db, high, case_id)
    assert where.assigner
    await cases.review_feedback(db, high, case_id, accept=True, settings=migrated)
    case, _ = await cases.get_case(db, high, case_id)
    assert case.state is CaseState.handling
    assert await _hand_overs(db, case_id) == [
        (c["high"], c["mid_a"], "accepted"),
        (c["mid_a"], c["basic_a"], "accepted"),
    ]


async def test_redirecting_withdraws_only_what_the_court_and_those_below_it_handed_down(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    high = actor(world, "po_high", Role.petition_officer, "high")
    mid = actor(world, "po_mid", Role.petition_officer, "mid_a")
    c = {k: str(v) for k, v in world.courts.items()}
    case_id = await _high_case(db, world, migrated, "（2024）甲0101执81号")
    await cases.assign(
        db, high, case_id, to_court_id=world.courts["mid_a"], deadline=None, settings=migrated
    )
    await cases.assign(
        db, mid, case_id, to_court_id=world.courts["basic_a"], deadline=None, settings=migrated
    )
    # the intermediate court hands it again (改派 of its own hand-over only)
    await cases.assign(
        db, mid, case_id, to_court_id=world.courts["basic_a"], deadline=None, settings=migrated
    )
    assert await _hand_overs(db, case_id) == [
        (c["high"], c["mid_a"], "open"),
        (c["mid_a"], c["basic_a"], "withdrawn"),
        (c["mid_a"], c["basic_a"], "open"),
    ]
    # the high court redirects the case: the whole chain below it is withdrawn
    await cases.assign(
        db, high, case_id, to_court_id=world.courts["mid_b"], deadline=None, settings=migrated
    )
    assert await _hand_overs(db, case_id) == [
        (c["high"], c["mid_a"], "withdrawn"),
        (c["mid_a"], c["basic_a"], "withdrawn"),
        (c["mid_a"], c["basic_a"], "withdrawn"),
        (c["high"], c["mid_b"], "open"),
    ]
    tl = await cases.timeline(db, high, case_id)
    last = [e.text for e in tl.events if e.kind == "assigned"][-1]
    assert last.startswith(
        "改派（原承办：甲市中级人民法院、甲市某区人民法院）：交办 乙市中级人民法院"
    )
    # a court between may not step into a hand-over made directly to the court below it
    other = await _high_case(db, world, migrated, "（2024）甲0101执82号")
    await cases.assign(
        db, high, other, to_court_id=world.courts["basic_a"], deadline=None, settings=migrated
    )
    with pytest.raises(ConflictError) as between:
        await cases.assign(
            db, mid, other, to_court_id=world.courts["basic_a"], deadline=None, settings=migrated
        )
    assert between.value.code == "assigned_above"
    assert await _hand_overs(db, other) == [(c["high"], c["basic_a"], "open")]


async def test_closing_a_case_closes_its_hand_overs_and_only_the_assigner_accepts(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    """化解 by the court the case was handed to is its feedback (reported), not an
    acceptance; 化解 by the assigning court and 信访终结 by it decide the hand-over."""
    high = actor(world, "po_high", Role.petition_officer, "high")
    mid = actor(world, "po_mid", Role.petition_officer, "mid_a")
    c = {k: str(v) for k, v in world.courts.items()}
    # the intermediate court resolves what the high court handed it
    first = await _high_case(db, world, migrated, "（2024）甲0101执83号")
    await cases.assign(
        db, high, first, to_court_id=world.courts["mid_a"], deadline=None, settings=migrated
    )
    await cases.resolve(
        db, mid, first, ground=ResolutionGround.enforced, settings=migrated, remark="已执行到位"
    )
    assert await _hand_overs(db, first) == [(c["high"], c["mid_a"], "reported")]
    row = await db.scalar(select(Assignment).where(Assignment.petition_id == first))
    assert row is not None and "已执行到位" in row.result and row.reported_at is not None
    # the high court resolves after the feedback: it decided, so it accepted
    second = await _high_case(db, world, migrated, "（2024）甲0101执84号")
    await cases.assign(
        db, high, second, to_court_id=world.courts["mid_a"], deadline=None, settings=migrated
    )
    await cases.report(db, mid, second, result="已约谈", settings=migrated)
    await cases.resolve(
        db, high, second, ground=ResolutionGround.enforced, settings=migrated, remark="到位"
    )
    assert await _hand_overs(db, second) == [(c["high"], c["mid_a"], "accepted")]
    # 信访终结 of a case handed down closes its hand-overs as 化解 does
    third = await _high_case(db, world, migrated, "（2024）甲0101执85号")
    await cases.assign(
        db, high, third, to_court_id=world.courts["mid_a"], deadline=None, settings=migrated
    )
    await cases.assign(
        db, mid, third, to_court_id=world.courts["basic_a"], deadline=None, settings=migrated
    )
    await cases.terminate(
        db,
        high,
        third,
        ground=TerminationGround.no_new_facts,
        approval="院长 审批 1号",
        settings=migrated,
    )
    assert await _hand_overs(db, third) == [
        (c["high"], c["mid_a"], "accepted"),
        (c["mid_a"], c["basic_a"], "reported"),
    ]


async def test_after_reopening_a_followup_is_recorded_on_the_one_scheduled_last(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    clerk = actor(world, "op_a", Role.operator, "basic_a")
    basic = actor(world, "po_a", Role.petition_officer, "basic_a")
    high = actor(world, "po_high", Role.petition_officer, "high")
    reg = await cases.register(db, clerk, letter(["（2024）甲0101执86号"]), settings=migrated)
    case_id = reg.case.id
    await cases.triage(
        db,
        basic,
        case_id,
        track=CaseTrack.petition,
        mode=HandlingMode.careful,
        responsible_id=world.users["po_a"],
        settings=migrated,
    )
    await cases.resolve(
        db, basic, case_id, ground=ResolutionGround.enforced, settings=migrated, remark="到位"
    )
    await cases.reopen(db, high, case_id, reason="当事人反映执行款被退回", settings=migrated)
    (cancelled,) = (await db.scalars(select(FollowUp).where(FollowUp.petition_id == case_id))).all()
    assert cancelled.done_at is not None and cancelled.result == ""
    assert cancelled.remark == cases.FOLLOWUP_CANCELLED
    await cases.resolve(
        db, basic, case_id, ground=ResolutionGround.enforced, settings=migrated, remark="再次到位"
    )
    await cases.record_followup(
        db, basic, case_id, result=FollowUpResult.satisfied, remark="当事人满意"
    )
    rows = (
        await db.scalars(
            select(FollowUp).where(FollowUp.petition_id == case_id).order_by(FollowUp.id)
        )
    ).all()
    assert [(f.result, f.remark) for f in rows] == [
        ("", cases.FOLLOWUP_CANCELLED),
        ("satisfied", "当事人满意"),
    ]


async def test_flagging_a_flagged_case_or_lifting_an_absent_flag_is_refused(
    db: AsyncSession, world: World, migrated: Settings
) -> None:
    high = actor(world, "po_high", Role.petition_officer, "high")
    case_id = await _high_case(db, world, migrated, "（2024）甲0101执87号")
    await cases.assign(
        db, high, case_id, to_court_id=world.courts["mid_a"], deadline=None, settings=migrated
    )
    with pytest.raises(ConflictError) as absent:
        await cases.flag(db, high, case_id, on=False)
    assert absent.value.code == "not_flagged"
    await cases.flag(db, high, case_id, on=True)
    with pytest.raises(ConflictError) as twice:
        await cases.flag(db, high, case_id, on=True)
    assert twice.value.code == "already_flagged"
    tl = await cases.timeline(db, high, case_id)
    assert [e.kind for e in tl.events].count("flagged") == 1
