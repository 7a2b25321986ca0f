"""Reading visits: who may see which, lists, history; and the helpers with which every
part of the scheduler writes a visit's history and audit trail.

The rules of a visit's life are in ``scheduler/lifecycle.py``; booking in
``scheduler/booking.py``; walk-ins in ``scheduler/walkins.py``; periodic work in
``scheduler/housekeeping.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import AuditEvent, audit_values
from config.db import utcnow
from config.errors import NotFoundError
from config.settings import Settings
from scheduler.models import Role, Visit, VisitEvent, VisitEventKind, VisitState
from scheduler.scope import Actor, court_scope


def audit_visit_values(actor: Actor, action: str, visit: Visit, **detail: Any) -> dict[str, Any]:
    """The columns of an AuditEvent about ``visit`` by ``actor`` (the system when it has no
    user)."""
    return audit_values(
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


def audit_visit(db: AsyncSession, actor: Actor, action: str, visit: Visit, **detail: Any) -> None:
    """An AuditEvent about ``visit`` by ``actor`` (the system when it has no user)."""
    db.add(AuditEvent(**audit_visit_values(actor, action, visit, **detail)))


def visit_event_values(
    actor: Actor,
    visit: Visit,
    kind: VisitEventKind,
    from_state: VisitState | None,
    to_state: VisitState | None,
    **detail: Any,
) -> dict[str, Any]:
    """The columns of a line of the visit's history (``visit_events``)."""
    return {
        "visit_id": visit.id,
        "at": utcnow(),
        "kind": kind,
        "from_state": from_state.value if from_state else None,
        "to_state": to_state.value if to_state else None,
        "actor_id": actor.user_id,
        "actor_name": actor.username,
        "detail": detail,
    }


def visit_event(
    db: AsyncSession,
    actor: Actor,
    visit: Visit,
    kind: VisitEventKind,
    from_state: VisitState | None,
    to_state: VisitState | None,
    **detail: Any,
) -> None:
    """A line of the visit's history (``visit_events``)."""
    db.add(VisitEvent(**visit_event_values(actor, visit, kind, from_state, to_state, **detail)))


MINUTES = "%Y-%m-%d %H:%M"  # how people read an instant: date and time, to the minute


def local_text(instant: datetime, settings: Settings) -> str:
    """An instant as the court reads it: local date and time, minutes."""
    return instant.astimezone(settings.tz).strftime(MINUTES)


async def visible_visit(db: AsyncSession, actor: Actor, visit_id: str) -> Visit:
    """The visit if ``actor`` may see it, else 404 (as if it did not exist)."""
    visit = await db.get(Visit, visit_id)
    if visit is None or not await _may_see(db, actor, visit):
        raise NotFoundError("接访记录不存在")
    return visit


def _receives(actor: Actor) -> bool:
    """Whether ``actor`` is of a role that receives visits (judges, court leaders): they
    see the visits addressed to their court."""
    from scheduler.lifecycle import RECEIVING_ROLES  # lifecycle builds on this module

    return actor.role in RECEIVING_ROLES


async def _may_see(db: AsyncSession, actor: Actor, visit: Visit) -> bool:
    if actor.is_admin:
        return True
    if _receives(actor):
        return visit.receiving_court_id == actor.court_id
    scope = await court_scope(db, actor)
    return (
        scope is None
        or visit.court_id in scope
        or (actor.role is Role.archivist and visit.receiving_court_id in scope)
    )


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
    before: datetime | None = None,
    limit: int = 500,
) -> Sequence[Visit]:
    """Visits in ``actor``'s scope, by local day(s) (or starting ``before`` an instant)
    and filters, earliest first."""
    stmt = select(Visit)
    if _receives(actor):
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
    if before is not None:
        stmt = stmt.where(Visit.starts_at < before)
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
    """The visit's history, oldest first."""
    return (
        await db.scalars(
            select(VisitEvent).where(VisitEvent.visit_id == visit_id).order_by(VisitEvent.id)
        )
    ).all()
