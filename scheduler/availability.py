"""Reception hours of judges, court holidays and leader days, room opening hours, duty roster."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import BindParameter, Select, and_, bindparam, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import audit_time, record_audit
from config.db import prepared
from config.errors import ConflictError, InvalidError, NotFoundError, PermissionDeniedError
from config.privacy import mask_phone
from scheduler.lifecycle import RECEIVING_ROLES
from scheduler.models import (
    AvailabilityException,
    Court,
    CourtDay,
    CourtDayKind,
    CourtLevel,
    DutyLawyer,
    DutyPeriod,
    ExceptionKind,
    Petition,
    ReceptionRoom,
    ReceptionTemplate,
    Role,
    RoomHours,
    User,
    Visit,
    VisitState,
)
from scheduler.notify import notify, visit_recipients
from scheduler.scope import Actor
from scheduler.slots import (
    WEEKDAY_NAMES,
    Interval,
    WeeklyRule,
    WeekTable,
    Window,
    by_weekday,
    covered,
    day_windows,
    local_day,
    local_instant,
    subtract,
)


def _audit(
    db: AsyncSession, actor: Actor, action: str, target: Any, court_id: int | None, **detail: Any
) -> None:
    record_audit(
        db,
        action=action,
        actor_id=actor.user_id,
        actor_name=actor.username,
        actor_type="user" if actor.user_id is not None else "system",
        target_type=type(target).__tablename__,
        target_id=getattr(target, "id", None),
        address=actor.address,
        court_id=court_id,
        detail=detail,
    )


def _check_hours(start_minute: int, end_minute: int) -> None:
    if not 0 <= start_minute < end_minute <= 1440:
        raise InvalidError("结束时间必须晚于开始时间，且在同一天内", code="invalid_hours")
    if start_minute % 5 or end_minute % 5:
        raise InvalidError("时间须为 5 分钟的整数倍", code="invalid_hours")


def _check_period(starts_at: datetime, ends_at: datetime, now: datetime | None = None) -> None:
    if ends_at <= starts_at:
        raise InvalidError("结束时间必须晚于开始时间", code="invalid_period")
    if now is not None and ends_at <= now:
        raise InvalidError("不能设置已经过去的时间", code="in_the_past")


async def judge_for_edit(db: AsyncSession, actor: Actor, judge_id: int) -> User:
    """The judge whose hours ``actor`` edits: themself, or any judge for an admin."""
    judge = await db.get(User, judge_id)
    if judge is None or judge.role not in RECEIVING_ROLES:  # judges, and leaders who receive
        raise NotFoundError(f"法官 {judge_id} 不存在")
    if actor.is_admin or actor.user_id == judge.id:
        return judge
    raise PermissionDeniedError("只能维护本人的接访时间")


# ---------------------------------------------------------------- weekly templates


async def list_templates(db: AsyncSession, judge_ids: Sequence[int]) -> Sequence[ReceptionTemplate]:
    stmt = select(ReceptionTemplate).where(ReceptionTemplate.judge_id.in_(judge_ids))
    return (
        await db.scalars(stmt.order_by(ReceptionTemplate.weekday, ReceptionTemplate.start_minute))
    ).all()


def _validity_overlaps(valid_from: date | None, valid_until: date | None) -> list[Any]:
    """Conditions under which a stored template's validity overlaps [from, until]."""
    t = ReceptionTemplate
    conditions: list[Any] = []
    if valid_from is not None:
        conditions.append(or_(t.valid_until.is_(None), t.valid_until >= valid_from))
    if valid_until is not None:
        conditions.append(or_(t.valid_from.is_(None), t.valid_from <= valid_until))
    return conditions


async def add_template(
    db: AsyncSession,
    actor: Actor,
    *,
    judge_id: int,
    weekday: int,
    start_minute: int,
    end_minute: int,
    slot_minutes: int,
    valid_from: date | None,
    valid_until: date | None,
) -> ReceptionTemplate:
    judge = await judge_for_edit(db, actor, judge_id)
    _check_hours(start_minute, end_minute)
    if slot_minutes % 5 or not 5 <= slot_minutes <= end_minute - start_minute:
        raise InvalidError(
            "每次接访时长须为 5 分钟的整数倍，且不超过时段长度", code="invalid_slot_minutes"
        )
    if valid_from and valid_until and valid_until < valid_from:
        raise InvalidError("有效期结束日期早于开始日期", code="invalid_period")
    overlapping = await db.scalar(
        select(ReceptionTemplate.id).where(
            ReceptionTemplate.judge_id == judge.id,
            ReceptionTemplate.weekday == weekday,
            ReceptionTemplate.start_minute < end_minute,
            ReceptionTemplate.end_minute > start_minute,
            *_validity_overlaps(valid_from, valid_until),
        )
    )
    if overlapping:
        raise ConflictError(
            "与该法官已有的每周接访时段重叠",
            code="overlapping_hours",
            details={"template_id": overlapping},
        )
    assert judge.court_id is not None
    row = ReceptionTemplate(
        judge_id=judge.id,
        court_id=judge.court_id,
        weekday=weekday,
        start_minute=start_minute,
        end_minute=end_minute,
        slot_minutes=slot_minutes,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    db.add(row)
    await db.flush()
    _audit(
        db,
        actor,
        "availability.template_add",
        row,
        judge.court_id,
        judge_id=judge.id,
        weekday=weekday,
        start=start_minute,
        end=end_minute,
    )
    return row


async def delete_template(db: AsyncSession, actor: Actor, template_id: int) -> None:
    row = await db.get(ReceptionTemplate, template_id)
    if row is None:
        raise NotFoundError(f"接访时段 {template_id} 不存在")
    await judge_for_edit(db, actor, row.judge_id)
    _audit(db, actor, "availability.template_delete", row, row.court_id, judge_id=row.judge_id)
    await db.delete(row)


# ---------------------------------------------------------------- one-off exceptions


async def list_exceptions(
    db: AsyncSession, judge_ids: Sequence[int], since: datetime, until: datetime
) -> Sequence[AvailabilityException]:
    stmt = select(AvailabilityException).where(
        AvailabilityException.judge_id.in_(judge_ids),
        AvailabilityException.ends_at > since,
        AvailabilityException.starts_at < until,
    )
    return (await db.scalars(stmt.order_by(AvailabilityException.starts_at))).all()


async def add_exception(
    db: AsyncSession,
    actor: Actor,
    *,
    judge_id: int,
    kind: ExceptionKind,
    starts_at: datetime,
    ends_at: datetime,
    slot_minutes: int,
    tz: ZoneInfo,
    note: str,
    now: datetime,
) -> tuple[AvailabilityException, list[Visit]]:
    """A one-off addition to or cancellation of a judge's hours; with a cancellation, the
    judge's visits booked in it (which it strands) and their bookers are told."""
    judge = await judge_for_edit(db, actor, judge_id)
    _check_period(starts_at, ends_at, now)
    if ends_at - starts_at > timedelta(days=62):
        raise InvalidError("单次调整不能超过 62 天", code="invalid_period")
    if kind is ExceptionKind.addition and (
        slot_minutes % 5 or not 5 <= slot_minutes <= (ends_at - starts_at).total_seconds() / 60
    ):
        raise InvalidError(
            "每次接访时长须为 5 分钟的整数倍，且不超过时段长度", code="invalid_slot_minutes"
        )
    same_kind_overlap = await db.scalar(
        select(AvailabilityException.id).where(
            AvailabilityException.judge_id == judge.id,
            AvailabilityException.kind == kind,
            AvailabilityException.starts_at < ends_at,
            AvailabilityException.ends_at > starts_at,
        )
    )
    if same_kind_overlap:
        raise ConflictError(
            "与已有的同类调整重叠",
            code="overlapping_hours",
            details={"exception_id": same_kind_overlap},
        )
    row = AvailabilityException(
        judge_id=judge.id,
        kind=kind,
        starts_at=starts_at,
        ends_at=ends_at,
        slot_minutes=slot_minutes,
        note=note,
    )
    db.add(row)
    await db.flush()
    _audit(
        db,
        actor,
        f"availability.{kind.value}",
        row,
        judge.court_id,
        judge_id=judge.id,
        starts_at=audit_time(starts_at, tz),
        ends_at=audit_time(ends_at, tz),
    )
    stranded: list[Visit] = []
    if kind is ExceptionKind.cancellation:
        stranded = await _stranded(db, starts_at, ends_at, judge_id=judge.id)
        why = f"法官取消了 {_local(starts_at, tz)} 起的接访时间"
        await _tell_stranded(db, actor, stranded, why)
    return row, stranded


async def delete_exception(db: AsyncSession, actor: Actor, exception_id: int) -> None:
    row = await db.get(AvailabilityException, exception_id)
    if row is None:
        raise NotFoundError(f"调整 {exception_id} 不存在")
    judge = await judge_for_edit(db, actor, row.judge_id)
    _audit(db, actor, "availability.exception_delete", row, judge.court_id)
    await db.delete(row)


# ---------------------------------------------------------------- court days


async def _court_for_edit(db: AsyncSession, actor: Actor, court_id: int) -> Court:
    court = await db.get(Court, court_id)
    if court is None:
        raise NotFoundError(f"法院 {court_id} 不存在")
    if actor.is_admin or (actor.court_id == court.id and actor.role in (Role.judge, Role.operator)):
        return court
    raise PermissionDeniedError("只能维护本院的日历")


async def list_court_days(
    db: AsyncSession, court_ids: Sequence[int], first: date, last: date
) -> Sequence[CourtDay]:
    stmt = select(CourtDay).where(
        CourtDay.court_id.in_(court_ids), CourtDay.day >= first, CourtDay.day <= last
    )
    return (await db.scalars(stmt.order_by(CourtDay.day))).all()


async def add_court_day(
    db: AsyncSession,
    actor: Actor,
    *,
    court_id: int,
    day: date,
    kind: CourtDayKind,
    note: str,
    tz: ZoneInfo,
    as_weekday: int | None = None,
) -> tuple[CourtDay, list[Visit]]:
    """Mark a day of the court; a holiday closes its judges and rooms that day, so the
    visits booked then with them (which it strands) and their bookers are told. A 调休上班日
    (a Saturday or Sunday) opens them with the hours of ``as_weekday`` (Monday … Friday)."""
    if kind is CourtDayKind.workday:
        if as_weekday is None:
            raise InvalidError("请选择调休上班日按星期几的接访时间安排", code="as_weekday_required")
        if day.weekday() < 5:
            raise InvalidError(
                f"{day.isoformat()} 本是工作日，调休上班日应为周六或周日", code="not_a_weekend"
            )
        if not 0 <= as_weekday <= 4:
            raise InvalidError("调休上班日应按周一至周五中某一天的时间安排", code="invalid_weekday")
    elif as_weekday is not None:
        raise InvalidError("只有调休上班日按星期几安排接访时间", code="as_weekday_not_allowed")
    court = await _court_for_edit(db, actor, court_id)
    existing = await db.scalar(
        select(CourtDay.id).where(CourtDay.court_id == court.id, CourtDay.day == day)
    )
    if existing:
        raise ConflictError(f"{day.isoformat()} 已有标记", code="duplicate")
    row = CourtDay(court_id=court.id, day=day, kind=kind, note=note, as_weekday=as_weekday)
    db.add(row)
    await db.flush()
    _audit(
        db,
        actor,
        "calendar.court_day_add",
        row,
        court.id,
        day=day.isoformat(),
        kind=kind.value,
        **({} if as_weekday is None else {"as_weekday": as_weekday}),
    )
    stranded: list[Visit] = []
    start = datetime.combine(day, datetime.min.time(), tz)
    if kind is CourtDayKind.holiday:
        stranded = await _stranded(db, start, start + timedelta(days=1), court_id=court.id)
        await _tell_stranded(db, actor, stranded, f"{day.isoformat()} 已设为{court.name}休息日")
    elif kind is CourtDayKind.workday:
        # the weekday's hours replace the weekend day's own: what they no longer cover
        day_visits = await _stranded(db, start, start + timedelta(days=1), court_id=court.id)
        stranded = await _out_of_hours(db, day_visits, tz)
        follows = WEEKDAY_NAMES[as_weekday or 0]
        why = f"{day.isoformat()} 已设为{court.name}调休上班日，按{follows}安排"
        await _tell_stranded(db, actor, stranded, why)
    return row, stranded


def _local(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M")


async def _stranded(
    db: AsyncSession,
    start: datetime,
    end: datetime,
    *,
    court_id: int | None = None,
    judge_id: int | None = None,
) -> list[Visit]:
    """The visits still to take place between ``start`` and ``end`` that a closed court
    (its rooms and judges) or a judge's cancelled hours leave without a place or a judge."""
    query = select(Visit).where(
        Visit.state.in_((VisitState.scheduled, VisitState.checked_in)),
        Visit.starts_at < end,
        Visit.ends_at > start,
    )
    if judge_id is not None:
        query = query.where(Visit.judge_id == judge_id)
    if court_id is not None:
        query = query.where(or_(Visit.court_id == court_id, Visit.receiving_court_id == court_id))
    return list((await db.scalars(query.order_by(Visit.starts_at))).all())


async def _tell_stranded(db: AsyncSession, actor: Actor, visits: list[Visit], why: str) -> None:
    """The judge and the booking court's operators of each visit: it needs a new time."""
    for visit in visits:
        petition = await db.get(Petition, visit.petition_id)
        await notify(
            db,
            await visit_recipients(db, visit, actor.user_id),
            kind="visit_needs_reschedule",
            title=f"接访需改期：{petition.number if petition else ''}",
            body=f"{why}，请为该接访另约时间或取消",
            visit_id=visit.id,
        )


async def delete_court_day(
    db: AsyncSession, actor: Actor, day_id: int, tz: ZoneInfo
) -> list[Visit]:
    """Remove a mark. Without its 调休上班日 the day is a weekend again: the visits booked on
    it (which that strands) and their bookers are told; returns them."""
    row = await db.get(CourtDay, day_id)
    if row is None:
        raise NotFoundError(f"日历标记 {day_id} 不存在")
    court = await _court_for_edit(db, actor, row.court_id)
    await db.delete(row)
    await db.flush()
    stranded: list[Visit] = []
    if row.kind is CourtDayKind.workday:
        start = datetime.combine(row.day, datetime.min.time(), tz)
        day_visits = await _stranded(db, start, start + timedelta(days=1), court_id=court.id)
        stranded = await _out_of_hours(db, day_visits, tz)
        await _tell_stranded(
            db, actor, stranded, f"{row.day.isoformat()} 已不再是{court.name}调休上班日"
        )
    _audit(
        db,
        actor,
        "calendar.court_day_delete",
        row,
        row.court_id,
        day=row.day.isoformat(),
        kind=row.kind.value,
        stranded=len(stranded),
    )
    return stranded


async def _out_of_hours(db: AsyncSession, visits: list[Visit], tz: ZoneInfo) -> list[Visit]:
    """Those of ``visits`` booked in reception hours (not meetings or on-site receptions,
    which keep no hours) that their room's opening or their judge's hours no longer cover."""
    from scheduler.lifecycle import BOOKABLE_KINDS

    out: list[Visit] = []
    for visit in visits:
        if visit.kind not in BOOKABLE_KINDS or visit.judge_id is None or visit.room_id is None:
            continue
        judge = await db.get(User, visit.judge_id)
        room = await db.get(ReceptionRoom, visit.room_id)
        if judge is None or room is None or visit.starts_at is None or visit.ends_at is None:
            continue
        period = Interval(visit.starts_at, visit.ends_at)
        first, last = local_span(period, tz)
        cal = await load_calendar(db, [(judge.id, judge.court_id or 0)], room, first, last, tz)
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        room_open = covered(period, [o for d in days for o in cal.room_day(d)])
        if not room_open or not covered(
            period, [w for d in days for w in cal.judge_day(judge.id, d)]
        ):
            out.append(visit)
    return out


# ---------------------------------------------------------------- room hours


async def room_for_edit(db: AsyncSession, actor: Actor, room_id: int) -> ReceptionRoom:
    room = await db.get(ReceptionRoom, room_id)
    if room is None:
        raise NotFoundError(f"接访室 {room_id} 不存在")
    if actor.is_admin or (actor.role is Role.operator and actor.court_id == room.court_id):
        return room
    raise PermissionDeniedError("只能维护本院接访室的开放时间")


async def list_room_hours(db: AsyncSession, room_ids: Sequence[int]) -> Sequence[RoomHours]:
    stmt = select(RoomHours).where(RoomHours.room_id.in_(room_ids))
    return (await db.scalars(stmt.order_by(RoomHours.weekday, RoomHours.start_minute))).all()


async def add_room_hours(
    db: AsyncSession,
    actor: Actor,
    *,
    room_id: int,
    weekday: int,
    start_minute: int,
    end_minute: int,
) -> RoomHours:
    room = await room_for_edit(db, actor, room_id)
    _check_hours(start_minute, end_minute)
    overlapping = await db.scalar(
        select(RoomHours.id).where(
            RoomHours.room_id == room.id,
            RoomHours.weekday == weekday,
            RoomHours.start_minute < end_minute,
            RoomHours.end_minute > start_minute,
        )
    )
    if overlapping:
        raise ConflictError("与已有的开放时间重叠", code="overlapping_hours")
    row = RoomHours(
        room_id=room.id, weekday=weekday, start_minute=start_minute, end_minute=end_minute
    )
    db.add(row)
    await db.flush()
    _audit(db, actor, "room.hours_add", row, room.court_id, room_id=room.id)
    return row


async def delete_room_hours(db: AsyncSession, actor: Actor, hours_id: int) -> None:
    row = await db.get(RoomHours, hours_id)
    if row is None:
        raise NotFoundError(f"开放时间 {hours_id} 不存在")
    room = await room_for_edit(db, actor, row.room_id)
    _audit(db, actor, "room.hours_delete", row, room.court_id, room_id=room.id)
    await db.delete(row)


# ---------------------------------------------------------------- computed availability


@dataclass
class CalendarData:
    """Everything that decides reception time for some judges and one room, over a span of
    local days, loaded in a few light queries; the methods answer per day, in memory."""

    tz: ZoneInfo
    rules: dict[int, WeekTable]
    additions: dict[int, list[Window]]
    cancellations: dict[int, list[Interval]]
    judge_court: dict[int, int]
    holidays: dict[int, set[date]]
    room_rules: WeekTable
    room_court: int | None
    # 调休上班日 by court: day -> the weekday whose hours it keeps
    workdays: dict[int, dict[date, int]] = field(default_factory=dict)

    def _weekday(self, court_id: int | None, day: date) -> int | None:
        marked = self.workdays.get(court_id or 0)
        return marked.get(day) if marked else None

    def _day_bounds(self, day: date) -> Interval:
        return Interval(local_instant(day, 0, self.tz), local_instant(day, 1440, self.tz))

    def judge_day(self, judge_id: int, day: date) -> list[Window]:
        """The judge's reception windows on one local day."""
        rules = self.rules.get(judge_id)
        extras = self.additions.get(judge_id)
        if not rules and not extras:
            return []  # most of a court's judges on most days: nothing to build
        court = self.judge_court.get(judge_id, 0)
        if day in self.holidays.get(court, ()):
            return []
        windows = day_windows(rules, day, self.tz, self._weekday(court, day)) if rules else []
        if not windows and not extras:
            return []
        bounds = self._day_bounds(day)
        for extra in extras or ():
            if extra.interval.overlaps(bounds):
                start = max(extra.interval.start, bounds.start)
                end = min(extra.interval.end, bounds.end)
                windows.append(Window(Interval(start, end), extra.slot_minutes))
        cuts = [c for c in self.cancellations.get(judge_id, ()) if c.overlaps(bounds)]
        return subtract(windows, cuts) if cuts else windows

    def room_day(self, day: date) -> list[Interval]:
        """When the room is open on one local day."""
        if self.room_court is None or day in self.holidays.get(self.room_court, ()):
            return []
        weekday = self._weekday(self.room_court, day)
        return [w.interval for w in day_windows(self.room_rules, day, self.tz, weekday)]


def _calendar_statements() -> tuple[Select[Any], Select[Any], Select[Any], Select[Any]]:
    t = ReceptionTemplate.__table__.c
    e = AvailabilityException.__table__.c
    d = CourtDay.__table__.c
    h = RoomHours.__table__.c
    ids: BindParameter[list[int]] = bindparam("judge_ids", expanding=True)
    return (
        select(
            t.judge_id,
            t.weekday,
            t.start_minute,
            t.end_minute,
            t.slot_minutes,
            t.valid_from,
            t.valid_until,
        ).where(t.judge_id.in_(ids)),
        select(e.judge_id, e.kind, e.starts_at, e.ends_at, e.slot_minutes).where(
            e.judge_id.in_(ids), e.ends_at > bindparam("since"), e.starts_at < bindparam("until")
        ),
        select(d.court_id, d.day, d.kind, d.as_weekday).where(
            d.court_id.in_(bindparam("court_ids", expanding=True)),
            d.day >= bindparam("first"),
            d.day <= bindparam("last"),
            d.kind.in_((CourtDayKind.holiday, CourtDayKind.workday)),
        ),
        select(h.weekday, h.start_minute, h.end_minute).where(h.room_id == bindparam("room_id")),
    )


# Built once, of table columns: the booking desk runs them on every search and booking, and
# building statements (and the ORM's layer around them) cost more than SQLite answering.
_TEMPLATES, _EXCEPTIONS, _MARKED_DAYS, _ROOM_HOURS = map(prepared, _calendar_statements())


class RoomRef(Protocol):
    """What the calendar needs of a room: a stored ``ReceptionRoom`` or its columns."""

    @property
    def id(self) -> int: ...

    @property
    def court_id(self) -> int: ...


async def load_calendar(
    db: AsyncSession,
    judges: Sequence[tuple[int, int]],
    room: RoomRef | None,
    first: date,
    last: date,
    tz: ZoneInfo,
) -> CalendarData:
    """Reception rules of ``judges`` ((id, court id) pairs) and ``room`` for local days
    first … last: weekly hours, one-off additions and cancellations, court holidays."""
    ids = [j for j, _ in judges]
    since = local_instant(first, 0, tz)
    until = local_instant(last, 1440, tz)
    weekly: dict[int, list[WeeklyRule]] = defaultdict(list)
    additions: dict[int, list[Window]] = defaultdict(list)
    cancellations: dict[int, list[Interval]] = defaultdict(list)
    if ids:
        for row in await db.execute(_TEMPLATES, {"judge_ids": ids}):
            weekly[row[0]].append(WeeklyRule(*row[1:]))
        for jid, kind, start, end, slot in await db.execute(
            _EXCEPTIONS, {"judge_ids": ids, "since": since, "until": until}
        ):
            if kind is ExceptionKind.addition:
                additions[jid].append(Window(Interval(start, end), slot))
            else:
                cancellations[jid].append(Interval(start, end))
    courts = {c for _, c in judges} | ({room.court_id} if room else set())
    holidays: dict[int, set[date]] = defaultdict(set)
    workdays: dict[int, dict[date, int]] = defaultdict(dict)
    for court_id, day, kind, as_weekday in await db.execute(
        _MARKED_DAYS, {"court_ids": sorted(courts), "first": first, "last": last}
    ):
        if kind is CourtDayKind.workday:
            workdays[court_id][day] = as_weekday
        else:
            holidays[court_id].add(day)
    room_rules: WeekTable = {}
    if room is not None:
        room_rules = by_weekday(
            WeeklyRule(*row) for row in await db.execute(_ROOM_HOURS, {"room_id": room.id})
        )
    return CalendarData(
        tz=tz,
        rules={judge: by_weekday(rules) for judge, rules in weekly.items()},
        additions=additions,
        cancellations=cancellations,
        judge_court=dict(judges),
        holidays=holidays,
        room_rules=room_rules,
        room_court=room.court_id if room else None,
        workdays=workdays,
    )


def local_span(interval: Interval, tz: ZoneInfo) -> tuple[date, date]:
    return local_day(interval.start, tz), local_day(interval.end - timedelta(microseconds=1), tz)


# ---------------------------------------------------------------- duty roster


async def _roster_court(db: AsyncSession, actor: Actor, court_id: int) -> Court:
    court = await db.get(Court, court_id)
    if court is None:
        raise NotFoundError(f"法院 {court_id} 不存在")
    if actor.is_admin or (actor.court_id == court.id and actor.role in (Role.operator, Role.judge)):
        return court
    raise PermissionDeniedError("只能维护本院的值班律师")


async def list_lawyers(db: AsyncSession, court_ids: Sequence[int] | None) -> Sequence[DutyLawyer]:
    stmt = select(DutyLawyer).order_by(DutyLawyer.court_id, DutyLawyer.name)
    if court_ids is not None:
        stmt = stmt.where(DutyLawyer.court_id.in_(court_ids))
    return (await db.scalars(stmt)).all()


async def add_lawyer(
    db: AsyncSession, actor: Actor, *, court_id: int, name: str, firm: str, phone: str
) -> DutyLawyer:
    court = await _roster_court(db, actor, court_id)
    row = DutyLawyer(court_id=court.id, name=name, firm=firm, phone=phone)
    db.add(row)
    await db.flush()
    _audit(db, actor, "roster.lawyer_add", row, court.id, name=name, phone=mask_phone(phone))
    return row


async def add_duty_period(
    db: AsyncSession,
    actor: Actor,
    *,
    lawyer_id: int,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
) -> DutyPeriod:
    lawyer = await db.get(DutyLawyer, lawyer_id)
    if lawyer is None:
        raise NotFoundError(f"值班律师 {lawyer_id} 不存在")
    await _roster_court(db, actor, lawyer.court_id)
    _check_period(starts_at, ends_at, now)
    overlap = await db.scalar(
        select(DutyPeriod.id).where(
            DutyPeriod.lawyer_id == lawyer.id,
            DutyPeriod.starts_at < ends_at,
            DutyPeriod.ends_at > starts_at,
        )
    )
    if overlap:
        raise ConflictError("与该律师已有的值班时间重叠", code="overlapping_hours")
    row = DutyPeriod(lawyer_id=lawyer.id, starts_at=starts_at, ends_at=ends_at)
    db.add(row)
    await db.flush()
    _audit(db, actor, "roster.period_add", row, lawyer.court_id, lawyer_id=lawyer.id)
    return row


async def list_duty_periods(
    db: AsyncSession, lawyer_ids: Sequence[int], since: datetime, until: datetime
) -> Sequence[DutyPeriod]:
    stmt = select(DutyPeriod).where(
        DutyPeriod.lawyer_id.in_(lawyer_ids),
        DutyPeriod.ends_at > since,
        DutyPeriod.starts_at < until,
    )
    return (await db.scalars(stmt.order_by(DutyPeriod.starts_at))).all()


async def lawyers_on_duty(
    db: AsyncSession, court_ids: Sequence[int], at: datetime
) -> Sequence[DutyLawyer]:
    stmt = (
        select(DutyLawyer)
        .join(DutyPeriod, DutyPeriod.lawyer_id == DutyLawyer.id)
        .where(
            DutyLawyer.court_id.in_(court_ids),
            DutyLawyer.active,
            and_(DutyPeriod.starts_at <= at, DutyPeriod.ends_at > at),
        )
        .distinct()
    )
    return (await db.scalars(stmt)).all()


async def delete_duty_period(db: AsyncSession, actor: Actor, period_id: int) -> None:
    row = await db.get(DutyPeriod, period_id)
    if row is None:
        raise NotFoundError(f"值班时间 {period_id} 不存在")
    lawyer = await db.get(DutyLawyer, row.lawyer_id)
    assert lawyer is not None
    await _roster_court(db, actor, lawyer.court_id)
    _audit(db, actor, "roster.period_delete", row, lawyer.court_id)
    await db.execute(delete(DutyPeriod).where(DutyPeriod.id == row.id))


def is_basic(court: Court) -> bool:
    return court.level is CourtLevel.basic
