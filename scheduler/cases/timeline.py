"""A case's timeline (全程留痕): every entry is also an audit event, written in the same
transaction, so nothing that happens to a case is kept in one place and missed in the other."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import record_audit
from config.db import utcnow
from scheduler.cases.models import CaseEvent
from scheduler.cases.words import EventKind
from scheduler.scope import Actor


def add_event(
    db: AsyncSession,
    petition_id: int,
    kind: EventKind,
    actor: Actor,
    text: str = "",
    *,
    court_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> CaseEvent:
    """Append one timeline entry for the case and its audit event (committed with the change).

    ``text`` is the zh-CN sentence people read; ``detail`` the structured facts (ids, codes).
    """
    event = CaseEvent(
        petition_id=petition_id,
        at=utcnow(),
        kind=kind.value,
        actor_id=actor.user_id,
        actor_name=actor.username,
        court_id=court_id if court_id is not None else actor.court_id,
        text=text,
        detail=dict(detail or {}),
    )
    db.add(event)
    record_audit(
        db,
        action=f"case.{kind.value}",
        actor_type="user" if actor.user_id is not None else "system",
        actor_id=actor.user_id,
        actor_name=actor.username,
        target_type="case",
        target_id=petition_id,
        address=actor.address,
        court_id=court_id if court_id is not None else actor.court_id,
        detail={"text": text, **(detail or {})},
    )
    return event
