"""On-site receptions (现场接待, 一案一录音视频即时传输): a walk-in received at a window of the
basic court is recorded like a visit — the window terminal's camera and microphone through
the relay and the recorder, no remote party — and bound to the case as a walk-in contact.

The reception is a :class:`~scheduler.models.Visit` of kind ``onsite``; its rules (born in
progress, recorded from when the operator enters, ended by the operator, watched from
above) are in :mod:`scheduler.lifecycle`. Its recording is processed and signed like every
visit's. What is live below a court, for 监看, is listed here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import utcnow
from config.errors import InvalidError, NotFoundError, PermissionDeniedError
from scheduler import lifecycle
from scheduler.booking import extend_hold, hold, person_resource
from scheduler.cases import service as cases
from scheduler.cases.meetings import conflict_error
from scheduler.cases.models import Contact
from scheduler.cases.rules import CaseAction
from scheduler.cases.timeline import add_event
from scheduler.cases.visits import visit_link
from scheduler.cases.words import Channel, EventKind, VisitKind
from scheduler.models import ReceptionRoom, Role, User, Visit, VisitState, new_visit_id
from scheduler.scope import Actor, descendant_court_ids

# the span an on-site reception holds its room and operator for when it starts (released
# when it ends, as a visit's booking is); what the day views show of it. While it goes on,
# housekeeping extends the hold by as much again once less than EXTEND_BEFORE is left.
NOMINAL = timedelta(minutes=30)
EXTEND_BEFORE = timedelta(minutes=10)


@dataclass(frozen=True)
class OnsiteReception:
    """A started on-site reception: its visit and the contact it added to the case."""

    visit: Visit
    contact: Contact
    window: str


async def start_onsite(
    db: AsyncSession,
    actor: Actor,
    *,
    petition_id: int,
    room_id: int | None,
    window: str,
    people_count: int = 1,
    summary: str = "",
    now: datetime | None = None,
) -> OnsiteReception:
    """An operator of the basic court starts recording a walk-in at a window (a reception
    room of their court, or a window named here): a visit of kind ``onsite``, in progress
    at once; a walk-in contact on the case bound to it; and the case's timeline entry
    linking to the recording. The case's rules decide who may add the contact
    (:mod:`scheduler.cases.service`)."""
    now = now or utcnow()
    if actor.role is not Role.operator or actor.court_id is None:
        raise PermissionDeniedError("只有基层法院接待窗口的操作员可以开始现场接待录音录像")
    # the case's own rule: who may add a contact to it (404 when it is out of reach)
    petition, _ = await cases.get_case(db, actor, petition_id, CaseAction.add_contact)
    window = window.strip()
    if room_id is not None:
        room = await db.get(ReceptionRoom, room_id)
        if room is None or room.court_id != actor.court_id:
            raise NotFoundError(f"接访室 {room_id} 不存在")
        if not room.active:
            raise InvalidError("该接访室已停用", code="room_inactive")
        window = window or room.name
    if not window:
        raise InvalidError(
            "请选择接访室或填写接待窗口",
            code="validation_failed",
            details=[{"field": "window", "message": "必填"}],
        )
    visit = Visit(
        id=new_visit_id(),
        petition_id=petition.id,
        court_id=actor.court_id,
        receiving_court_id=actor.court_id,
        judge_id=None,
        room_id=room_id,
        starts_at=now,
        ends_at=now + NOMINAL,
        booked_by=actor.user_id,
        walk_in=True,
        kind=VisitKind.onsite,
    )
    # the room and the operator are held like a visit's: no visit or meeting is booked into
    # them while the reception goes on (409 here if one already is), freed when it ends
    operator = await db.get(User, actor.user_id)
    assert operator is not None
    resources = [person_resource(operator)] + ([f"room:{room_id}"] if room_id else [])
    conflicts = await hold(db, visit, resources)
    if conflicts:
        raise await conflict_error(db, conflicts)
    lifecycle.begin_onsite(db, actor, visit, petition=petition.number, window=window)
    contact = await cases.add_contact(
        db,
        actor,
        petition.id,
        channel=Channel.walk_in,
        occurred_at=now,
        summary=summary.strip() or f"现场接待（{window}），全程录音录像",
        people_count=people_count,
        visit_id=visit.id,
    )
    add_event(
        db,
        petition.id,
        EventKind.visit,
        actor,
        f"现场接待（{window}）开始，全程录音录像",
        detail={
            "visit_id": visit.id,
            "contact_id": contact.id,
            "kind": VisitKind.onsite.value,
            "channel": Channel.walk_in.value,
            "window": window,
            "link": visit_link(visit.id),
        },
    )
    return OnsiteReception(visit=visit, contact=contact, window=window)


async def extend_ongoing(db: AsyncSession, now: datetime, limit: int = 200) -> int:
    """Housekeeping: each on-site reception still going on within ``EXTEND_BEFORE`` of the
    end of its hold keeps its room and operator ``NOMINAL`` longer, where nothing is booked
    then (otherwise the booking that follows stands, and the next run tries again). The
    number extended."""
    due = (
        await db.scalars(
            select(Visit)
            .where(
                Visit.kind == VisitKind.onsite,
                Visit.state == VisitState.in_progress,
                Visit.ends_at <= now + EXTEND_BEFORE,
            )
            .order_by(Visit.ends_at)
            .limit(limit)
        )
    ).all()
    extended = 0
    for visit in due:
        assert visit.ends_at is not None
        extended += await extend_hold(db, visit, max(visit.ends_at, now) + NOMINAL)
    return extended


async def watchable_visits(db: AsyncSession, actor: Actor, limit: int = 500) -> Sequence[Visit]:
    """The visits and on-site receptions in progress at the courts below ``actor``'s (by
    the visit's court or its receiving court), which ``actor`` may watch (监看); every
    court's for an admin. Others' roles see none."""
    if actor.role not in lifecycle.WATCHERS:
        return []
    stmt = select(Visit).where(Visit.state.in_(lifecycle.WATCHABLE))
    if not actor.is_admin:
        if actor.court_id is None:
            return []
        below = await descendant_court_ids(db, actor.court_id) - {actor.court_id}
        if not below:
            return []
        stmt = stmt.where(or_(Visit.court_id.in_(below), Visit.receiving_court_id.in_(below)))
    return (await db.scalars(stmt.order_by(Visit.starts_at, Visit.id).limit(limit))).all()
