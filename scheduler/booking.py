"""Booking visits: validation against the calendars, no double booking (enforced by the
database's lock rows), reschedule, and the search for free slots."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Select, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import AuditEvent, audit_time
from config.db import add_row, prepared, savepoint, table_of, utcnow
from config.errors import ConflictError, InvalidError, NotFoundError, PermissionDeniedError
from config.settings import Settings
from config.vocabulary import label
from scheduler.availability import load_calendar, local_span
from scheduler.cases import visits as case_visits
from scheduler.cases.words import VisitKind
from scheduler.lifecycle import BOOKABLE_KINDS, OPEN, RECEIVING_ROLES, may_manage, receiver_role
from scheduler.models import (
    BookingLock,
    Court,
    Petition,
    ReceptionRoom,
    Role,
    User,
    Visit,
    VisitCode,
    VisitEvent,
    VisitEventKind,
    VisitState,
    new_visit_id,
)
from scheduler.notify import notify, notify_now, visit_recipients
from scheduler.scope import Actor, ancestor_court_ids
from scheduler.slots import BusyIndex, Interval, Span, aligned, covered, free_pairs, units
from scheduler.slots import days as local_days
from scheduler.visits import (
    audit_visit,
    audit_visit_values,
    local_text,
    visible_visit,
    visit_event,
    visit_event_values,
)

MAX_VISIT = timedelta(hours=4)


@dataclass
class Booking:
    """Validated parts of a booking request."""

    petition: Petition
    receiving: Court
    room: ReceptionRoom
    period: Interval
    judges: list[User]  # candidates (the kind's receivers), in order of preference
    host_court_id: int  # the court whose room the petitioner sits in (hosting_court)
    kind: VisitKind = VisitKind.reception


async def _validate(
    db: AsyncSession,
    actor: Actor,
    settings: Settings,
    *,
    petition: Petition,
    host_court_id: int,
    receiving_court_id: int,
    judge_id: int | None,
    room_id: int,
    starts_at: datetime,
    ends_at: datetime | None,
    now: datetime,
    kind: VisitKind = VisitKind.reception,
) -> Booking:
    if ends_at is None:
        ends_at = starts_at + timedelta(minutes=settings.default_visit_minutes)
    if ends_at <= starts_at:
        raise InvalidError("结束时间必须晚于开始时间", code="invalid_period")
    if ends_at - starts_at > MAX_VISIT:
        raise InvalidError("单次接访不能超过 4 小时", code="invalid_period")
    if not (aligned(starts_at) and aligned(ends_at)):
        raise InvalidError("时间须为 5 分钟的整数倍", code="invalid_period")
    if starts_at < now - timedelta(minutes=5):
        raise InvalidError("不能预约已经过去的时间", code="in_the_past")
    if starts_at > now + timedelta(days=settings.booking_horizon_days):
        raise InvalidError(
            f"只能预约 {settings.booking_horizon_days} 天以内的时间", code="too_far_ahead"
        )
    room = await db.get(ReceptionRoom, room_id)
    if room is None or room.court_id != host_court_id:
        raise InvalidError("只能使用本院的接访室", code="room_of_other_court")
    if not room.active:
        raise InvalidError("该接访室已停用", code="room_inactive")
    if kind not in BOOKABLE_KINDS:
        raise InvalidError(f"{label(kind)}不通过接访预约安排", code="invalid_kind")
    ancestors = await ancestor_court_ids(db, host_court_id)
    if kind is VisitKind.post_judgment:
        # 判后答疑: the judge of the court that decided the original case answers, which may
        # be the petitioner's own court; that judge is named, not any judge who is free
        if receiving_court_id not in (host_court_id, *ancestors):
            raise InvalidError(
                "判后答疑的接访法院须为原审法院（本院或上级法院）", code="not_a_parent_court"
            )
        if judge_id is None:
            raise InvalidError("判后答疑须指定原审法官", code="judge_required")
    elif receiving_court_id not in ancestors:
        raise InvalidError("接访法院必须是信访人所在法院的上级法院", code="not_a_parent_court")
    receiving = await db.get(Court, receiving_court_id)
    assert receiving is not None
    role = receiver_role(kind)
    if judge_id is not None:
        judge = await db.get(User, judge_id)
        if judge is None or judge.role is not role or not judge.active:
            raise InvalidError(
                f"所选{label(role)}不存在或已停用（{label(kind)}由{label(role)}接访）",
                code="invalid_judge",
            )
        if judge.court_id != receiving_court_id:
            raise InvalidError(f"所选{label(role)}不属于接访法院", code="judge_of_other_court")
        judges = [judge]
    else:
        judges = list(
            (
                await db.scalars(
                    select(User)
                    .where(User.court_id == receiving_court_id, User.role == role, User.active)
                    .order_by(User.id)
                )
            ).all()
        )
    return Booking(
        petition, receiving, room, Interval(starts_at, ends_at), judges, host_court_id, kind
    )


async def _check_calendar(db: AsyncSession, settings: Settings, b: Booking) -> list[User]:
    """The candidate judges whose reception hours cover the period; refuses closed rooms."""
    tz = settings.tz
    first, last = local_span(b.period, tz)
    cal = await load_calendar(
        db, [(j.id, j.court_id or 0) for j in b.judges], b.room, first, last, tz
    )
    if any(
        d in cal.holidays.get(c, ())
        for d in local_days(first, last)
        for c in (b.receiving.id, b.room.court_id)
    ):
        raise InvalidError("所选日期是法院休息日", code="holiday")
    if not covered(b.period, [o for d in local_days(first, last) for o in cal.room_day(d)]):
        raise InvalidError("接访室在所选时间不开放", code="room_closed")
    fitting = [
        j
        for j in b.judges
        if covered(b.period, [w for d in local_days(first, last) for w in cal.judge_day(j.id, d)])
    ]
    if not fitting:
        raise InvalidError(
            f"所选时间不在{label(receiver_role(b.kind))}的接访时间内",
            code="outside_reception_hours",
        )
    return fitting


def _lock_rows(
    visit_id: str, period: Interval, judge_id: int, room_id: int, petitioner_id: int
) -> list[dict[str, Any]]:
    return [
        {"resource": resource, "unit": unit, "visit_id": visit_id}
        for resource in (f"judge:{judge_id}", f"room:{room_id}", f"petitioner:{petitioner_id}")
        for unit in units(period)
    ]


async def _conflicts(db: AsyncSession, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which resources of ``rows`` are already held, and by which visits."""
    wanted: dict[str, set[int]] = {}
    for r in rows:
        wanted.setdefault(r["resource"], set()).add(r["unit"])
    found: dict[tuple[str, str], None] = {}
    for resource, unit_set in wanted.items():
        held = await db.execute(
            select(BookingLock.visit_id)
            .where(
                BookingLock.resource == resource,
                BookingLock.unit.between(min(unit_set), max(unit_set)),
            )
            .distinct()
        )
        for (vid,) in held:
            found[(resource, vid)] = None
    out = []
    for key, vid in found:
        other = await db.get(Visit, vid)
        out.append(
            {
                "resource": key.split(":")[0],
                "key": key,
                "visit_id": vid,
                "starts_at": other.starts_at.isoformat() if other and other.starts_at else None,
                "ends_at": other.ends_at.isoformat() if other and other.ends_at else None,
            }
        )
    return out


_RESOURCE_NAMES = {"judge": "法官", "room": "接访室", "petitioner": "信访人", "user": "参会人员"}


def person_resource(user: User) -> str:
    """The lock resource of a staff member's time; whoever receives visits (a judge, a
    leader for 领导接访) has the one their visits hold, so their visits and meetings cannot
    overlap."""
    return f"judge:{user.id}" if user.role in RECEIVING_ROLES else f"user:{user.id}"


async def hold(db: AsyncSession, visit: Visit, resources: list[str]) -> list[dict[str, Any]]:
    """Add the new ``visit`` and lock each resource over its period (a meeting's people and
    room); the conflicts, and nothing written, when any unit is taken."""
    assert visit.starts_at is not None and visit.ends_at is not None
    period = Interval(visit.starts_at, visit.ends_at)
    rows = [
        {"resource": resource, "unit": unit, "visit_id": visit.id}
        for resource in resources
        for unit in units(period)
    ]
    return await _take_locks(db, rows, visit)


async def extend_hold(db: AsyncSession, visit: Visit, until: datetime) -> bool:
    """Hold what ``visit`` holds (its lock resources) on to ``until`` and move its end
    there; False, and nothing changed, when a unit of the extension is taken (or another
    node extended it first)."""
    assert visit.ends_at is not None
    held = (
        await db.execute(
            select(BookingLock.resource, BookingLock.unit).where(BookingLock.visit_id == visit.id)
        )
    ).all()
    resources = sorted({resource for resource, _ in held})
    taken = {(resource, unit) for resource, unit in held}
    rows = [
        {"resource": resource, "unit": unit, "visit_id": visit.id}
        for resource in resources
        for unit in units(Interval(visit.ends_at, until))
        if (resource, unit) not in taken
    ]
    if not resources or until <= visit.ends_at:
        return False
    if rows and await _take_locks(db, rows):
        return False
    moved = await db.execute(
        update(Visit)
        .where(Visit.id == visit.id, Visit.ends_at == visit.ends_at)
        .values(ends_at=until)
        .execution_options(synchronize_session=False)
    )
    if getattr(moved, "rowcount", 1) != 1:
        return False
    visit.ends_at = until
    return True


_INSERT_LOCKS = prepared(insert(table_of(BookingLock)))
_INSERT_VISIT_EVENT = prepared(insert(table_of(VisitEvent)))
_INSERT_AUDITS = prepared(insert(table_of(AuditEvent)))


async def _take_locks(
    db: AsyncSession, rows: list[dict[str, Any]], visit: Visit | None = None
) -> list[dict[str, Any]]:
    """Insert the locks (and a new visit) in a savepoint; returns the conflicts when any
    unit is taken, and then nothing of the attempt remains. The new visit is written as a
    row (no unit of work) and then belongs to the session as if it had been loaded."""
    try:
        async with savepoint(db):  # statements alone inside: SQLite's own savepoint
            if visit is not None:
                await add_row(db, visit)
            await db.execute(_INSERT_LOCKS, rows)
    except IntegrityError:
        if visit is not None and visit in db:
            db.expunge(visit)
        return await _conflicts(db, rows) or [{"resource": "unknown", "visit_id": None}]
    return []


def _conflict_error(conflicts: list[dict[str, Any]]) -> ConflictError:
    names = "、".join(sorted({_RESOURCE_NAMES.get(c["resource"], "资源") for c in conflicts}))
    return ConflictError(
        f"时间冲突：{names}在该时段已有预约",
        code="double_booking",
        details={"conflicts": conflicts},
    )


_PETITIONER_OF = prepared(
    select(table_of(Petition).c.petitioner_id).where(
        table_of(Petition).c.id == bindparam("petition_id")
    )
)


async def petitioner_of(db: AsyncSession, petition_id: int) -> int | None:
    """The petitioner of a petition (None when there is no such petition): one column."""
    found = (await db.execute(_PETITIONER_OF, {"petition_id": petition_id})).first()
    return None if found is None else int(found[0])


def hosting_court(actor: Actor, petition: Petition) -> int | None:
    """The court whose reception room the petitioner sits in, for a visit of this case
    booked by ``actor``: an operator's own court when it registered the case or handles it
    now (a case handed down by 交办 is booked by the court below); an admin's (the walk-in
    queue acts as one, for the court that queued), the same, else the handling court.
    None: ``actor`` may not book a visit of this case."""
    handling = petition.handler_court_id or petition.court_id
    may = actor.is_admin or actor.role is Role.operator
    if may and actor.court_id is not None and actor.court_id in (petition.court_id, handling):
        return actor.court_id
    return handling if actor.is_admin else None


async def booking_petition(db: AsyncSession, actor: Actor, petition_id: int) -> Petition:
    petition = await db.get(Petition, petition_id)
    if petition is None:
        raise NotFoundError(f"信访事项 {petition_id} 不存在")
    if not actor.is_admin and actor.role is not Role.operator:
        raise PermissionDeniedError("只有操作员可以预约接访")
    if hosting_court(actor, petition) is None:
        raise NotFoundError(f"信访事项 {petition_id} 不存在")  # another court's: not visible
    return petition


async def open_case(db: AsyncSession, actor: Actor, petition_id: int) -> Petition:
    """The case a visit is booked from: visible to ``actor`` and not closed (409)."""
    petition = await booking_petition(db, actor, petition_id)
    case_visits.require_open_case(petition)
    return petition


@dataclass
class BookingPlan:
    """A validated booking, ready to be written: what :func:`plan_booking` found."""

    petition: Petition
    booking: Booking
    candidates: list[User]
    operators: set[int]
    now: datetime


# The petition, room, receiving court and named judge of a booking in one statement.
_PREFETCH = (
    select(Petition, ReceptionRoom, Court, User)
    .select_from(Petition)
    .outerjoin(ReceptionRoom, ReceptionRoom.id == bindparam("room_id"))
    .outerjoin(Court, Court.id == bindparam("court_id"))
    .outerjoin(User, User.id == bindparam("judge_id"))
    .where(Petition.id == bindparam("petition_id"))
)
_OPERATORS = prepared(
    select(User.__table__.c.id).where(
        User.__table__.c.court_id == bindparam("court_id"),
        User.__table__.c.role == Role.operator,
        User.__table__.c.active,
    )
)


async def plan_booking(
    db: AsyncSession,
    actor: Actor,
    settings: Settings,
    *,
    petition_id: int,
    receiving_court_id: int,
    judge_id: int | None,
    room_id: int,
    starts_at: datetime,
    ends_at: datetime | None = None,
    now: datetime | None = None,
    kind: VisitKind = VisitKind.reception,
) -> BookingPlan:
    """Every check that only reads: scope, rules, calendars. Needs no write lock."""
    now = now or utcnow()
    # The petition, room, receiving court and named judge in one statement: the checks
    # below then find them in the session (no statement each).
    prefetch = {
        "petition_id": petition_id,
        "room_id": room_id,
        "court_id": receiving_court_id,
        "judge_id": judge_id,
    }
    # kept while the checks run: the session's identity map holds objects only weakly
    found = (await db.execute(_PREFETCH, prefetch)).all()
    petition = await open_case(db, actor, petition_id)
    host = hosting_court(actor, petition)
    assert host is not None  # open_case refused otherwise
    b = await _validate(
        db,
        actor,
        settings,
        petition=petition,
        host_court_id=host,
        receiving_court_id=receiving_court_id,
        judge_id=judge_id,
        room_id=room_id,
        starts_at=starts_at,
        ends_at=ends_at,
        now=now,
        kind=kind,
    )
    candidates = await _check_calendar(db, settings, b)
    operators = set((await db.scalars(_OPERATORS, {"court_id": host})).all())
    del found
    return BookingPlan(petition, b, candidates, operators, now)


async def commit_booking(
    db: AsyncSession,
    actor: Actor,
    settings: Settings,
    plan: BookingPlan,
    *,
    state: VisitState = VisitState.scheduled,
    walk_in: bool = False,
    checkin: tuple[str, str] | None = None,
) -> Visit:
    """Write the visit and take its locks; the first free candidate judge receives.

    The locks' primary key is what prevents double booking, whatever was read before.
    """
    petition, b = plan.petition, plan.booking
    conflicts: list[dict[str, Any]] = []
    for judge in plan.candidates:
        visit = Visit(
            id=new_visit_id(),
            petition_id=petition.id,
            court_id=b.host_court_id,
            receiving_court_id=b.receiving.id,
            judge_id=judge.id,
            room_id=b.room.id,
            state=state,
            starts_at=b.period.start,
            ends_at=b.period.end,
            booked_by=actor.user_id,
            walk_in=walk_in,
            kind=b.kind,
        )
        if checkin is not None:
            visit.checkin_document_type, visit.checkin_document_masked = checkin
            visit.checked_in_by, visit.checked_in_at = actor.user_id, plan.now
        conflicts = await _take_locks(
            db,
            _lock_rows(visit.id, b.period, judge.id, b.room.id, petition.petitioner_id),
            visit,
        )
        if conflicts:
            if any(c["resource"] in ("room", "petitioner") for c in conflicts):
                break  # another judge would not help
            continue
        # The history, audit, timeline and notification rows are written as statements (no
        # unit of work): the two audit events in one. The visit is no contact of its case
        # until it takes place (the lifecycle adds it when the call starts).
        kind = VisitEventKind.walk_in if walk_in else VisitEventKind.booked
        await db.execute(
            _INSERT_VISIT_EVENT,
            visit_event_values(
                actor,
                visit,
                kind,
                None,
                state,
                starts_at=b.period.start.isoformat(),
                ends_at=b.period.end.isoformat(),
                judge_id=judge.id,
                room_id=b.room.id,
            ),
        )
        case_rows = case_visits.visit_booked_rows(
            actor, settings, visit=visit, petition=petition, receiver=judge, receiving=b.receiving
        )
        audits = [
            audit_visit_values(
                actor,
                "visit.walk_in" if walk_in else "visit.book",
                visit,
                petition=petition.number,
                judge_id=judge.id,
                room_id=b.room.id,
                starts_at=audit_time(b.period.start, settings.tz),
                kind=b.kind.value,
            ),
            case_rows.audit,
        ]
        await db.execute(_INSERT_AUDITS, audits)
        await case_visits.visit_booked(db, case_rows)
        await notify_now(
            db,
            (plan.operators | {judge.id}) - {actor.user_id},
            kind="visit_booked",
            title=f"新预约：{petition.number}"
            + ("" if b.kind is VisitKind.reception else f"（{label(b.kind)}）"),
            body=f"{local_text(b.period.start, settings)} · {b.room.name}",
            visit_id=visit.id,
        )
        return visit
    raise _conflict_error(conflicts)


async def book_visit(
    db: AsyncSession,
    actor: Actor,
    settings: Settings,
    *,
    petition_id: int,
    receiving_court_id: int,
    judge_id: int | None,
    room_id: int,
    starts_at: datetime,
    ends_at: datetime | None = None,
    now: datetime | None = None,
    state: VisitState = VisitState.scheduled,
    walk_in: bool = False,
    checkin: tuple[str, str] | None = None,
    kind: VisitKind = VisitKind.reception,
) -> Visit:
    """Book a visit in one session; 409 with the conflicting visits when a judge, room or
    petitioner is taken. Without ``judge_id`` the first free judge of the court receives."""
    plan = await plan_booking(
        db,
        actor,
        settings,
        petition_id=petition_id,
        receiving_court_id=receiving_court_id,
        judge_id=judge_id,
        room_id=room_id,
        starts_at=starts_at,
        ends_at=ends_at,
        now=now,
        kind=kind,
    )
    return await commit_booking(
        db, actor, settings, plan, state=state, walk_in=walk_in, checkin=checkin
    )


async def reschedule_visit(
    db: AsyncSession,
    actor: Actor,
    settings: Settings,
    visit_id: str,
    *,
    starts_at: datetime,
    ends_at: datetime | None,
    judge_id: int | None,
    room_id: int | None,
    reason: str,
    now: datetime | None = None,
) -> Visit:
    """Move a visit that has not begun to another time, judge or room (409 when what it
    moves to is taken). Its case has no contact of it to move: a visit is a contact only
    once it takes place (``scheduler/cases/visits.py``), counted on the day it does."""
    now = now or utcnow()
    visit = await visible_visit(db, actor, visit_id)
    may_manage(actor, visit)
    if visit.state not in (VisitState.scheduled, VisitState.checked_in):
        raise ConflictError(f"{label(visit.state)}的接访不能改期", code="invalid_state")
    petition = await db.get(Petition, visit.petition_id)
    assert petition is not None
    if ends_at is None and visit.starts_at and visit.ends_at:
        ends_at = starts_at + (visit.ends_at - visit.starts_at)
    b = await _validate(
        db,
        actor,
        settings,
        petition=petition,
        host_court_id=visit.court_id,
        receiving_court_id=visit.receiving_court_id,
        judge_id=judge_id if judge_id is not None else visit.judge_id,
        room_id=room_id or visit.room_id or 0,
        starts_at=starts_at,
        ends_at=ends_at,
        now=now,
        kind=visit.kind,
    )
    candidates = await _check_calendar(db, settings, b)
    judge = candidates[0]
    old = (visit.starts_at, visit.ends_at, visit.judge_id, visit.room_id)
    was = visit.state
    # A check-in is for the day it was made: moved, the visit is checked in again on its
    # new day, and no code given for the old time opens it.
    unchecked = (
        {
            "state": VisitState.scheduled,
            "checkin_document_type": "",
            "checkin_document_masked": "",
            "checked_in_by": None,
            "checked_in_at": None,
        }
        if was is VisitState.checked_in
        else {}
    )
    # Conditional on the state it was read in: a concurrent cancel or no-show wins, and the
    # row is locked (PostgreSQL) until this transaction ends.
    moved = await db.execute(
        update(Visit)
        .where(Visit.id == visit.id, Visit.state == was)
        .values(
            starts_at=b.period.start,
            ends_at=b.period.end,
            judge_id=judge.id,
            room_id=b.room.id,
            reminded_at=None,
            updated_at=utcnow(),
            **unchecked,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(moved, "rowcount", 1) != 1:
        raise ConflictError("接访状态已被他人修改，请刷新", code="state_changed")
    await db.execute(delete(BookingLock).where(BookingLock.visit_id == visit.id))
    conflicts = await _take_locks(
        db, _lock_rows(visit.id, b.period, judge.id, b.room.id, petition.petitioner_id)
    )
    if conflicts:
        raise _conflict_error(conflicts)
    visit.starts_at, visit.ends_at = b.period.start, b.period.end
    visit.judge_id, visit.room_id = judge.id, b.room.id
    visit.reminded_at = None
    for name, value in unchecked.items():
        setattr(visit, name, value)
    await db.execute(
        update(VisitCode)
        .where(
            VisitCode.visit_id == visit.id,
            VisitCode.used_at.is_(None),
            VisitCode.revoked_at.is_(None),
        )
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    detail = {
        "from": [audit_time(t, settings.tz) if t else None for t in old[:2]],
        "to": [audit_time(b.period.start, settings.tz), audit_time(b.period.end, settings.tz)],
        "judge": [old[2], judge.id],
        "room": [old[3], b.room.id],
        "reason": reason,
    }
    visit_event(db, actor, visit, VisitEventKind.rescheduled, was, visit.state, **detail)
    audit_visit(db, actor, "visit.reschedule", visit, **detail)
    await notify(
        db,
        [*await visit_recipients(db, visit, actor.user_id), old[2]],
        kind="visit_changed",
        title=f"接访改期：{petition.number}",
        body=f"改至 {local_text(b.period.start, settings)}（{reason}）",
        visit_id=visit.id,
    )
    return visit


@dataclass(frozen=True)
class FreeSlot:
    """A bookable period with the judge who would receive."""

    starts_at: datetime
    ends_at: datetime
    judge_id: int
    judge_name: str


class _Judge(NamedTuple):
    id: int
    court_id: int | None
    display_name: str


def _search_statements() -> tuple[Select[Any], ...]:
    u, v, p = User.__table__.c, Visit.__table__.c, Petition.__table__.c
    r = ReceptionRoom.__table__.c
    receivers = select(u.id, u.court_id, u.display_name).where(
        u.court_id == bindparam("court_id"), u.role == bindparam("role"), u.active
    )
    in_window = and_(
        # equalities, not IN (…): SQLite reads them as IN, and no list is expanded per call
        or_(*(v.state == state for state in OPEN)),
        v.starts_at < bindparam("until"),
        v.ends_at > bindparam("since"),
    )
    room = v.room_id == bindparam("room_id")
    petitioner = v.petition_id.in_(
        select(p.id).where(p.petitioner_id == bindparam("petitioner_id")).scalar_subquery()
    )
    return (
        select(r.id, r.court_id).where(r.id == bindparam("room_id")),
        receivers,
        select(v.starts_at, v.ends_at).where(in_window, room),
        select(v.starts_at, v.ends_at).where(in_window, or_(room, petitioner)),
        select(v.judge_id, v.starts_at, v.ends_at).where(
            in_window, v.judge_id.in_(bindparam("judge_ids", expanding=True))
        ),
    )


# The free-slot search's statements, built once of table columns (see load_calendar).
_ROOM, _RECEIVERS, _ROOM_BUSY, _ROOM_OR_PETITIONER_BUSY, _JUDGES_BUSY = map(
    prepared, _search_statements()
)


async def find_free_slots(
    db: AsyncSession,
    settings: Settings,
    *,
    room_id: int,
    receiving_court_id: int | None,
    judge_id: int | None,
    petitioner_id: int | None,
    first_day: date,
    days: int,
    limit: int,
    now: datetime | None = None,
    kind: VisitKind = VisitKind.reception,
) -> list[FreeSlot]:
    """The earliest free slots that fit the room, over ``days`` local days; the receivers
    are the kind's (judges, or court leaders for 领导接访)."""
    now = now or utcnow()
    tz = settings.tz
    room = (await db.execute(_ROOM, {"room_id": room_id})).first()
    if room is None:
        raise NotFoundError(f"接访室 {room_id} 不存在")
    role = receiver_role(kind)
    judges: list[_Judge]
    if judge_id is not None:
        one = await db.get(User, judge_id)
        if one is None or one.role is not role:
            raise NotFoundError(f"{label(role)} {judge_id} 不存在")
        judges = [_Judge(one.id, one.court_id, one.display_name)] if one.active else []
    elif receiving_court_id is not None:
        rows = await db.execute(_RECEIVERS, {"court_id": receiving_court_id, "role": role})
        judges = [_Judge(*row) for row in rows]
    else:
        raise InvalidError("请指定接访法院或法官", code="court_or_judge_required")
    last_day = first_day + timedelta(days=days - 1)
    cal = await load_calendar(
        db, [(j.id, j.court_id or 0) for j in judges], room, first_day, last_day, tz
    )
    since = datetime.combine(first_day, datetime.min.time(), tzinfo=tz)
    until = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    window = {"since": since, "until": until}
    shared = (
        await db.execute(
            _ROOM_OR_PETITIONER_BUSY, {**window, "room_id": room.id, "petitioner_id": petitioner_id}
        )
        if petitioner_id
        else await db.execute(_ROOM_BUSY, {**window, "room_id": room.id})
    )
    shared_busy = BusyIndex((s, e) for s, e in shared if s and e)
    judge_busy: dict[int, list[Span]] = {}
    busy_rows = await db.execute(_JUDGES_BUSY, {**window, "judge_ids": [j.id for j in judges]})
    for jid, s, e in busy_rows:
        if jid is not None and s and e:
            judge_busy.setdefault(jid, []).append((s, e))
    busy = {j.id: BusyIndex(judge_busy.get(j.id, ())) for j in judges}
    out: list[tuple[datetime, int, datetime, str]] = []
    starts: list[datetime] = []  # of ``out``, sorted
    # Day by day, earliest first: once a day fills the limit, later days cannot matter.
    for day in local_days(first_day, last_day):
        # the room's free stretches (open, and neither it nor the petitioner booked): a
        # day the room is full is passed over without looking at a judge
        room_free = shared_busy.free_parts((i.start, i.end) for i in cal.room_day(day))
        if not room_free:
            continue
        for judge in judges:
            # once ``limit`` slots are found, one starting after the last of them cannot
            # be among the first ``limit``: the next judges' search stops there
            for start, end in free_pairs(
                cal.judge_day(judge.id, day),
                open_spans=room_free,
                busy=busy[judge.id],
                not_before=now,
                limit=limit,
                not_after=starts[limit - 1] if len(starts) >= limit else None,
            ):
                out.append((start, judge.id, end, judge.display_name))
                bisect.insort(starts, start)
        if len(out) >= limit:
            break
    out.sort(key=lambda s: (s[0], s[1]))
    return [FreeSlot(start, end, jid, name) for start, jid, end, name in out[:limit]]
