"""Reading visits: who may see which, lists, history; and the helpers with which every
part of the scheduler writes a visit's history and audit trail.

The rules of a visit's life are in ``scheduler/lifecycle.py``; booking in
``scheduler/booking.py``; walk-ins in ``scheduler/walkins.py``; periodic work in
``scheduler/housekeeping.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import BindParameter, Row, Select, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import AuditEvent, audit_values
from config.db import prepared, table_of, utcnow
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
    params: dict[str, Any] = {"limit": limit}
    scope_kind = ""
    if _receives(actor):
        scope_kind, params["receiving"] = "receiving", actor.court_id
    else:
        scope = await court_scope(db, actor)
        if scope is not None:
            scope_kind = "archive" if actor.role is Role.archivist else "own"
            params["scope"] = sorted(scope)
    if day is not None:
        params["since"] = datetime.combine(day, datetime.min.time(), tzinfo=settings.tz)
        params["until"] = params["since"] + timedelta(days=days)
    optional = {"before": before, "court_id": court_id, "judge_id": judge_id, "room_id": room_id}
    params |= {k: v for k, v in optional.items() if v is not None}
    if states:
        params["states"] = list(states)
    statement = _visits_statement(scope_kind, frozenset(params))
    return (await db.scalars(statement, params)).all()


@lru_cache(maxsize=256)
def _visits_statement(scope_kind: str, given: frozenset[str]) -> Select[Any]:
    """The day view's statement for one combination of filters, built once (building it
    per request was a third of a day view's time): every value a bound parameter."""
    v = Visit
    stmt = select(v)
    if scope_kind == "receiving":
        stmt = stmt.where(v.receiving_court_id == bindparam("receiving"))
    elif scope_kind:
        scope: BindParameter[list[int]] = bindparam("scope", expanding=True)
        if scope_kind == "archive":
            stmt = stmt.where(or_(v.court_id.in_(scope), v.receiving_court_id.in_(scope)))
        else:
            stmt = stmt.where(v.court_id.in_(scope))
    if "since" in given:
        stmt = stmt.where(v.starts_at >= bindparam("since"), v.starts_at < bindparam("until"))
    if "before" in given:
        stmt = stmt.where(v.starts_at < bindparam("before"))
    if "court_id" in given:
        court: BindParameter[int] = bindparam("court_id")
        stmt = stmt.where(or_(v.court_id == court, v.receiving_court_id == court))
    if "judge_id" in given:
        stmt = stmt.where(v.judge_id == bindparam("judge_id"))
    if "room_id" in given:
        stmt = stmt.where(v.room_id == bindparam("room_id"))
    if "states" in given:
        stmt = stmt.where(v.state.in_(bindparam("states", expanding=True)))
    return stmt.order_by(v.starts_at, v.id).limit(bindparam("limit"))


def _history_statement() -> Select[Any]:
    events = table_of(VisitEvent)
    return (
        select(
            events.c.id,
            events.c.at,
            events.c.kind,
            events.c.from_state,
            events.c.to_state,
            events.c.actor_name,
            events.c.detail,
        )
        .where(events.c.visit_id == bindparam("visit_id"))
        .order_by(events.c.id)
    )


# Built once, of columns: a booking answers with its visit's history (no entity loads).
_HISTORY = prepared(_history_statement())


async def visit_history(db: AsyncSession, visit_id: str) -> Sequence[Row[Any]]:
    """The visit's history, oldest first: rows with the attributes answers show (id, at,
    kind, from_state, to_state, actor_name, detail)."""
    rows: Sequence[Row[Any]] = (await db.execute(_HISTORY, {"visit_id": visit_id})).all()
    return rows
