"""Visits: book, find a free time, day views, reschedule, cancel, check in, walk-ins."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from config.audit import record_audit
from config.db import prepared, utcnow
from config.errors import ConflictError, NotFoundError
from config.privacy import mask_text
from config.vocabulary import label, label_of
from recorder.models import Recording
from scheduler import booking, lifecycle, walkins
from scheduler import visits as vs
from scheduler.cases import service as case_service
from scheduler.cases import visits as case_visits
from scheduler.cases.meetings import HOST_ROLES
from scheduler.cases.models import CaseEvent
from scheduler.cases.words import VisitOutcome
from scheduler.codes import issue_visit_code
from scheduler.models import (
    CodeRole,
    Court,
    Petition,
    Petitioner,
    ReceptionRoom,
    Role,
    User,
    Visit,
    VisitCode,
    VisitState,
)
from scheduler.portal import sms
from scheduler.portal.models import SmsMessage
from scheduler.scope import Actor
from web.keys import DB, GATEWAY, SECRET
from web.routes import ALL_STAFF, Context, api
from web.scheduling_schemas import (
    CancelIn,
    CheckInIn,
    CodeOut,
    FreeSlotOut,
    FreeSlotQuery,
    OutcomeIn,
    OutcomeOut,
    RescheduleIn,
    StateIn,
    VisitDetailOut,
    VisitEventOut,
    VisitIn,
    VisitOut,
    VisitQuery,
    WalkInIn,
    WalkInOut,
    WalkInResultOut,
)
from web.schemas import Ok

log = logging.getLogger("vreception.web")

BOOKERS = {Role.operator, Role.admin}
RECEIVERS = set(lifecycle.RECEIVING_ROLES)


_COURT, _RECEIVING = aliased(Court), aliased(Court)
# built once, not per request: building this eight-table statement showed in the profile
_ANSWER_NAMES = prepared(
    select(
        Visit.id,
        _COURT.name,
        _RECEIVING.name,
        User.display_name,
        ReceptionRoom.name,
        Petition.number,
        Petition.category,
        Petition.state,
        Petitioner.name,
        Recording.state,
        Recording.progress,
        Recording.message,
        Recording.transcript,
    )
    .join(Petition, Petition.id == Visit.petition_id)
    .join(Petitioner, Petitioner.id == Petition.petitioner_id)
    .join(_COURT, _COURT.id == Visit.court_id)
    .join(_RECEIVING, _RECEIVING.id == Visit.receiving_court_id)
    .outerjoin(User, User.id == Visit.judge_id)
    .outerjoin(ReceptionRoom, ReceptionRoom.id == Visit.room_id)
    .outerjoin(Recording, Recording.visit_id == Visit.id)
    .where(Visit.id.in_(bindparam("visit_ids", expanding=True)))
)


async def visit_answers(
    db: AsyncSession, visits: Sequence[Visit], actor: Actor | None = None
) -> list[VisitOut]:
    """Visits with the names pages show, in one joined query whatever the count; with
    ``actor``, what that caller may do to each (``can_end``)."""
    if not visits:
        return []
    rows = await db.execute(_ANSWER_NAMES, {"visit_ids": [v.id for v in visits]})
    names = {r[0]: r[1:] for r in rows}
    out = []
    for v in visits:
        (
            court_name,
            receiving_name,
            judge,
            room,
            number,
            category,
            case_state,
            petitioner,
            rec_state,
            rec_progress,
            rec_message,
            rec_transcript,
        ) = names[v.id]
        out.append(
            VisitOut(
                id=v.id,
                state=v.state,
                state_name=label(v.state),
                starts_at=v.starts_at,
                ends_at=v.ends_at,
                court_id=v.court_id,
                court_name=court_name,
                receiving_court_id=v.receiving_court_id,
                receiving_court_name=receiving_name,
                judge_id=v.judge_id,
                judge_name=judge,
                room_id=v.room_id,
                room_name=room,
                petition_id=v.petition_id,
                petition_number=number,
                petition_category=category,
                petition_category_name=label_of("case_category", category),
                petition_state=case_state,
                petitioner_name=petitioner,
                kind=v.kind,
                kind_name=label(v.kind),
                walk_in=v.walk_in,
                cancel_reason=v.cancel_reason,
                checkin_document_type=v.checkin_document_type,
                checkin_document_masked=v.checkin_document_masked,
                recording_state=rec_state.value if rec_state else None,
                recording_progress=rec_progress,
                recording_note=rec_message
                or (rec_transcript if rec_transcript != "ok" else "")
                or "",
                can_end=actor is not None and lifecycle.can_end(actor, v),
                can_record_outcome=actor is not None
                and lifecycle.may(actor, lifecycle.Action.outcome, v),
            )
        )
    return out


async def _detail(ctx: Context, visit: Visit, db: AsyncSession | None = None) -> VisitDetailOut:
    """The visit with its history, read in ``db`` (default the request's session)."""
    db = ctx.db if db is None else db
    (base,) = await visit_answers(db, [visit], ctx.me.actor())
    history = [VisitEventOut.of(e) for e in await vs.visit_history(db, visit.id)]
    return VisitDetailOut(**base.__dict__, history=history)


@api.route(
    "GET",
    "/free-slots",
    summary="Next free slots for a court or judge in a room",
    tag="visits",
    roles=BOOKERS,
    query=FreeSlotQuery,
    answer=list[FreeSlotOut],
    errors=(404,),
)
async def free_slots(ctx: Context) -> list[FreeSlotOut]:
    """Slots inside the judges' reception hours and the room's opening hours, not on a
    holiday, not overlapping a booking of the judge, the room or the petitioner. Asked by
    whoever books: an operator in a room of their own court, for a case they may book
    (another court's room or case is 404, as its busy times are not theirs to see)."""
    q: FreeSlotQuery = ctx.query
    actor = ctx.me.actor()
    if not actor.is_admin:
        room = await ctx.db.get(ReceptionRoom, q.room_id)
        if room is None or room.court_id != actor.court_id:
            raise NotFoundError(f"接访室 {q.room_id} 不存在")
        if q.petition_id:
            await booking.booking_petition(ctx.db, actor, q.petition_id)
    petitioner_id = await booking.petitioner_of(ctx.db, q.petition_id) if q.petition_id else None
    first = q.first or utcnow().astimezone(ctx.settings.tz).date()
    slots = await booking.find_free_slots(
        ctx.db,
        ctx.settings,
        room_id=q.room_id,
        receiving_court_id=q.receiving_court_id,
        judge_id=q.judge_id,
        petitioner_id=petitioner_id,
        first_day=first,
        days=q.days,
        limit=q.limit,
        kind=q.kind,
    )
    return [
        FreeSlotOut(
            starts_at=s.starts_at, ends_at=s.ends_at, judge_id=s.judge_id, judge_name=s.judge_name
        )
        for s in slots
    ]


@api.route(
    "POST",
    "/visits",
    split=True,
    summary="Book a visit",
    tag="visits",
    roles=BOOKERS,
    body=VisitIn,
    answer=VisitDetailOut,
    status=201,
    errors=(404, 409),
)
async def book(ctx: Context) -> VisitDetailOut:
    """A visit is booked from a case: it becomes a contact (视频接访) and an entry of the
    case's timeline; a closed case (已化解, 已终结) answers 409 ``case_closed``. 409
    ``double_booking`` names the judge, room or petitioner already booked, and the visits it
    conflicts with. Without ``judge_id`` a free receiver of the court is chosen: a judge, or
    a court leader for ``kind`` leader; 判后答疑 (post_judgment) names its judge."""
    actor = ctx.me.actor()
    plan = await plan_visit(ctx, ctx.body)
    async with ctx.write() as db:
        visit = await booking.commit_booking(db, actor, ctx.settings, plan)
        _send_after(ctx, await sms.tell_petitioner(db, visit, "visit_booked", ctx.settings))
        # read in the booking's own transaction (no second one after it); the caller may
        # see the visit they just booked for their own petition: no re-check
        return await _detail(ctx, visit, db)


def _send_after(ctx: Context, message: SmsMessage | None) -> None:
    """Hand the petitioner's SMS to the gateway once the change is committed."""
    if message is None:
        return
    app, message_id = ctx.request.app, message.id

    async def send() -> None:
        await sms.deliver(app[DB], sms.gateway_for(ctx.settings), [message_id])

    ctx.after_commit(send)


@api.route(
    "GET",
    "/visits",
    summary="Visits in scope by day (day and week views)",
    tag="visits",
    roles=ALL_STAFF,
    query=VisitQuery,
    answer=list[VisitOut],
)
async def list_visits(ctx: Context) -> list[VisitOut]:
    """``day`` is a local date (Asia/Shanghai); ``days`` up to 31 gives a week view;
    ``earlier_open`` the visits of earlier days that are still open and may be ended."""
    q: VisitQuery = ctx.query
    actor = ctx.me.actor()
    if q.earlier_open:
        today = utcnow().astimezone(ctx.settings.tz).date()
        visits = await vs.list_visits(
            ctx.db,
            actor,
            ctx.settings,
            day=None,
            before=datetime.combine(today, datetime.min.time(), tzinfo=ctx.settings.tz),
            states=sorted(lifecycle.ENDABLE),
        )
    else:
        visits = await vs.list_visits(
            ctx.db,
            actor,
            ctx.settings,
            day=q.day,
            days=q.days,
            court_id=q.court_id,
            judge_id=q.judge_id,
            room_id=q.room_id,
            states=[q.state] if q.state else [],
        )
    return await visit_answers(ctx.db, visits, actor)


@api.route(
    "GET",
    r"/visits/{visit_id:[0-9a-f]{32}}",
    summary="One visit with its history",
    tag="visits",
    roles=ALL_STAFF,
    answer=VisitDetailOut,
)
async def get_visit(ctx: Context) -> VisitDetailOut:
    visit = await vs.visible_visit(ctx.db, ctx.me.actor(), ctx.request.match_info["visit_id"])
    return await _detail(ctx, visit)


@api.route(
    "POST",
    r"/visits/{visit_id:[0-9a-f]{32}}/reschedule",
    summary="Move a visit",
    tag="visits",
    roles=BOOKERS,
    body=RescheduleIn,
    answer=VisitDetailOut,
    errors=(409,),
)
async def reschedule(ctx: Context) -> VisitDetailOut:
    b: RescheduleIn = ctx.body
    visit = await booking.reschedule_visit(
        ctx.db,
        ctx.me.actor(),
        ctx.settings,
        ctx.request.match_info["visit_id"],
        starts_at=b.starts_at,
        ends_at=b.ends_at,
        judge_id=b.judge_id,
        room_id=b.room_id,
        reason=b.reason,
    )
    _send_after(ctx, await sms.tell_petitioner(ctx.db, visit, "visit_rescheduled", ctx.settings))
    return await _detail(ctx, visit)


@api.route(
    "POST",
    r"/visits/{visit_id:[0-9a-f]{32}}/cancel",
    summary="Cancel a visit",
    tag="visits",
    roles={Role.operator, Role.judge, Role.admin},
    body=CancelIn,
    answer=VisitDetailOut,
    errors=(409,),
)
async def cancel(ctx: Context) -> VisitDetailOut:
    """The reason is kept in the visit's history; the slot becomes free again."""
    b: CancelIn = ctx.body
    visit = await lifecycle.cancel_visit(
        ctx.db, ctx.me.actor(), ctx.settings, ctx.request.match_info["visit_id"], reason=b.reason
    )
    _send_after(ctx, await sms.tell_petitioner(ctx.db, visit, "visit_cancelled", ctx.settings))
    return await _detail(ctx, visit)


@api.route(
    "POST",
    r"/visits/{visit_id:[0-9a-f]{32}}/check-in",
    summary="Record the petitioner's identity check",
    tag="visits",
    roles=BOOKERS,
    body=CheckInIn,
    answer=VisitDetailOut,
    errors=(409,),
)
async def check_in(ctx: Context) -> VisitDetailOut:
    """Only the masked document number is stored."""
    b: CheckInIn = ctx.body
    visit = await lifecycle.check_in(
        ctx.db,
        ctx.me.actor(),
        ctx.request.match_info["visit_id"],
        document_type=b.document_type,
        document_number=b.document_number,
    )
    return await _detail(ctx, visit)


@api.route(
    "POST",
    r"/visits/{visit_id:[0-9a-f]{32}}/state",
    summary="Lobby and call transitions",
    tag="visits",
    roles={Role.operator, Role.judge, Role.admin},
    body=StateIn,
    answer=VisitDetailOut,
    errors=(409,),
)
async def set_state(ctx: Context) -> VisitDetailOut:
    """in_lobby (operator), in_progress (the visit's judge), ended (the visit's judge or
    the booking court's operator, from any open state after check-in, also on a later
    day), archived (system). The rules are scheduler/lifecycle.py's; each is audited."""
    b: StateIn = ctx.body
    visit = await lifecycle.change_state(
        ctx.db, ctx.me.actor(), ctx.settings, ctx.request.match_info["visit_id"], b.state
    )
    if visit.state is VisitState.ended:
        _background(_after_end(ctx.request.app, visit.id))
    return await _detail(ctx, visit)


_ending: set[asyncio.Task[None]] = set()


def _background(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(work)
    _ending.add(task)
    task.add_done_callback(_ending.discard)


async def _after_end(app: web.Application, visit_id: str) -> None:
    """A visit ended outside the call (the lists): once this request's transaction has
    committed, what follows every end (web/visit_gateway.py ``finish``)."""
    try:
        async with app[DB].writer() as db:  # waits for the request's own write to commit
            visit = await db.get(Visit, visit_id)
            if visit is None or visit.state is not VisitState.ended:
                return
        await app[GATEWAY].finish(visit_id)
    except Exception:
        log.exception("visit %s: closing after the end failed", visit_id)


@api.route(
    "POST",
    "/visits/walk-in",
    summary="Start a visit now, or queue for a judge",
    tag="visits",
    roles=BOOKERS,
    body=WalkInIn,
    answer=WalkInResultOut,
    status=201,
    errors=(404, 409),
)
async def walk_in(ctx: Context) -> WalkInResultOut:
    """With a judge of the receiving court on duty and free now: a checked-in visit.
    Otherwise the petitioner joins the queue and is seated with the next free judge."""
    b: WalkInIn = ctx.body
    result = await walkins.walk_in(
        ctx.db,
        ctx.me.actor(),
        ctx.settings,
        petition_id=b.petition_id,
        receiving_court_id=b.receiving_court_id,
        room_id=b.room_id,
        document_type=b.document_type,
        document_number=b.document_number,
    )
    visit = (await visit_answers(ctx.db, [result.visit]))[0] if result.visit else None
    return WalkInResultOut(
        visit=visit,
        queued=WalkInOut.of(result.queued) if result.queued else None,
        position=result.position,
    )


@api.route(
    "GET",
    "/walk-ins",
    summary="The walk-in queue in scope",
    tag="visits",
    roles=ALL_STAFF,
    answer=list[WalkInOut],
)
async def list_walk_ins(ctx: Context) -> list[WalkInOut]:
    return [WalkInOut.of(w) for w in await walkins.waiting_walk_ins(ctx.db, ctx.me.actor())]


@api.route(
    "POST",
    r"/walk-ins/{walk_in_id:\d+}/withdraw",
    summary="Leave the walk-in queue",
    tag="visits",
    roles=BOOKERS,
    answer=Ok,
    errors=(409,),
)
async def withdraw(ctx: Context) -> Ok:
    await walkins.withdraw_walk_in(ctx.db, ctx.me.actor(), ctx.path_id("walk_in_id"))
    return Ok()


@api.route(
    "POST",
    r"/visits/{visit_id:[0-9a-f]{32}}/code",
    summary="Issue the petitioner's one-time code",
    tag="visits",
    roles=BOOKERS,
    answer=CodeOut,
    status=201,
    errors=(409,),
)
async def issue_code(ctx: Context) -> CodeOut:
    """For a checked-in petitioner, shown once to be read out or printed; a new code revokes
    the previous unused ones of this visit."""
    actor = ctx.me.actor()
    visit = await vs.visible_visit(ctx.db, actor, ctx.request.match_info["visit_id"])
    lifecycle.may_manage(actor, visit)
    if visit.state not in (VisitState.checked_in, VisitState.in_lobby, VisitState.in_progress):
        raise ConflictError("请先完成身份核验签到", code="not_checked_in")
    await ctx.db.execute(
        update(VisitCode)
        .where(
            VisitCode.visit_id == visit.id,
            VisitCode.role == CodeRole.petitioner,
            VisitCode.used_at.is_(None),
            VisitCode.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    issued = await issue_visit_code(
        ctx.db,
        secret=ctx.request.app[SECRET],
        visit_id=visit.id,
        role=CodeRole.petitioner,
        ttl=timedelta(minutes=ctx.settings.visit_code_ttl_minutes),
        length=ctx.settings.visit_code_length,
        created_by=actor.user_id,
    )
    record_audit(
        ctx.db,
        action="visit.code_issued",
        actor_id=actor.user_id,
        actor_name=actor.username,
        target_type="visit",
        target_id=visit.id,
        address=actor.address,
        court_id=visit.court_id,
        detail={"role": "petitioner"},
    )
    return CodeOut(
        code=issued.code, expires_at=issued.record.expires_at, join_url=f"/join?visit={visit.id}"
    )


def _outcome(event: CaseEvent, names: dict[int, str]) -> OutcomeOut:
    outcome = VisitOutcome(event.detail["outcome"])
    return OutcomeOut(
        id=event.id,
        at=event.at,
        visit_id=str(event.detail["visit_id"]),
        outcome=outcome,
        outcome_name=label(outcome),
        text=mask_text(str(event.detail.get("text", ""))),
        actor_name=event.actor_name,
        actor=names.get(event.actor_id, event.actor_name)
        if event.actor_id is not None
        else event.actor_name,
    )


@api.route(
    "POST",
    r"/visits/{visit_id:[0-9a-f]{32}}/outcome",
    summary="Record the visit's outcome on its case's timeline",
    tag="visits",
    # who receives visits, and who hosts meetings (a petition officer's 约谈结果); the
    # lifecycle's rule (Action.outcome) decides for each visit
    roles=RECEIVERS | HOST_ROLES,
    body=OutcomeIn,
    answer=OutcomeOut,
    status=201,
    errors=(403, 409),
)
async def record_outcome(ctx: Context) -> OutcomeOut:
    """Only the visit's judge (the leader of a 领导接访), while the visit is in progress or
    after it ended; each outcome is a new timeline entry (and its audit event), none
    replaces another."""
    b: OutcomeIn = ctx.body
    event = await lifecycle.record_outcome(
        ctx.db, ctx.me.actor(), ctx.request.match_info["visit_id"], b.outcome, b.text
    )
    await ctx.db.flush()
    me = ctx.me
    return _outcome(event, {me.user_id: me.display_name})


@api.route(
    "GET",
    r"/visits/{visit_id:[0-9a-f]{32}}/outcomes",
    summary="The outcomes recorded for a visit",
    tag="visits",
    roles=ALL_STAFF,
    answer=list[OutcomeOut],
)
async def list_outcomes(ctx: Context) -> list[OutcomeOut]:
    visit = await vs.visible_visit(ctx.db, ctx.me.actor(), ctx.request.match_info["visit_id"])
    outcomes = await case_visits.visit_outcomes(ctx.db, visit)
    names = await case_service.staff_names(ctx.db, {e.actor_id for e in outcomes})
    return [_outcome(e, names) for e in outcomes]


async def plan_visit(ctx: Context, b: VisitIn) -> booking.BookingPlan:
    """The booking flow's checks for a requested visit (no write yet): shared by the desk's
    booking and the confirmation of a petitioner's online request."""
    return await booking.plan_booking(
        ctx.db,
        ctx.me.actor(),
        ctx.settings,
        petition_id=b.petition_id,
        receiving_court_id=b.receiving_court_id,
        judge_id=b.judge_id,
        room_id=b.room_id,
        starts_at=b.starts_at,
        ends_at=b.ends_at,
        kind=b.kind,
    )
