"""Booking visits: no double booking (database-enforced), reschedule, cancel, check-in,
state transitions, free-slot search, walk-ins, and the periodic housekeeping."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, false, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import audit_time, record_audit
from config.db import utcnow
from config.errors import ConflictError, InvalidError, NotFoundError, PermissionDeniedError
from config.privacy import mask_id_number
from config.settings import Settings
from scheduler.availability import load_calendar, local_span
from scheduler.models import (
    BookingLock,
    Court,
    Petition,
    ReceptionRoom,
    Role,
    User,
    Visit,
    VisitEvent,
    VisitEventKind,
    VisitState,
    WalkIn,
    WalkInStatus,
    new_visit_id,
)
from scheduler.notify import OUTBOX, notify, visit_recipients
from scheduler.scope import Actor, ancestor_court_ids, court_scope
from scheduler.slots import BusyIndex, Interval, aligned, covered, free_slots, units
from scheduler.slots import days as local_days

ACTIVE = (VisitState.scheduled, VisitState.checked_in, VisitState.in_lobby, VisitState.in_progress)
ALLOWED: dict[VisitState, frozenset[VisitState]] = {
    VisitState.scheduled: frozenset(
        {VisitState.checked_in, VisitState.cancelled, VisitState.no_show}
    ),
    VisitState.checked_in: frozenset(
        {VisitState.in_lobby, VisitState.cancelled, VisitState.no_show}
    ),
    VisitState.in_lobby: frozenset(
        {VisitState.in_progress, VisitState.checked_in, VisitState.ended, VisitState.cancelled}
    ),
    VisitState.in_progress: frozenset({VisitState.ended}),
    VisitState.ended: frozenset({VisitState.archived}),
    VisitState.archived: frozenset(),
    VisitState.cancelled: frozenset(),
    VisitState.no_show: frozenset(),
}
RELEASES = frozenset({VisitState.ended, VisitState.cancelled, VisitState.no_show})
STATE_NAMES = {
    VisitState.scheduled: "已预约",
    VisitState.checked_in: "已签到",
    VisitState.in_lobby: "候场中",
    VisitState.in_progress: "接访中",
    VisitState.ended: "已结束",
    VisitState.archived: "已归档",
    VisitState.cancelled: "已取消",
    VisitState.no_show: "未到场",
}
MAX_VISIT = timedelta(hours=4)


# ---------------------------------------------------------------- helpers


def _audit(db: AsyncSession, actor: Actor, action: str, visit: Visit, **detail: Any) -> None:
    record_audit(
        db,
        action=action,
        actor_id=actor.user_id,
        actor_name=actor.username,
        actor_type="user" if actor.user_id is not None else "system",
        target_type="visit",
        target_id=visit.id,
        address=actor.address,
        court_id=visit.court_id,
        detail=detail,
    )


def _event(
    db: AsyncSession,
    actor: Actor,
    visit: Visit,
    kind: VisitEventKind,
    from_state: VisitState | None,
    to_state: VisitState | None,
    **detail: Any,
) -> None:
    db.add(
        VisitEvent(
            visit_id=visit.id,
            at=utcnow(),
            kind=kind,
            from_state=from_state.value if from_state else None,
            to_state=to_state.value if to_state else None,
            actor_id=actor.user_id,
            actor_name=actor.username,
            detail=detail,
        )
    )


def _local(instant: datetime, settings: Settings) -> str:
    return instant.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")


async def visible_visit(db: AsyncSession, actor: Actor, visit_id: str) -> Visit:
    """The visit if ``actor`` may see it, else 404 (as if it did not exist)."""
    visit = await db.get(Visit, visit_id)
    if visit is None or not await _may_see(db, actor, visit):
        raise NotFoundError("接访记录不存在")
    return visit


async def _may_see(db: AsyncSession, actor: Actor, visit: Visit) -> bool:
    if actor.is_admin:
        return True
    if actor.role is Role.judge:
        return visit.receiving_court_id == actor.court_id
    scope = await court_scope(db, actor)
    return (
        scope is None
        or visit.court_id in scope
        or (actor.role is Role.archivist and visit.receiving_court_id in scope)
    )


def may_manage(actor: Actor, visit: Visit) -> None:
    """Operators of the booking court (and admins) change bookings."""
    if actor.is_admin or (actor.role is Role.operator and actor.court_id == visit.court_id):
        return
    raise PermissionDeniedError("只有本院操作员可以修改此预约")


# ---------------------------------------------------------------- validation


@dataclass
class Booking:
    """Validated parts of a booking request."""

    petition: Petition
    receiving: Court
    room: ReceptionRoom
    period: Interval
    judges: list[User]  # candidates, in order of preference


async def _validate(
    db: AsyncSession,
    actor: Actor,
    settings: Settings,
    *,
    petition: Petition,
    receiving_court_id: int,
    judge_id: int | None,
    room_id: int,
    starts_at: datetime,
    ends_at: datetime | None,
    now: datetime,
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
    if room is None or room.court_id != petition.court_id:
        raise InvalidError("只能使用本院的接访室", code="room_of_other_court")
    if not room.active:
        raise InvalidError("该接访室已停用", code="room_inactive")
    ancestors = await ancestor_court_ids(db, petition.court_id)
    if receiving_court_id not in ancestors:
        raise InvalidError("接访法院必须是信访人所在法院的上级法院", code="not_a_parent_court")
    receiving = await db.get(Court, receiving_court_id)
    assert receiving is not None
    if judge_id is not None:
        judge = await db.get(User, judge_id)
        if judge is None or judge.role is not Role.judge or not judge.active:
            raise InvalidError("所选法官不存在或已停用", code="invalid_judge")
        if judge.court_id != receiving_court_id:
            raise InvalidError("所选法官不属于接访法院", code="judge_of_other_court")
        judges = [judge]
    else:
        judges = list(
            (
                await db.scalars(
                    select(User)
                    .where(
                        User.court_id == receiving_court_id, User.role == Role.judge, User.active
                    )
                    .order_by(User.id)
                )
            ).all()
        )
    return Booking(petition, receiving, room, Interval(starts_at, ends_at), judges)


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
        raise InvalidError("所选时间不在法官的接访时间内", code="outside_reception_hours")
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
            found[(resource.split(":")[0], vid)] = None
    out = []
    for kind, vid in found:
        other = await db.get(Visit, vid)
        out.append(
            {
                "resource": kind,
                "visit_id": vid,
                "starts_at": other.starts_at.isoformat() if other and other.starts_at else None,
                "ends_at": other.ends_at.isoformat() if other and other.ends_at else None,
            }
        )
    return out


_RESOURCE_NAMES = {"judge": "法官", "room": "接访室", "petitioner": "信访人"}


async def _take_locks(
    db: AsyncSession, rows: list[dict[str, Any]], visit: Visit | None = None
) -> list[dict[str, Any]]:
    """Insert the locks (and a new visit) in a savepoint; returns the conflicts when any
    unit is taken, and then nothing of the attempt remains."""
    try:
        async with db.begin_nested():
            if visit is not None:
                db.add(visit)
                await db.flush()
            await db.execute(insert(BookingLock), rows)
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


# ---------------------------------------------------------------- booking


async def _booking_petition(db: AsyncSession, actor: Actor, petition_id: int) -> Petition:
    petition = await db.get(Petition, petition_id)
    if petition is None:
        raise NotFoundError(f"信访事项 {petition_id} 不存在")
    if actor.is_admin:
        return petition
    if actor.role is not Role.operator:
        raise PermissionDeniedError("只有操作员可以预约接访")
    if petition.court_id != actor.court_id:
        raise NotFoundError(f"信访事项 {petition_id} 不存在")  # another court's: not visible
    return petition


@dataclass
class BookingPlan:
    """A validated booking, ready to be written: what :func:`plan_booking` found."""

    petition: Petition
    booking: Booking
    candidates: list[User]
    operators: set[int]
    now: datetime


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
) -> BookingPlan:
    """Every check that only reads: scope, rules, calendars. Needs no write lock."""
    now = now or utcnow()
    petition = await _booking_petition(db, actor, petition_id)
    b = await _validate(
        db,
        actor,
        settings,
        petition=petition,
        receiving_court_id=receiving_court_id,
        judge_id=judge_id,
        room_id=room_id,
        starts_at=starts_at,
        ends_at=ends_at,
        now=now,
    )
    candidates = await _check_calendar(db, settings, b)
    operators = set(
        (
            await db.scalars(
                select(User.id).where(
                    User.court_id == petition.court_id, User.role == Role.operator, User.active
                )
            )
        ).all()
    )
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
            court_id=petition.court_id,
            receiving_court_id=b.receiving.id,
            judge_id=judge.id,
            room_id=b.room.id,
            state=state,
            starts_at=b.period.start,
            ends_at=b.period.end,
            booked_by=actor.user_id,
            walk_in=walk_in,
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
        kind = VisitEventKind.walk_in if walk_in else VisitEventKind.booked
        _event(
            db,
            actor,
            visit,
            kind,
            None,
            state,
            starts_at=b.period.start.isoformat(),
            ends_at=b.period.end.isoformat(),
            judge_id=judge.id,
            room_id=b.room.id,
        )
        _audit(
            db,
            actor,
            "visit.walk_in" if walk_in else "visit.book",
            visit,
            petition=petition.number,
            judge_id=judge.id,
            room_id=b.room.id,
            starts_at=audit_time(b.period.start, settings.tz),
        )
        await notify(
            db,
            (plan.operators | {judge.id}) - {actor.user_id},
            kind="visit_booked",
            title=f"新预约：{petition.number}",
            body=f"{_local(b.period.start, settings)} · {b.room.name}",
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
    now = now or utcnow()
    visit = await visible_visit(db, actor, visit_id)
    may_manage(actor, visit)
    if visit.state not in (VisitState.scheduled, VisitState.checked_in):
        raise ConflictError(f"{STATE_NAMES[visit.state]}的接访不能改期", code="invalid_state")
    petition = await db.get(Petition, visit.petition_id)
    assert petition is not None
    if ends_at is None and visit.starts_at and visit.ends_at:
        ends_at = starts_at + (visit.ends_at - visit.starts_at)
    b = await _validate(
        db,
        actor,
        settings,
        petition=petition,
        receiving_court_id=visit.receiving_court_id,
        judge_id=judge_id if judge_id is not None else visit.judge_id,
        room_id=room_id or visit.room_id or 0,
        starts_at=starts_at,
        ends_at=ends_at,
        now=now,
    )
    candidates = await _check_calendar(db, settings, b)
    judge = candidates[0]
    old = (visit.starts_at, visit.ends_at, visit.judge_id, visit.room_id)
    # Conditional on the state it was read in: a concurrent cancel or no-show wins, and the
    # row is locked (PostgreSQL) until this transaction ends.
    moved = await db.execute(
        update(Visit)
        .where(Visit.id == visit.id, Visit.state == visit.state)
        .values(
            starts_at=b.period.start,
            ends_at=b.period.end,
            judge_id=judge.id,
            room_id=b.room.id,
            reminded_at=None,
            updated_at=utcnow(),
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
    detail = {
        "from": [audit_time(t, settings.tz) if t else None for t in old[:2]],
        "to": [audit_time(b.period.start, settings.tz), audit_time(b.period.end, settings.tz)],
        "judge": [old[2], judge.id],
        "room": [old[3], b.room.id],
        "reason": reason,
    }
    _event(db, actor, visit, VisitEventKind.rescheduled, visit.state, visit.state, **detail)
    _audit(db, actor, "visit.reschedule", visit, **detail)
    await notify(
        db,
        [*await visit_recipients(db, visit, actor.user_id), old[2]],
        kind="visit_changed",
        title=f"接访改期：{petition.number}",
        body=f"改至 {_local(b.period.start, settings)}（{reason}）",
        visit_id=visit.id,
    )
    return visit


async def _set_state(
    db: AsyncSession, actor: Actor, visit: Visit, to: VisitState, **detail: Any
) -> None:
    """Move ``visit`` to ``to`` if allowed; a concurrent change answers 409."""
    current = visit.state
    if to not in ALLOWED[current]:
        raise ConflictError(
            f"接访状态不能从“{STATE_NAMES[current]}”变为“{STATE_NAMES[to]}”",
            code="invalid_transition",
            details={"from": current.value, "to": to.value},
        )
    result = await db.execute(
        update(Visit)
        .where(Visit.id == visit.id, Visit.state == current)
        .values(state=to, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 1) != 1:
        raise ConflictError("接访状态已被他人修改，请刷新", code="state_changed")
    visit.state = to
    if to in RELEASES:
        await db.execute(delete(BookingLock).where(BookingLock.visit_id == visit.id))
    kind = {
        VisitState.cancelled: VisitEventKind.cancelled,
        VisitState.checked_in: VisitEventKind.checked_in,
    }.get(to, VisitEventKind.state)
    _event(db, actor, visit, kind, current, to, **detail)
    _audit(db, actor, f"visit.{to.value}", visit, from_state=current.value, **detail)


async def cancel_visit(
    db: AsyncSession, actor: Actor, settings: Settings, visit_id: str, *, reason: str
) -> Visit:
    visit = await visible_visit(db, actor, visit_id)
    if not (actor.role is Role.judge and visit.judge_id == actor.user_id):
        may_manage(actor, visit)
    await _set_state(db, actor, visit, VisitState.cancelled, reason=reason)
    visit.cancel_reason = reason
    petition = await db.get(Petition, visit.petition_id)
    await notify(
        db,
        await visit_recipients(db, visit, actor.user_id),
        kind="visit_cancelled",
        title=f"接访取消：{petition.number if petition else ''}",
        body=f"原定 {_local(visit.starts_at, settings) if visit.starts_at else ''}；原因：{reason}",
        visit_id=visit.id,
    )
    return visit


async def check_in(
    db: AsyncSession,
    actor: Actor,
    visit_id: str,
    *,
    document_type: str,
    document_number: str,
    now: datetime | None = None,
) -> Visit:
    """Record the identity check; only the masked number is kept."""
    visit = await visible_visit(db, actor, visit_id)
    may_manage(actor, visit)
    masked = mask_id_number(document_number.strip().upper())
    await _set_state(
        db, actor, visit, VisitState.checked_in, document_type=document_type, document=masked
    )
    visit.checkin_document_type, visit.checkin_document_masked = document_type, masked
    visit.checked_in_by, visit.checked_in_at = actor.user_id, now or utcnow()
    petition = await db.get(Petition, visit.petition_id)
    await notify(
        db,
        [visit.judge_id],
        kind="petitioner_checked_in",
        title=f"信访人已签到：{petition.number if petition else ''}",
        visit_id=visit.id,
    )
    return visit


async def change_state(
    db: AsyncSession, actor: Actor, visit_id: str, to: VisitState, **detail: Any
) -> Visit:
    """Lobby and call transitions (in_lobby, in_progress, ended, archived).

    The live-visit signaling drives these; the API exposes them to the people who may.
    """
    visit = await visible_visit(db, actor, visit_id)
    if to in (VisitState.in_progress, VisitState.ended):
        if not (
            actor.is_admin
            or actor.user_id is None
            or (actor.role is Role.judge and actor.court_id == visit.receiving_court_id)
        ):
            raise PermissionDeniedError("只有接访法官可以开始或结束接访")
    elif to is VisitState.in_lobby:
        may_manage(actor, visit)
    elif to is VisitState.checked_in:
        # only back from the lobby; the identity check itself is POST /check-in
        if visit.state is not VisitState.in_lobby:
            raise ConflictError(
                "签到请使用身份核验；此处只能让候场的信访人退回", code="invalid_transition"
            )
        if not (actor.role is Role.judge and actor.court_id == visit.receiving_court_id):
            may_manage(actor, visit)
    elif to is VisitState.archived:
        if not (actor.is_admin or actor.user_id is None):
            raise PermissionDeniedError("归档由系统在录像处理完成后进行")
    else:
        raise InvalidError("请使用签到或取消接口", code="use_specific_route")
    await _set_state(db, actor, visit, to, **detail)
    if to is VisitState.in_lobby:
        petition = await db.get(Petition, visit.petition_id)
        await notify(
            db,
            [visit.judge_id],
            kind="petitioner_waiting",
            title=f"信访人正在候场：{petition.number if petition else ''}",
            visit_id=visit.id,
        )
    return visit


# ---------------------------------------------------------------- finding a time


@dataclass(frozen=True)
class FreeSlot:
    """A bookable period with the judge who would receive."""

    starts_at: datetime
    ends_at: datetime
    judge_id: int
    judge_name: str


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
) -> list[FreeSlot]:
    """The earliest free slots that fit the room, over ``days`` local days."""
    now = now or utcnow()
    tz = settings.tz
    room = await db.get(ReceptionRoom, room_id)
    if room is None:
        raise NotFoundError(f"接访室 {room_id} 不存在")
    if judge_id is not None:
        judge = await db.get(User, judge_id)
        if judge is None or judge.role is not Role.judge:
            raise NotFoundError(f"法官 {judge_id} 不存在")
        judges = [judge] if judge.active else []
    elif receiving_court_id is not None:
        judges = list(
            (
                await db.scalars(
                    select(User).where(
                        User.court_id == receiving_court_id, User.role == Role.judge, User.active
                    )
                )
            ).all()
        )
    else:
        raise InvalidError("请指定接访法院或法官", code="court_or_judge_required")
    last_day = first_day + timedelta(days=days - 1)
    cal = await load_calendar(
        db, [(j.id, j.court_id or 0) for j in judges], room, first_day, last_day, tz
    )
    since = datetime.combine(first_day, datetime.min.time(), tzinfo=tz)
    until = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    in_window = and_(Visit.state.in_(ACTIVE), Visit.starts_at < until, Visit.ends_at > since)
    shared = select(Visit.starts_at, Visit.ends_at).where(
        in_window,
        or_(
            Visit.room_id == room.id,
            Visit.petition_id.in_(
                select(Petition.id).where(Petition.petitioner_id == petitioner_id)
            )
            if petitioner_id
            else false(),
        ),
    )
    shared_busy = [Interval(s, e) for s, e in (await db.execute(shared)).all() if s and e]
    judge_busy: dict[int, list[Interval]] = {}
    rows = await db.execute(
        select(Visit.judge_id, Visit.starts_at, Visit.ends_at).where(
            in_window, Visit.judge_id.in_([j.id for j in judges])
        )
    )
    for jid, s, e in rows.all():
        if jid is not None and s and e:
            judge_busy.setdefault(jid, []).append(Interval(s, e))
    busy = {j.id: BusyIndex(shared_busy + judge_busy.get(j.id, [])) for j in judges}
    out: list[FreeSlot] = []
    # Day by day, earliest first: once a day fills the limit, later days cannot matter.
    for day in local_days(first_day, last_day):
        room_open = cal.room_day(day)
        if not room_open:
            continue
        for judge in judges:
            for slot in free_slots(
                cal.judge_day(judge.id, day),
                open_hours=room_open,
                busy=busy[judge.id],
                not_before=now,
                limit=limit,
            ):
                out.append(FreeSlot(slot.start, slot.end, judge.id, judge.display_name))
        if len(out) >= limit:
            break
    out.sort(key=lambda s: (s.starts_at, s.judge_id))
    return out[:limit]


# ---------------------------------------------------------------- lists


async def list_visits(
    db: AsyncSession,
    actor: Actor,
    settings: Settings,
    *,
    day: date | None,
    days: int = 1,
    court_id: int | None = None,
    judge_id: int | None = None,
    room_id: int | None = None,
    states: Sequence[VisitState] = (),
    limit: int = 500,
) -> Sequence[Visit]:
    """Visits in ``actor``'s scope, by local day(s) and filters, earliest first."""
    stmt = select(Visit)
    if actor.role is Role.judge:
        stmt = stmt.where(Visit.receiving_court_id == actor.court_id)
    else:
        scope = await court_scope(db, actor)
        if scope is not None:
            if actor.role is Role.archivist:
                stmt = stmt.where(
                    or_(Visit.court_id.in_(scope), Visit.receiving_court_id.in_(scope))
                )
            else:
                stmt = stmt.where(Visit.court_id.in_(scope))
    if day is not None:
        tz = settings.tz
        since = datetime.combine(day, datetime.min.time(), tzinfo=tz)
        stmt = stmt.where(Visit.starts_at >= since, Visit.starts_at < since + timedelta(days=days))
    if court_id is not None:
        stmt = stmt.where(or_(Visit.court_id == court_id, Visit.receiving_court_id == court_id))
    if judge_id is not None:
        stmt = stmt.where(Visit.judge_id == judge_id)
    if room_id is not None:
        stmt = stmt.where(Visit.room_id == room_id)
    if states:
        stmt = stmt.where(Visit.state.in_(states))
    return (await db.scalars(stmt.order_by(Visit.starts_at, Visit.id).limit(limit))).all()


async def visit_history(db: AsyncSession, visit_id: str) -> Sequence[VisitEvent]:
    return (
        await db.scalars(
            select(VisitEvent).where(VisitEvent.visit_id == visit_id).order_by(VisitEvent.id)
        )
    ).all()


# ---------------------------------------------------------------- walk-ins


@dataclass(frozen=True)
class WalkInResult:
    """Either a visit started now, or a place in the queue."""

    visit: Visit | None
    queued: WalkIn | None
    position: int = 0


def _next_unit(now: datetime) -> datetime:
    base = now.replace(second=0, microsecond=0)
    return base + timedelta(minutes=(-base.minute) % 5)


async def walk_in(
    db: AsyncSession,
    actor: Actor,
    settings: Settings,
    *,
    petition_id: int,
    receiving_court_id: int,
    room_id: int,
    document_type: str,
    document_number: str,
    now: datetime | None = None,
) -> WalkInResult:
    """Start a visit now with a free judge on duty, or queue for the next free one."""
    now = now or utcnow()
    petition = await _booking_petition(db, actor, petition_id)
    masked = mask_id_number(document_number.strip().upper())
    start = _next_unit(now)
    try:
        async with db.begin_nested():
            visit = await book_visit(
                db,
                actor,
                settings,
                petition_id=petition.id,
                receiving_court_id=receiving_court_id,
                judge_id=None,
                room_id=room_id,
                starts_at=start,
                now=now,
                state=VisitState.checked_in,
                walk_in=True,
                checkin=(document_type, masked),
            )
        return WalkInResult(visit=visit, queued=None)
    except (ConflictError, InvalidError) as exc:
        if exc.code not in ("double_booking", "outside_reception_hours"):
            raise
    waiting = await db.scalar(
        select(WalkIn.id).where(
            WalkIn.petition_id == petition.id, WalkIn.status == WalkInStatus.waiting
        )
    )
    if waiting:
        raise ConflictError("该信访事项已在候补队列中", code="already_queued")
    entry = WalkIn(
        petition_id=petition.id,
        court_id=petition.court_id,
        receiving_court_id=receiving_court_id,
        room_id=room_id,
        document_type=document_type,
        document_masked=masked,
        created_by=actor.user_id,
        created_at=now,
    )
    db.add(entry)
    await db.flush()
    position = await db.scalar(
        select(func.count())
        .select_from(WalkIn)
        .where(
            WalkIn.receiving_court_id == receiving_court_id,
            WalkIn.status == WalkInStatus.waiting,
            WalkIn.id <= entry.id,
        )
    )
    record_audit(
        db,
        action="visit.walk_in_queued",
        actor_id=actor.user_id,
        actor_name=actor.username,
        target_type="walk_in",
        target_id=entry.id,
        address=actor.address,
        court_id=petition.court_id,
        detail={"petition": petition.number},
    )
    return WalkInResult(visit=None, queued=entry, position=int(position or 1))


async def waiting_walk_ins(db: AsyncSession, actor: Actor) -> Sequence[WalkIn]:
    stmt = select(WalkIn).where(WalkIn.status == WalkInStatus.waiting).order_by(WalkIn.id)
    if actor.role is Role.judge:
        stmt = stmt.where(WalkIn.receiving_court_id == actor.court_id)
    elif not actor.is_admin:
        scope = await court_scope(db, actor)
        stmt = stmt.where(WalkIn.court_id.in_(scope or set()))
    return (await db.scalars(stmt)).all()


async def withdraw_walk_in(db: AsyncSession, actor: Actor, walk_in_id: int) -> WalkIn:
    entry = await db.get(WalkIn, walk_in_id)
    if entry is None or not (actor.is_admin or actor.court_id == entry.court_id):
        raise NotFoundError("候补记录不存在")
    if entry.status is not WalkInStatus.waiting:
        raise ConflictError("该候补已处理", code="invalid_state")
    entry.status = WalkInStatus.withdrawn
    record_audit(
        db,
        action="visit.walk_in_withdrawn",
        actor_id=actor.user_id,
        actor_name=actor.username,
        target_type="walk_in",
        target_id=entry.id,
        address=actor.address,
        court_id=entry.court_id,
    )
    return entry


# ---------------------------------------------------------------- housekeeping


SYSTEM = Actor(user_id=None, username="system", role=Role.admin, court_id=None)


async def housekeeping(
    db: AsyncSession, settings: Settings, now: datetime | None = None
) -> dict[str, int]:
    """Periodic work, safe to run on every node at once (each change is conditional):
    mark no-shows, send "starts in N minutes" reminders, seat queued walk-ins."""
    now = now or utcnow()
    done = {"no_show": 0, "reminded": 0, "walk_ins": 0}
    grace = timedelta(minutes=settings.no_show_grace_minutes)
    late = (
        await db.scalars(
            select(Visit)
            .where(
                # a checked-in petitioner is in the building: only unseen ones are no-shows
                Visit.state == VisitState.scheduled,
                Visit.starts_at <= now - grace,
            )
            .limit(200)
        )
    ).all()
    for visit in late:
        try:
            async with db.begin_nested():
                await _set_state(
                    db,
                    SYSTEM,
                    visit,
                    VisitState.no_show,
                    grace_minutes=settings.no_show_grace_minutes,
                )
            done["no_show"] += 1
        except ConflictError:
            continue
    soon = now + timedelta(minutes=settings.reminder_minutes)
    upcoming = (
        await db.scalars(
            select(Visit)
            .where(
                Visit.state.in_([VisitState.scheduled, VisitState.checked_in]),
                Visit.starts_at > now,
                Visit.starts_at <= soon,
                Visit.reminded_at.is_(None),
            )
            .limit(200)
        )
    ).all()
    for visit in upcoming:
        result = await db.execute(
            update(Visit)
            .where(Visit.id == visit.id, Visit.reminded_at.is_(None))
            .values(reminded_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 1) != 1:
            continue
        petition = await db.get(Petition, visit.petition_id)
        minutes = (
            max(1, round((visit.starts_at - now).total_seconds() / 60)) if visit.starts_at else 0
        )
        await notify(
            db,
            await visit_recipients(db, visit, None),
            kind="visit_starting",
            title=f"{minutes} 分钟后开始接访：{petition.number if petition else ''}",
            body=_local(visit.starts_at, settings) if visit.starts_at else "",
            visit_id=visit.id,
        )
        done["reminded"] += 1
    queue = (
        await db.scalars(
            select(WalkIn)
            .where(WalkIn.status == WalkInStatus.waiting)
            .order_by(WalkIn.id)
            .limit(50)
        )
    ).all()
    for entry in queue:
        outbox_before = len(db.info.get(OUTBOX, []))
        actor = Actor(
            user_id=entry.created_by, username="system", role=Role.admin, court_id=entry.court_id
        )
        try:
            async with db.begin_nested():
                visit = await book_visit(
                    db,
                    actor,
                    settings,
                    petition_id=entry.petition_id,
                    receiving_court_id=entry.receiving_court_id,
                    judge_id=None,
                    room_id=entry.room_id,
                    starts_at=_next_unit(now),
                    now=now,
                    state=VisitState.checked_in,
                    walk_in=True,
                    checkin=(entry.document_type, entry.document_masked),
                )
                claimed = await db.execute(
                    update(WalkIn)
                    .where(WalkIn.id == entry.id, WalkIn.status == WalkInStatus.waiting)
                    .values(status=WalkInStatus.assigned, visit_id=visit.id)
                    .execution_options(synchronize_session=False)
                )
                if getattr(claimed, "rowcount", 1) != 1:
                    raise ConflictError("claimed elsewhere", code="claimed")
            done["walk_ins"] += 1
        except (ConflictError, InvalidError):
            del db.info.get(OUTBOX, [])[outbox_before:]  # rolled back with the savepoint
            continue
    return done
