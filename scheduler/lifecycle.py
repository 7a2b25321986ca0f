"""The visit lifecycle, in one place: who may join, admit and end a visit; the state
machine; when the recording starts; what happens when the judge vanishes.

Signaling (through ``web/visit_gateway.py``), the HTTP API and housekeeping all call these
functions; none of them writes its own rule. A visit's state, its room's membership and its
recording are three views of one story: every change of state is a ``visit_events`` row and
an AuditEvent, written in the same transaction.

::

    scheduled ─► checked_in ─► in_lobby ─► in_progress ─► ended ─► archived
        │             │  ▲          │                       ▲
        │             │  └──────────┘ (sent back)           │
        │             └─────────────┴───────────────────────┘ (ended from the lists)
        └─► cancelled, no_show        (checked_in, in_lobby ─► cancelled)

An on-site reception (``VisitKind.onsite``: a walk-in received at a window of the basic
court, recorded like a visit, 一案一录音视频) is born ``in_progress`` when the operator
starts it (:func:`begin_onsite`) and recorded from the moment the operator enters its room;
it has no judge and no guests: the operator hosts it and ends it.

Staff of a court above a visit's court or its receiving court may watch it while it is in
progress (监看, ``Action.watch``): as observers who send no media and whom everyone sees.

A video supervision meeting (视频约谈, ``VisitKind.meeting``) has no petitioner, no check-in
and no lobby: its host opens it (scheduled ─► in_progress, recorded from then on), its host
and invitees are entitled to its room, and its host ends it (the minutes then go to each
case it concerned, see ``scheduler/cases/minutes.py``) or cancels it (an entry on each of
those cases; the invitees are told).
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import utcnow
from config.errors import ConflictError, InvalidError, PermissionDeniedError
from config.privacy import mask_id_number
from config.settings import Settings
from config.vocabulary import EndReason, ParticipantRole, label
from scheduler.cases import visits as case_visits
from scheduler.cases.minutes import meeting_case_ids, record_minutes
from scheduler.cases.models import CaseEvent, MeetingCase, MeetingInvitee
from scheduler.cases.words import VisitKind, VisitOutcome
from scheduler.models import (
    BookingLock,
    Petition,
    Petitioner,
    Role,
    User,
    Visit,
    VisitEvent,
    VisitEventKind,
    VisitState,
)
from scheduler.notify import notify, visit_recipients
from scheduler.scope import SYSTEM_ACTOR, Actor, ancestor_court_ids
from scheduler.visits import audit_visit, local_text, visible_visit, visit_event

# A visit that is still to happen or happening: it holds its booking locks.
OPEN = (VisitState.scheduled, VisitState.checked_in, VisitState.in_lobby, VisitState.in_progress)
# People may be in its room.
LIVE = (VisitState.in_lobby, VisitState.in_progress)
ALLOWED: dict[VisitState, frozenset[VisitState]] = {
    VisitState.scheduled: frozenset(
        {VisitState.checked_in, VisitState.cancelled, VisitState.no_show}
    ),
    VisitState.checked_in: frozenset(
        {VisitState.in_lobby, VisitState.cancelled, VisitState.no_show, VisitState.ended}
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
# A meeting: no check-in, no lobby; its host opens it and it is in progress at once.
MEETING_ALLOWED: dict[VisitState, frozenset[VisitState]] = {
    VisitState.scheduled: frozenset(
        {VisitState.in_progress, VisitState.cancelled, VisitState.no_show}
    ),
    VisitState.checked_in: frozenset(),
    VisitState.in_lobby: frozenset(),
    VisitState.in_progress: frozenset({VisitState.ended}),
    VisitState.ended: frozenset({VisitState.archived}),
    VisitState.archived: frozenset(),
    VisitState.cancelled: frozenset(),
    VisitState.no_show: frozenset(),
}
# The states from which a visit may be ended (from the call, or from the lists later).
ENDABLE = frozenset(s for s, allowed in ALLOWED.items() if VisitState.ended in allowed)
# Leaving these states gives the judge, the room and the petitioner their time back.
RELEASES = frozenset({VisitState.ended, VisitState.cancelled, VisitState.no_show})
# 一案一录: the recording starts when this participant enters the call (is admitted), and
# the visit is in progress from then on; it stops when the visit ends.
RECORDING_STARTS_WITH = ParticipantRole.petitioner
# A meeting has nobody to admit: it is recorded, and in progress, from when its host opens it.
MEETING_OPENED_BY = ParticipantRole.host
# An on-site reception is born in progress, and recorded from when its operator enters.
ONSITE_STARTS_IN = VisitState.in_progress
# 监看: who may watch the visits of the courts below theirs, and while the visit is in what.
WATCHERS = frozenset({Role.judge, Role.petition_officer, Role.leader, Role.admin})
WATCHABLE = frozenset({VisitState.in_progress})
WATCH_REFUSED = "只有上级法院的接访法官、信访专员或院领导可以监看本院以下法院的接访"


def allowed(visit: Visit) -> dict[VisitState, frozenset[VisitState]]:
    """The state machine of ``visit``'s kind."""
    return MEETING_ALLOWED if visit.kind is VisitKind.meeting else ALLOWED


class Action(enum.StrEnum):
    """What a staff member may do to a visit; :func:`may` decides, tested as a table."""

    enter = "enter"  # enter the live room (judge or operator)
    admit = "admit"  # admit or refuse people in the lobby, invite, write notes
    end = "end"  # end the visit for everyone
    cancel = "cancel"
    manage = "manage"  # check in, reschedule, issue the petitioner's code, send to the lobby
    outcome = "outcome"  # record the visit's outcome on the case's timeline
    watch = "watch"  # observe the live room from a supervising court (监看), sending nothing


# ---------------------------------------------------------------- entitlement


# Who receives a visit of each kind a court books (its "judge"): a court leader receives a
# 领导接访; a judge every other kind (判后答疑: the original trial judge). Meetings and
# on-site receptions have their own rules and are not booked through this table.
RECEIVER: dict[VisitKind, Role] = {
    VisitKind.reception: Role.judge,
    VisitKind.post_judgment: Role.judge,
    VisitKind.leader: Role.leader,
}
BOOKABLE_KINDS = frozenset(RECEIVER)
RECEIVING_ROLES = frozenset(RECEIVER.values())


def receiver_role(kind: VisitKind) -> Role:
    """The role of whoever receives a visit of ``kind`` (judges for kinds without a row)."""
    return RECEIVER.get(kind, Role.judge)


def is_visit_judge(actor: Actor, visit: Visit) -> bool:
    """THE judge rule: a visit's judge is the receiver assigned to it; a visit with none
    assigned is received by any receiver of its receiving court. The receiver's role follows
    the visit's kind (:data:`RECEIVER`): a leader for 领导接访, a judge otherwise — so a judge
    never receives a leader's visit, nor a leader a judge's."""
    if actor.role is not receiver_role(visit.kind) or actor.user_id is None:
        return False
    if visit.kind is VisitKind.onsite:  # received at the window: no judge
        return False
    if visit.judge_id is not None:
        return visit.judge_id == actor.user_id
    return actor.court_id == visit.receiving_court_id


def is_booking_operator(actor: Actor, visit: Visit) -> bool:
    """An operator of the court that booked the visit (where the petitioner sits)."""
    return actor.role is Role.operator and actor.court_id == visit.court_id


def is_meeting_host(actor: Actor, visit: Visit) -> bool:
    """A meeting's host is the staff member who holds it (kept as the visit's judge_id)."""
    return (
        visit.kind is VisitKind.meeting
        and actor.user_id is not None
        and actor.user_id == visit.judge_id
    )


async def meeting_invitees(db: AsyncSession, visit: Visit) -> frozenset[int]:
    """The user ids invited to ``visit`` when it is a meeting (nobody otherwise)."""
    if visit.kind is not VisitKind.meeting:
        return frozenset()
    rows = await db.scalars(
        select(MeetingInvitee.user_id).where(MeetingInvitee.visit_id == visit.id)
    )
    return frozenset(rows.all())


def may(
    actor: Actor,
    action: Action,
    visit: Visit,
    invitees: Collection[int] = (),
    *,
    above: Collection[int] = (),
) -> bool:
    """Whether ``actor`` may do ``action`` to ``visit`` (the system may do everything).
    ``above``: the courts above the visit's court and its receiving court
    (:func:`supervising_courts`), which only ``Action.watch`` needs. For a meeting,
    ``invitees`` are its invited users (:func:`meeting_invitees`): they and its host enter
    its room; only the host (or an admin, or the system) changes it."""
    system = actor.user_id is None
    if visit.kind is VisitKind.meeting and action is not Action.watch:
        host = is_meeting_host(actor, visit)
        if action is Action.enter:
            return host or (actor.user_id is not None and actor.user_id in invitees)
        if action in (Action.admit, Action.outcome):
            return host
        return system or actor.is_admin or host  # end, cancel, manage
    judge = is_visit_judge(actor, visit)
    operator = is_booking_operator(actor, visit)
    if action is Action.watch:  # never the system: a watch is a person's
        return not system and actor.role in WATCHERS and (actor.is_admin or actor.court_id in above)
    if action is Action.enter:
        return judge or operator
    if action in (Action.admit, Action.outcome):
        return judge
    if action is Action.end:
        return system or actor.is_admin or judge or operator
    if action is Action.cancel:
        return system or actor.is_admin or judge or operator
    return system or actor.is_admin or operator  # manage


async def supervising_courts(db: AsyncSession, visit: Visit) -> set[int]:
    """The courts above the visit's court and above its receiving court (who may watch)."""
    above = set(await ancestor_court_ids(db, visit.court_id))
    if visit.receiving_court_id != visit.court_id:
        above |= set(await ancestor_court_ids(db, visit.receiving_court_id))
    return above


async def watch_refusal(db: AsyncSession, actor: Actor, visit: Visit) -> str | None:
    """Why ``actor`` may not watch ``visit`` now (None: they may)."""
    if not may(actor, Action.watch, visit, above=await supervising_courts(db, visit)):
        return WATCH_REFUSED
    if visit.state not in WATCHABLE:
        return "只能监看正在进行的接访或现场接待"
    return None


def room_role(actor: Actor, visit: Visit, invitees: Collection[int] = ()) -> ParticipantRole | None:
    """The staff member's role in the visit's room, or None when they may not enter."""
    if not may(actor, Action.enter, visit, invitees):
        return None
    if visit.kind is VisitKind.meeting:
        return ParticipantRole.host if is_meeting_host(actor, visit) else ParticipantRole.attendee
    return ParticipantRole.judge if is_visit_judge(actor, visit) else ParticipantRole.operator


_MEETING_REFUSALS = {
    Action.enter: "只有本次约谈的主持人和受邀人员可以进入",
    Action.admit: "只有本次约谈的主持人可以这样做",
    Action.end: "只有本次约谈的主持人可以结束约谈",
    Action.cancel: "只有本次约谈的主持人可以取消约谈",
    Action.manage: "只有本次约谈的主持人可以修改约谈",
    Action.outcome: "只有本次约谈的主持人可以这样做",
}


def require(actor: Actor, action: Action, visit: Visit, invitees: Collection[int] = ()) -> None:
    """Raise 403 with a message naming who may, unless ``actor`` may."""
    if may(actor, action, visit, invitees):
        return
    if visit.kind is VisitKind.meeting and action in _MEETING_REFUSALS:
        raise PermissionDeniedError(_MEETING_REFUSALS[action])
    raise PermissionDeniedError(
        {
            Action.enter: "只有本次接访的接访法官或预约法院的操作员可以进入",
            Action.admit: "只有本次接访的接访法官可以这样做",
            Action.end: "只有本次接访的接访法官或预约法院的操作员可以结束接访",
            Action.cancel: "只有本次接访的接访法官或预约法院的操作员可以取消",
            Action.manage: "只有本院操作员可以修改此预约",
            Action.outcome: "只有本次接访的接访法官可以记录接访结果",
            Action.watch: WATCH_REFUSED,
        }[action]
    )


def may_manage(actor: Actor, visit: Visit) -> None:
    """Operators of the booking court (and admins) change bookings."""
    require(actor, Action.manage, visit)


def can_end(actor: Actor, visit: Visit) -> bool:
    """Whether the lists should offer ``actor`` to end ``visit`` now."""
    return VisitState.ended in allowed(visit)[visit.state] and may(actor, Action.end, visit)


def starts_recording(role: ParticipantRole, visit: Visit) -> bool:
    """Whether this participant's entering the call starts the visit's recording: the
    petitioner's, the operator's at an on-site reception, the host's opening a meeting;
    and, once a visit or meeting is in progress, anyone's (its room closed meanwhile: a
    node restarted or failed over, everyone dropped; whoever comes back first resumes
    the record, not only the one who began it). Never once the visit is over."""
    if visit.state not in OPEN:
        return False
    if visit.kind is VisitKind.onsite:
        return role is ParticipantRole.operator
    if visit.state is VisitState.in_progress:
        return True
    if visit.kind is VisitKind.meeting:
        return role is MEETING_OPENED_BY
    return role is RECORDING_STARTS_WITH


def hosts(role: ParticipantRole, visit: Visit) -> bool:
    """Whether this participant holds the call: while none is present it may end as
    abandoned, and a host may end it from the call. The judge; at an on-site reception,
    the operator; at a meeting, its host."""
    if visit.kind is VisitKind.onsite:
        return role is ParticipantRole.operator
    if visit.kind is VisitKind.meeting:
        return role is ParticipantRole.host
    return role is ParticipantRole.judge


# ---------------------------------------------------------------- the state machine


def begin_onsite(db: AsyncSession, actor: Actor, visit: Visit, **detail: Any) -> None:
    """An on-site reception begins: in progress from the start (it was never booked, and
    nobody waits to be admitted); its history line and audit event are written."""
    if visit.kind is not VisitKind.onsite:
        raise InvalidError("只有现场接待可以直接开始", code="not_onsite")
    if not may(actor, Action.enter, visit):
        raise PermissionDeniedError("只有本院操作员可以在接待窗口开始现场接待录音录像")
    visit.state = ONSITE_STARTS_IN
    visit_event(db, actor, visit, VisitEventKind.state, None, ONSITE_STARTS_IN, **detail)
    audit_visit(db, actor, "visit.onsite_started", visit, **detail)


async def transition(
    db: AsyncSession, actor: Actor, visit: Visit, to: VisitState, **detail: Any
) -> None:
    """Move ``visit`` to ``to`` if allowed; a concurrent change answers 409. Writes the
    history line and the audit event; releases the booking locks when the visit is over;
    makes a booked visit that starts (in_progress) a contact of its case
    (:func:`scheduler.cases.visits.visit_held`)."""
    current = visit.state
    if to not in allowed(visit)[current]:
        raise ConflictError(
            f"接访状态不能从“{label(current)}”变为“{label(to)}”",
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
    if to is VisitState.in_progress and visit.kind in BOOKABLE_KINDS:
        # the booked visit takes place: only now is it one of its case's contacts (a visit
        # cancelled, missed or moved never counted where it did not happen)
        await case_visits.visit_held(db, visit)
    kind = {
        VisitState.cancelled: VisitEventKind.cancelled,
        VisitState.checked_in: VisitEventKind.checked_in,
    }.get(to, VisitEventKind.state)
    visit_event(db, actor, visit, kind, current, to, **detail)
    audit_visit(db, actor, f"visit.{to.value}", visit, from_state=current.value, **detail)


async def cancel_visit(
    db: AsyncSession, actor: Actor, settings: Settings, visit_id: str, *, reason: str
) -> Visit:
    """Cancel a visit or meeting that has not started: the cancellation is an entry of its
    case's timeline (a meeting's: of every case it concerned) and its people are told (a
    visit's judge and the booking court's operators; a meeting's host and invitees), but
    whoever cancelled."""
    visit = await visible_visit(db, actor, visit_id)
    require(actor, Action.cancel, visit)
    await transition(db, actor, visit, VisitState.cancelled, reason=reason)
    visit.cancel_reason = reason
    await case_visits.visit_cancelled(db, actor, settings, visit, reason)
    starts = local_text(visit.starts_at, settings) if visit.starts_at else ""
    if visit.kind is VisitKind.meeting:
        # a meeting's people are its host and invitees (no operator books it): all are told
        numbers = (
            await db.scalars(
                select(Petition.number)
                .join(MeetingCase, MeetingCase.petition_id == Petition.id)
                .where(MeetingCase.visit_id == visit.id)
                .order_by(Petition.number)
            )
        ).all()
        await notify(
            db,
            ({visit.judge_id} | await meeting_invitees(db, visit)) - {actor.user_id},
            kind="meeting_cancelled",
            title=f"视频约谈取消：{'、'.join(numbers)}",
            body=f"原定 {starts}；原因：{reason}",
            visit_id=visit.id,
        )
        return visit
    petition = await db.get(Petition, visit.petition_id)
    await notify(
        db,
        await visit_recipients(db, visit, actor.user_id),
        kind="visit_cancelled",
        title=f"接访取消：{petition.number if petition else ''}",
        body=f"原定 {starts}；原因：{reason}",
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
    await _checked_in(db, actor, visit, document_type, masked, now)
    return visit


# The check a petitioner passed on the portal (an SMS code to the phone on their case, the
# code for the visit given on its day), standing for the counter's (docs/portal.md).
ONLINE_CHECK = "网上信访短信验证"


async def check_in_online(db: AsyncSession, visit: Visit, now: datetime | None = None) -> None:
    """The petitioner joined a scheduled visit with the visit code the portal gave them:
    checked in on that proof (scheduled → checked_in), as the counter would, so the judge
    can admit them and housekeeping never takes them for a no-show while they wait."""
    petition = await db.get(Petition, visit.petition_id)
    petitioner = await db.get(Petitioner, petition.petitioner_id) if petition else None
    masked = mask_id_number(petitioner.id_number) if petitioner else ""
    await _checked_in(db, SYSTEM_ACTOR, visit, ONLINE_CHECK, masked, now)


async def _checked_in(
    db: AsyncSession,
    actor: Actor,
    visit: Visit,
    document_type: str,
    masked: str,
    now: datetime | None,
) -> None:
    await transition(
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


async def enter_lobby(db: AsyncSession, actor: Actor, visit: Visit) -> bool:
    """The petitioner waits in the lobby (checked_in → in_lobby); the judge is told.
    False when the visit is not checked in (already waiting, or further on)."""
    if visit.state is not VisitState.checked_in:
        return False
    await transition(db, actor, visit, VisitState.in_lobby)
    petition = await db.get(Petition, visit.petition_id)
    await notify(
        db,
        [visit.judge_id],
        kind="petitioner_waiting",
        title=f"信访人正在候场：{petition.number if petition else ''}",
        visit_id=visit.id,
    )
    return True


async def admit_petitioner(db: AsyncSession, actor: Actor, visit: Visit) -> None:
    """The visit's judge admits the petitioner: the visit is in progress (and recorded).
    Admitting into a visit already in progress (a rejoin) changes nothing; a visit that
    is closed, or not yet checked in, refuses (409) — so no recording starts for it."""
    require(actor, Action.admit, visit)
    if visit.state is VisitState.in_progress:
        return
    if visit.state is VisitState.checked_in:  # entered the lobby before the page said so
        await transition(db, actor, visit, VisitState.in_lobby)
    await transition(db, actor, visit, VisitState.in_progress)


def admit_guest(actor: Actor, visit: Visit) -> None:
    """The judge admits a lawyer or mediator (invited, waiting in the lobby): only into a
    visit in progress, whose recording runs (一案一录). Before the petitioner is admitted
    nothing records, and a talk with the lawyer then would be on no record (409)."""
    require(actor, Action.admit, visit)
    if visit.state is not VisitState.in_progress:
        raise ConflictError(
            "请先准许信访人进入：接访开始录音录像后，方可准许律师或调解员进入",
            code="petitioner_first",
        )


# how long before its start a meeting's host may open it (test their devices, then begin)
MEETING_LEAD = timedelta(minutes=15)


def meeting_entry_refusal(
    visit: Visit, role: ParticipantRole, settings: Settings, now: datetime | None = None
) -> str | None:
    """Why this participant may not enter the meeting's room now (None: they may). Its
    room holds nobody until the host opens it, which starts its recording: an invitee
    waits for that (before, they could talk unrecorded for days), and the host opens it
    from ``MEETING_LEAD`` before its start (before, a day-early test of the devices opened
    and used up the meeting, ended as abandoned with empty minutes)."""
    if visit.kind is not VisitKind.meeting or visit.state is VisitState.in_progress:
        return None
    if role is not MEETING_OPENED_BY:
        return "约谈尚未开始，主持人进入后将自动加入，请保持本页打开"
    now = now or utcnow()
    if visit.starts_at is not None and now < visit.starts_at - MEETING_LEAD:
        opens = local_text(visit.starts_at - MEETING_LEAD, settings)
        return f"约谈尚未到时间，{opens} 起可以进入"
    return None


async def open_meeting(db: AsyncSession, actor: Actor, visit: Visit) -> None:
    """The host enters the meeting's room: it is in progress (and recorded) from now on.
    Entering again changes nothing; a meeting that is over refuses (409)."""
    require(actor, Action.admit, visit)
    if visit.state is not VisitState.in_progress:
        await transition(db, actor, visit, VisitState.in_progress)


async def send_back(db: AsyncSession, actor: Actor, visit: Visit, reason: str) -> None:
    """The judge refused the petitioner for now: back to checked in (may come again)."""
    require(actor, Action.admit, visit)
    if visit.state is VisitState.in_lobby:
        await transition(db, actor, visit, VisitState.checked_in, reason=reason)


async def end_visit(
    db: AsyncSession,
    actor: Actor,
    settings: Settings,
    visit: Visit,
    reason: EndReason = EndReason.ended,
) -> bool:
    """End ``visit`` (from checked in, the lobby or the call). True when it was ended
    now; False when it had already ended (ending twice is harmless). The judge and the
    booking court's operators are told when anyone but themselves ended it."""
    require(actor, Action.end, visit)
    if visit.state in (VisitState.ended, VisitState.archived):
        return False
    if reason is EndReason.ended and visit.state is not VisitState.in_progress:
        reason = EndReason.not_admitted
    await transition(db, actor, visit, VisitState.ended, reason=reason.value)
    if visit.kind is VisitKind.meeting:
        await record_minutes(db, actor, settings, visit)
    petition = await db.get(Petition, visit.petition_id)
    number = petition.number if petition else ""
    recipients = await visit_recipients(db, visit, actor.user_id)
    if reason is EndReason.abandoned:
        await notify(
            db,
            recipients,
            kind="visit_abandoned",
            title=f"接访已自动结束：{number}",
            body=(
                f"接访法官离开超过 {settings.visit_abandon_minutes} 分钟，系统已结束接访并处理录像"
            ),
            visit_id=visit.id,
        )
    elif actor.user_id is not None and actor.user_id != visit.judge_id:
        ender = await db.get(User, actor.user_id)
        who = ender.display_name if ender is not None else actor.username
        await notify(
            db,
            recipients,
            kind="visit_ended",
            title=f"接访已结束：{number}",
            body=f"由{label(actor.role)}{who}结束",
            visit_id=visit.id,
        )
    return True


async def change_state(
    db: AsyncSession,
    actor: Actor,
    settings: Settings,
    visit_id: str,
    to: VisitState,
    **detail: Any,
) -> Visit:
    """The API's transitions: in_lobby, back to checked_in, in_progress, ended, archived."""
    visit = await visible_visit(db, actor, visit_id)
    if to is VisitState.ended:
        await end_visit(db, actor, settings, visit)
        return visit
    if to is VisitState.in_progress:
        await admit_petitioner(db, actor, visit)
        return visit
    if to is VisitState.in_lobby:
        may_manage(actor, visit)
        if not await enter_lobby(db, actor, visit):
            await transition(db, actor, visit, to)  # answers why not
        return visit
    if to is VisitState.checked_in:
        # only back from the lobby; the identity check itself is POST /check-in
        if visit.state is not VisitState.in_lobby:
            raise ConflictError(
                "签到请使用身份核验；此处只能让候场的信访人退回", code="invalid_transition"
            )
        if not may(actor, Action.admit, visit):
            may_manage(actor, visit)
        await transition(db, actor, visit, to, **detail)
        return visit
    if to is VisitState.archived:
        if not (actor.is_admin or actor.user_id is None):
            raise PermissionDeniedError("归档由系统在录像处理完成后进行")
        await transition(db, actor, visit, to, **detail)
        return visit
    raise InvalidError("请使用签到或取消接口", code="use_specific_route")


async def record_outcome(
    db: AsyncSession, actor: Actor, visit_id: str, outcome: VisitOutcome, text: str
) -> CaseEvent:
    """The visit's judge records an outcome (释法明理, 引导诉讼 …) on the case's timeline,
    while the visit is in progress or after it ended; each is a new entry."""
    visit = await visible_visit(db, actor, visit_id)
    require(actor, Action.outcome, visit)
    cases: list[int] = []
    if visit.kind is VisitKind.meeting:  # 约谈结果: on every case the meeting was about
        cases = await meeting_case_ids(db, visit.id)
    return case_visits.record_outcome(db, actor, visit, outcome, text, cases)


# ---------------------------------------------------------------- vanished judges


async def stale_live_visits(
    db: AsyncSession, now: datetime, idle: timedelta, limit: int = 200
) -> list[str]:
    """Visits in progress whose history has been quiet for ``idle`` (nothing joined, left
    or was said): after a restart, the candidates for ending as abandoned when no node holds
    their room."""
    last = (
        select(func.max(VisitEvent.at))
        .where(VisitEvent.visit_id == Visit.id)
        .correlate(Visit)
        .scalar_subquery()
    )
    rows = await db.execute(
        select(Visit.id)
        .where(Visit.state == VisitState.in_progress, last <= now - idle)
        .limit(limit)
    )
    return [r[0] for r in rows]
