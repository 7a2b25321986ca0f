"""Property tests over the case state machine (scheduler.cases.rules) and the real service on a
migrated SQLite database: sequences of actions by staff of every standing (the handling,
registering and supervising courts, an unrelated court; officers, leaders, archivists) never
reach an undefined state, never change a case when refused, and never lose an audit entry."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.audit import AuditEvent
from config.db import create_engine, create_sessionmaker
from config.errors import AppError
from config.settings import Settings
from scheduler.cases import service as cases
from scheduler.cases.models import Assignment, CaseEvent
from scheduler.cases.rules import MOVES, NODE_OF, STAYS, CaseAction, may, next_state
from scheduler.cases.words import (
    AssignmentState,
    CaseCategory,
    CaseState,
    CaseTrack,
    Channel,
    FollowUpResult,
    HandlingMode,
    Node,
    Procedure,
    ResolutionGround,
    TerminationGround,
)
from scheduler.models import IdType, Petition, Role, User
from scheduler.scope import Actor, descendant_court_ids
from tests.helpers import World, add_staff

# ---------------------------------------------------------------- the rules alone


def test_next_state_never_leaves_the_defined_states() -> None:
    for state, action in itertools.product(CaseState, CaseAction):
        after = next_state(state, action)
        assert after is None or isinstance(after, CaseState)
        assert after is None or after in NODE_OF
    assert set(NODE_OF) == set(CaseState)
    assert all(isinstance(s, CaseState) for pair in MOVES for s in (pair[0], MOVES[pair]))
    assert all(isinstance(s, CaseState) for states in STAYS.values() for s in states)


def test_every_state_is_reachable_from_registered_and_can_move_on() -> None:
    seen = {CaseState.registered}
    todo = deque(seen)
    while todo:
        state = todo.popleft()
        for action in CaseAction:
            after = next_state(state, action)
            if after is not None and after not in seen:
                seen.add(after)
                todo.append(after)
    assert seen == set(CaseState)
    # no state is a dead end: every one has an action that moves it
    for state in CaseState:
        assert any(next_state(state, a) not in (None, state) for a in CaseAction), state


# ---------------------------------------------------------------- the service, step by step

# Staff of every standing. The case is registered at mid_a, basic_a or high; mid_b and
# basic_b are then unrelated courts (until a high court hands the case to them).
STAFF: dict[str, tuple[Role, str]] = {
    "op_a": (Role.operator, "basic_a"),
    "po_a": (Role.petition_officer, "basic_a"),
    "leader_a": (Role.leader, "basic_a"),
    "po_b": (Role.petition_officer, "basic_b"),
    "po_mid_a": (Role.petition_officer, "mid_a"),
    "judge_a": (Role.judge, "mid_a"),
    "arch_a": (Role.archivist, "mid_a"),
    "po_mid_b": (Role.petition_officer, "mid_b"),
    "po_high": (Role.petition_officer, "high"),
    "leader_high": (Role.leader, "high"),
    "arch_high": (Role.archivist, "high"),
    "po_supreme": (Role.petition_officer, "supreme"),
}
REGISTRARS = {"basic_a": "po_a", "mid_a": "po_mid_a", "high": "po_high"}

STEPS = (
    "add_contact",
    "upload",
    "correct",
    "triage_litigation",
    "triage_petition",
    "set_owner",
    "assign",
    "progress",
    "report",
    "accept",
    "return",
    "flag",
    "unflag",
    "take_lead",
    "judicial_aid",
    "resolve",
    "terminate",
    "schedule_followup",
    "record_followup",
    "review",
    "reopen",
    "scan_reminder",
    "scan_overdue",
)
# Service refusals that are the rules' (who may, in which state), as opposed to checks of the
# action's own input (an owner already named, a court not below, a case already led …).
RULE_CODES = {"forbidden", "not_found", "case_state"}

Step = tuple[str, str, int]  # (action, username, a choice among targets)
actions = st.tuples(st.sampled_from(STEPS), st.sampled_from(sorted(STAFF)), st.integers(0, 5))


@dataclass
class Snapshot:
    state: CaseState
    node: Node
    raw_state: str
    raw_node: str
    events: Counter[str]
    audits: Counter[str]
    due_at: datetime | None


@dataclass
class Env:
    world: World
    settings: Settings
    numbers: itertools.count[int]


def staff_actor(world: World, username: str) -> Actor:
    role, court = STAFF[username]
    return Actor(
        user_id=world.users[username],
        username=username,
        role=role,
        court_id=world.courts[court],
    )


async def snapshot(db: AsyncSession, case_id: int) -> Snapshot:
    case = await db.get(Petition, case_id, populate_existing=True)
    assert case is not None
    raw = (
        await db.execute(text("SELECT state, node FROM petitions WHERE id = :i"), {"i": case_id})
    ).one()
    events = Counter(
        (await db.scalars(select(CaseEvent.kind).where(CaseEvent.petition_id == case_id))).all()
    )
    audits = Counter(
        a.removeprefix("case.")
        for a in (
            await db.scalars(
                select(AuditEvent.action).where(
                    AuditEvent.target_type == "case", AuditEvent.target_id == str(case_id)
                )
            )
        ).all()
    )
    return Snapshot(case.state, case.node, raw[0], raw[1], events, audits, case.due_at)


async def perform(
    db: AsyncSession, env: Env, case_id: int, step: Step, snap: Snapshot
) -> Callable[[], Awaitable[Any]]:
    """The service call for ``step``, with input valid in itself (so that a refusal comes
    from the rules or from the case's own state, never from a typo)."""
    name, username, pick = step
    actor = staff_actor(env.world, username)
    case = await db.get(Petition, case_id)
    assert case is not None and actor.court_id is not None
    handler = case.handler_court_id or case.court_id
    handler_staff = list(
        await db.scalars(select(User.id).where(User.court_id == handler).order_by(User.id))
    )
    owner = handler_staff[pick % len(handler_staff)]
    targets = sorted(await descendant_court_ids(db, actor.court_id) - {actor.court_id}) or [
        env.world.courts["basic_b"]
    ]
    first_event = await db.scalar(
        select(func.min(CaseEvent.id)).where(CaseEvent.petition_id == case_id)
    )
    assert first_event is not None
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "add_contact": lambda: cases.add_contact(
            db, actor, case_id, channel=Channel.walk_in, occurred_at=None, summary="再次来访"
        ),
        "upload": lambda: cases.add_material(
            db,
            actor,
            case_id,
            filename="判决书.pdf",
            content_type="application/pdf",
            size=2048,
            sha256="0" * 64,
            path=f"{case_id}/x.pdf",
        ),
        "correct": lambda: cases.correct(
            db, actor, case_id, event_id=first_event, text="登记时间应为上午", settings=env.settings
        ),
        "triage_litigation": lambda: cases.triage(
            db,
            actor,
            case_id,
            track=CaseTrack.litigation,
            procedure=Procedure.retrial,
            guidance="告知可向原审法院申请再审",
            settings=env.settings,
        ),
        "triage_petition": lambda: cases.triage(
            db,
            actor,
            case_id,
            track=CaseTrack.petition,
            mode=HandlingMode.careful,
            responsible_id=owner,
            settings=env.settings,
        ),
        "set_owner": lambda: cases.set_owner(
            db, actor, case_id, responsible_id=owner, reason="工作调整"
        ),
        "assign": lambda: cases.assign(
            db,
            actor,
            case_id,
            to_court_id=targets[pick % len(targets)],
            deadline=None,
            settings=env.settings,
        ),
        "progress": lambda: cases.progress(db, actor, case_id, text="已约谈当事人"),
        "report": lambda: cases.report(
            db, actor, case_id, result="已执行到位", settings=env.settings
        ),
        "accept": lambda: cases.review_feedback(
            db, actor, case_id, accept=True, settings=env.settings
        ),
        "return": lambda: cases.review_feedback(
            db, actor, case_id, accept=False, settings=env.settings, remark="材料不全"
        ),
        "flag": lambda: cases.flag(db, actor, case_id, on=True),
        "unflag": lambda: cases.flag(db, actor, case_id, on=False),
        "take_lead": lambda: cases.take_lead(db, actor, case_id),
        "judicial_aid": lambda: cases.judicial_aid(db, actor, case_id, stage="applied"),
        "resolve": lambda: cases.resolve(
            db,
            actor,
            case_id,
            ground=ResolutionGround.enforced,
            settings=env.settings,
            remark="执行款已到位",
        ),
        "terminate": lambda: cases.terminate(
            db,
            actor,
            case_id,
            ground=TerminationGround.no_new_facts,
            approval="院长 审批",
            settings=env.settings,
        ),
        "schedule_followup": lambda: cases.schedule_followup(
            db, actor, case_id, due_at=None, settings=env.settings
        ),
        "record_followup": lambda: cases.record_followup(
            db, actor, case_id, result=FollowUpResult.satisfied
        ),
        "review": lambda: cases.review(db, actor, case_id, findings="程序规范", rating="good"),
        "reopen": lambda: cases.reopen(
            db, actor, case_id, reason="当事人再次反映", settings=env.settings
        ),
    }
    if name.startswith("scan_"):
        due = snap.due_at or datetime.now().astimezone()
        at = due - timedelta(hours=1) if name == "scan_reminder" else due + timedelta(days=1)
        return lambda: cases.scan_deadlines(db, env.settings, at)
    return calls[name]


ACTION_OF = {a.value: a for a in CaseAction if a.value in STEPS}
SCANS = {(name, "po_high") for name in STEPS if name.startswith("scan_")}
Draw = Callable[[st.SearchStrategy[Any]], Any]


async def run_sequence(env: Env, registrar_court: str, length: int, draw: Draw) -> None:
    engine = create_engine(env.settings)
    try:
        await _run_sequence(env, create_sessionmaker(engine), registrar_court, length, draw)
    finally:
        await engine.dispose()


async def _run_sequence(
    env: Env,
    sessions: async_sessionmaker[AsyncSession],
    registrar_court: str,
    length: int,
    draw: Draw,
) -> None:
    world = env.world
    clerk = staff_actor(world, REGISTRARS[registrar_court])
    number = f"（2024）甲0101执{next(env.numbers)}号"
    async with sessions() as db, db.begin():
        reg = await cases.register(
            db,
            clerk,
            cases.Registration(
                channel=Channel.letter,
                petitioners=[cases.PersonIn("张三", IdType.resident_id, "110101199003071233")],
                category=CaseCategory.enforcement,
                summary="判决生效两年仍未执行到位",
                original_numbers=[number],
                original_court="甲市某区人民法院",
            ),
            settings=env.settings,
        )
        case_id = reg.case.id
    # the node a 回访 leaves until the state changes: done once recorded, the follow-up's
    # own once (another) is scheduled
    followup_node: Node | None = None
    async with sessions() as db:
        before = await snapshot(db, case_id)
    assert before.events == before.audits == Counter({"registered": 1, "contact": 1})
    for _ in range(length):
        async with sessions() as db:
            case = await db.get(Petition, case_id)
            assert case is not None
            actors = {u: staff_actor(world, u) for u in STAFF}
            # the standing depends on the actor's court only: one look-up per court
            by_court = {actors[u].court_id: actors[u] for u in STAFF}
            where_of = {c: await cases.standing(db, a, case) for c, a in by_court.items()}
            standings = {u: where_of[actors[u].court_id] for u in STAFF}
            allowed_now = {
                (name, u)
                for u in STAFF
                for name, action in ACTION_OF.items()
                if may(actors[u], action, case.state, standings[u])
            }
            # handed further down (交办 further down): a hand-over from above stays open
            chained = len(await cases.assignment_chain(db, case)) > 1
        # mostly an action the rules allow someone (so sequences get deep), else any action
        if allowed_now and draw(st.integers(0, 3)):
            pair = draw(st.sampled_from(sorted(allowed_now | SCANS)))
            step = (*pair, draw(st.integers(0, 5)))
        else:
            step = draw(actions)
        name, username, _ = step
        action = ACTION_OF.get(name)
        allowed = (name, username) in allowed_now
        refused: AppError | None = None
        try:
            async with sessions() as db, db.begin():
                call = await perform(db, env, case_id, step, before)
                await call()
        except AppError as exc:  # the web layer rolls the request back, as here
            refused = exc
        async with sessions() as db:
            after = await snapshot(db, case_id)
            case = await db.get(Petition, case_id)
            assert case is not None
            chain = await cases.assignment_chain(db, case)
            still_open = (
                await db.scalars(
                    select(Assignment.id).where(
                        Assignment.petition_id == case_id,
                        Assignment.state == AssignmentState.open,
                    )
                )
            ).all()
        where = f"{step} from {before.state}: {refused!r}"
        # every hand-over left open is one the case is under now (closing, accepting and
        # redirecting leave none behind)
        assert sorted(still_open) == sorted(
            a.id for a in chain if a.state is AssignmentState.open
        ), where
        # never an undefined state, and the node is the state's (or a 回访's)
        assert isinstance(after.state, CaseState) and after.raw_state in set(CaseState), where
        assert after.raw_node in set(Node), where
        if after.state is not before.state:
            followup_node = None
        if name == "record_followup" and refused is None:
            followup_node = Node.done
        if name == "schedule_followup" and refused is None:
            followup_node = Node.followup
        expected_node = followup_node or NODE_OF[after.state]
        assert after.node is expected_node, where
        # no audit entry lost: one audit event for every timeline entry, of the same kind
        assert after.audits == after.events, where
        added = after.events - before.events
        if action is None:  # the housekeeping scan: a reminder, or an alert (and escalation)
            assert refused is None, where
            assert after.state is before.state, where
            assert sum(added.values()) <= 2 and set(added) <= {"reminder", "overdue", "escalated"}
        elif refused is not None:
            # a refused action changes nothing; a refusal by the rules is the rules' verdict
            assert (after.state, after.node, after.events) == (
                before.state,
                before.node,
                before.events,
            ), where
            # the rules' refusals match may(); a check of the input itself comes after them
            assert allowed is (refused.code not in RULE_CODES), where
        else:
            assert allowed, where
            assert after.state is next_state(before.state, action, chained=chained), where
            assert sum(added.values()) == 1, f"{where}: added {dict(added)}"
        before = after


@pytest.fixture
async def env(migrated: Settings, world: World) -> Env:
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            for username, (role, court) in STAFF.items():
                if username not in world.users:
                    await add_staff(db, world, username, role, court)
    finally:
        await engine.dispose()
    return Env(world=world, settings=migrated, numbers=itertools.count(1))


@settings(
    max_examples=20,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    registrar=st.sampled_from(sorted(REGISTRARS)),
    length=st.integers(min_value=1, max_value=25),
    data=st.data(),
)
def test_no_sequence_of_actions_reaches_an_undefined_state_or_loses_an_audit_entry(
    env: Env, registrar: str, length: int, data: st.DataObject
) -> None:
    # every example is a new case on the same database (cases do not touch each other)
    asyncio.run(run_sequence(env, registrar, length, data.draw))
