"""Availability: judges' weekly hours and one-off changes, court days, room hours, roster."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import select

from config.db import utcnow
from config.errors import InvalidError, NotFoundError
from scheduler import availability as av
from scheduler.lifecycle import RECEIVING_ROLES, receiver_role
from scheduler.models import ReceptionRoom, Role, User
from scheduler.scope import court_scope, descendant_court_ids
from web.routes import ALL_STAFF, Context, api
from web.scheduling_schemas import (
    CourtDayIn,
    CourtDayOut,
    CourtDayQuery,
    DutyPeriodIn,
    DutyPeriodOut,
    ExceptionIn,
    ExceptionOut,
    JudgeOut,
    JudgeQuery,
    LawyerIn,
    LawyerOut,
    OnDutyQuery,
    ReceiverQuery,
    RoomHoursIn,
    RoomHoursOut,
    RoomHoursQuery,
    RosterQuery,
    StrandedOut,
    TemplateIn,
    TemplateOut,
    minutes,
)
from web.schemas import Ok

EDITORS = {*RECEIVING_ROLES, Role.admin}  # receivers keep their own reception hours
COURT_EDITORS = {Role.judge, Role.operator, Role.admin}
ROOM_EDITORS = {Role.operator, Role.admin}


def _today(ctx: Context) -> date:
    return utcnow().astimezone(ctx.settings.tz).date()


@api.route(
    "GET",
    "/judges",
    summary="Judges of a court (court leaders for kind leader)",
    tag="availability",
    roles=ALL_STAFF,
    query=ReceiverQuery,
    answer=list[JudgeOut],
)
async def list_judges(ctx: Context) -> list[JudgeOut]:
    """Who may receive a visit of ``kind`` at the court (scheduler/lifecycle.py's rule)."""
    q: ReceiverQuery = ctx.query
    role = receiver_role(q.kind)
    rows = await ctx.db.scalars(
        select(User)
        .where(User.court_id == q.court_id, User.role == role, User.active)
        .order_by(User.display_name)
    )
    return [JudgeOut(id=u.id, display_name=u.display_name, court_id=u.court_id or 0) for u in rows]


@api.route(
    "GET",
    "/reception-hours",
    summary="Weekly reception hours of a judge",
    tag="availability",
    roles=ALL_STAFF,
    query=JudgeQuery,
    answer=list[TemplateOut],
)
async def list_templates(ctx: Context) -> list[TemplateOut]:
    """Without ``judge_id``, a judge sees their own hours."""
    q: JudgeQuery = ctx.query
    judge_id = q.judge_id or ctx.me.user_id
    return [TemplateOut.of(t) for t in await av.list_templates(ctx.db, [judge_id])]


@api.route(
    "POST",
    "/reception-hours",
    summary="Add weekly reception hours",
    tag="availability",
    roles=EDITORS,
    body=TemplateIn,
    answer=TemplateOut,
    status=201,
    errors=(404, 409),
)
async def add_template(ctx: Context) -> TemplateOut:
    """A judge edits their own hours; an admin anyone's. Overlapping hours answer 409."""
    b: TemplateIn = ctx.body
    row = await av.add_template(
        ctx.db,
        ctx.me.actor(),
        judge_id=b.judge_id,
        weekday=b.weekday,
        start_minute=minutes(b.start),
        end_minute=minutes(b.end),
        slot_minutes=b.slot_minutes,
        valid_from=b.valid_from,
        valid_until=b.valid_until,
    )
    return TemplateOut.of(row)


@api.route(
    "DELETE",
    r"/reception-hours/{template_id:\d+}",
    summary="Remove weekly hours",
    tag="availability",
    roles=EDITORS,
    answer=Ok,
)
async def delete_template(ctx: Context) -> Ok:
    await av.delete_template(ctx.db, ctx.me.actor(), ctx.path_id("template_id"))
    return Ok()


@api.route(
    "GET",
    "/availability-exceptions",
    summary="One-off changes to a judge's hours",
    tag="availability",
    roles=ALL_STAFF,
    query=JudgeQuery,
    answer=list[ExceptionOut],
)
async def list_exceptions(ctx: Context) -> list[ExceptionOut]:
    q: JudgeQuery = ctx.query
    now = utcnow()
    rows = await av.list_exceptions(
        ctx.db, [q.judge_id or ctx.me.user_id], now - timedelta(days=1), now + timedelta(days=400)
    )
    return [ExceptionOut.of(e) for e in rows]


@api.route(
    "POST",
    "/availability-exceptions",
    summary="Add or cancel reception time once",
    tag="availability",
    roles=EDITORS,
    body=ExceptionIn,
    answer=ExceptionOut,
    status=201,
    errors=(404, 409),
)
async def add_exception(ctx: Context) -> ExceptionOut:
    b: ExceptionIn = ctx.body
    row, stranded = await av.add_exception(
        ctx.db,
        ctx.me.actor(),
        judge_id=b.judge_id,
        kind=b.kind,
        starts_at=b.starts_at,
        ends_at=b.ends_at,
        slot_minutes=b.slot_minutes,
        tz=ctx.settings.tz,
        note=b.note,
        now=utcnow(),
    )
    return ExceptionOut.of(row, stranded)


@api.route(
    "DELETE",
    r"/availability-exceptions/{exception_id:\d+}",
    summary="Remove a one-off change",
    tag="availability",
    roles=EDITORS,
    answer=Ok,
)
async def delete_exception(ctx: Context) -> Ok:
    await av.delete_exception(ctx.db, ctx.me.actor(), ctx.path_id("exception_id"))
    return Ok()


@api.route(
    "GET",
    "/court-days",
    summary="Holidays and leader reception days of a court",
    tag="availability",
    roles=ALL_STAFF,
    query=CourtDayQuery,
    answer=list[CourtDayOut],
)
async def list_court_days(ctx: Context) -> list[CourtDayOut]:
    q: CourtDayQuery = ctx.query
    first = q.first or _today(ctx)
    rows = await av.list_court_days(ctx.db, [q.court_id], first, first + timedelta(days=q.days - 1))
    return [CourtDayOut.of(d) for d in rows]


@api.route(
    "POST",
    "/court-days",
    summary="Mark a holiday or a leader reception day",
    tag="availability",
    roles=COURT_EDITORS,
    body=CourtDayIn,
    answer=CourtDayOut,
    status=201,
    errors=(404, 409),
)
async def add_court_day(ctx: Context) -> CourtDayOut:
    """Staff mark days of their own court; admins of any court."""
    b: CourtDayIn = ctx.body
    row, stranded = await av.add_court_day(
        ctx.db,
        ctx.me.actor(),
        court_id=b.court_id,
        day=b.day,
        kind=b.kind,
        note=b.note,
        tz=ctx.settings.tz,
        as_weekday=b.as_weekday,
    )
    return CourtDayOut.of(row, stranded)


@api.route(
    "DELETE",
    r"/court-days/{day_id:\d+}",
    summary="Remove a court day mark",
    tag="availability",
    roles=COURT_EDITORS,
    answer=StrandedOut,
)
async def delete_court_day(ctx: Context) -> StrandedOut:
    """Removing a 调休上班日 strands the visits booked on it (``stranded_visits``; their
    judges and bookers are told)."""
    stranded = await av.delete_court_day(
        ctx.db, ctx.me.actor(), ctx.path_id("day_id"), ctx.settings.tz
    )
    return StrandedOut(ok=True, stranded_visits=[v.id for v in stranded])


@api.route(
    "GET",
    "/room-hours",
    summary="Opening hours of a reception room",
    tag="availability",
    roles=ALL_STAFF,
    query=RoomHoursQuery,
    answer=list[RoomHoursOut],
)
async def list_room_hours(ctx: Context) -> list[RoomHoursOut]:
    q: RoomHoursQuery = ctx.query
    if await ctx.db.get(ReceptionRoom, q.room_id) is None:
        raise NotFoundError(f"接访室 {q.room_id} 不存在")
    return [RoomHoursOut.of(h) for h in await av.list_room_hours(ctx.db, [q.room_id])]


@api.route(
    "POST",
    "/room-hours",
    summary="Add opening hours to a reception room",
    tag="availability",
    roles=ROOM_EDITORS,
    body=RoomHoursIn,
    answer=RoomHoursOut,
    status=201,
    errors=(404, 409),
)
async def add_room_hours(ctx: Context) -> RoomHoursOut:
    b: RoomHoursIn = ctx.body
    row = await av.add_room_hours(
        ctx.db,
        ctx.me.actor(),
        room_id=b.room_id,
        weekday=b.weekday,
        start_minute=minutes(b.start),
        end_minute=minutes(b.end),
    )
    return RoomHoursOut.of(row)


@api.route(
    "DELETE",
    r"/room-hours/{hours_id:\d+}",
    summary="Remove opening hours",
    tag="availability",
    roles=ROOM_EDITORS,
    answer=Ok,
)
async def delete_room_hours(ctx: Context) -> Ok:
    await av.delete_room_hours(ctx.db, ctx.me.actor(), ctx.path_id("hours_id"))
    return Ok()


# ---------------------------------------------------------------- roster


async def _roster_courts(ctx: Context, court_id: int | None) -> list[int] | None:
    """The courts whose roster the caller may read (None: all). Judges read the rosters of
    their court and the courts below, from which their visits come."""
    actor = ctx.me.actor()
    if actor.is_admin:
        return [court_id] if court_id else None
    if actor.role is Role.judge and actor.court_id is not None:
        scope = await descendant_court_ids(ctx.db, actor.court_id)
    else:
        scope = await court_scope(ctx.db, actor) or set()
    if court_id is None:
        return sorted(scope)
    if court_id not in scope:
        raise NotFoundError(f"法院 {court_id} 不存在或不在您的管辖范围")
    return [court_id]


@api.route(
    "GET",
    "/duty-lawyers",
    summary="Duty roster lawyers",
    tag="roster",
    roles=ALL_STAFF,
    query=RosterQuery,
    answer=list[LawyerOut],
)
async def list_lawyers(ctx: Context) -> list[LawyerOut]:
    q: RosterQuery = ctx.query
    courts = await _roster_courts(ctx, q.court_id)
    return [LawyerOut.of(x) for x in await av.list_lawyers(ctx.db, courts)]


@api.route(
    "POST",
    "/duty-lawyers",
    summary="Add a lawyer to a court's duty roster",
    tag="roster",
    roles=COURT_EDITORS,
    body=LawyerIn,
    answer=LawyerOut,
    status=201,
    errors=(404,),
)
async def add_lawyer(ctx: Context) -> LawyerOut:
    b: LawyerIn = ctx.body
    row = await av.add_lawyer(
        ctx.db, ctx.me.actor(), court_id=b.court_id, name=b.name, firm=b.firm, phone=b.phone
    )
    return LawyerOut.of(row)


@api.route(
    "GET",
    "/duty-periods",
    summary="On-duty periods of a court's roster",
    tag="roster",
    roles=ALL_STAFF,
    query=RosterQuery,
    answer=list[DutyPeriodOut],
)
async def list_duty_periods(ctx: Context) -> list[DutyPeriodOut]:
    q: RosterQuery = ctx.query
    if q.court_id is None:
        raise InvalidError("请指定法院", code="court_required")
    lawyers = await av.list_lawyers(ctx.db, await _roster_courts(ctx, q.court_id))
    first = q.first or _today(ctx)
    since = datetime.combine(first, datetime.min.time(), tzinfo=ctx.settings.tz)
    rows = await av.list_duty_periods(
        ctx.db, [x.id for x in lawyers], since, since + timedelta(days=q.days)
    )
    return [DutyPeriodOut.of(p) for p in rows]


@api.route(
    "POST",
    "/duty-periods",
    summary="Put a lawyer on duty",
    tag="roster",
    roles=COURT_EDITORS,
    body=DutyPeriodIn,
    answer=DutyPeriodOut,
    status=201,
    errors=(404, 409),
)
async def add_duty_period(ctx: Context) -> DutyPeriodOut:
    b: DutyPeriodIn = ctx.body
    row = await av.add_duty_period(
        ctx.db,
        ctx.me.actor(),
        lawyer_id=b.lawyer_id,
        starts_at=b.starts_at,
        ends_at=b.ends_at,
        now=utcnow(),
    )
    return DutyPeriodOut.of(row)


@api.route(
    "DELETE",
    r"/duty-periods/{period_id:\d+}",
    summary="Remove an on-duty period",
    tag="roster",
    roles=COURT_EDITORS,
    answer=Ok,
)
async def delete_duty_period(ctx: Context) -> Ok:
    await av.delete_duty_period(ctx.db, ctx.me.actor(), ctx.path_id("period_id"))
    return Ok()


@api.route(
    "GET",
    "/duty-lawyers/on-duty",
    summary="Lawyers on duty at a time (to invite)",
    tag="roster",
    roles=ALL_STAFF,
    query=OnDutyQuery,
    answer=list[LawyerOut],
)
async def on_duty(ctx: Context) -> list[LawyerOut]:
    q: OnDutyQuery = ctx.query
    courts = await _roster_courts(ctx, q.court_id) or [q.court_id]
    rows = await av.lawyers_on_duty(ctx.db, courts, q.at or utcnow())
    return [LawyerOut.of(x) for x in rows]
