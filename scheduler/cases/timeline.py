"""A case's timeline (全程留痕): every entry is also an audit event, written in the same
transaction, so nothing that happens to a case is kept in one place and missed in the other."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import AuditEvent, audit_values
from config.db import prepared, table_of, utcnow
from scheduler.cases.models import CaseEvent
from scheduler.cases.words import EventKind
from scheduler.scope import Actor


@dataclass(frozen=True)
class Entry:
    """One timeline entry to write (:func:`add_events`)."""

    petition_id: int
    kind: EventKind
    text: str = ""
    court_id: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def entry_values(actor: Actor, entry: Entry) -> tuple[dict[str, Any], dict[str, Any]]:
    """The columns of the entry's timeline row and of its audit event (what
    :func:`add_event` stores; a caller writing its own rows inserts these)."""
    court_id = entry.court_id if entry.court_id is not None else actor.court_id
    event = {
        "petition_id": entry.petition_id,
        "at": utcnow(),
        "kind": entry.kind.value,
        "actor_id": actor.user_id,
        "actor_name": actor.username,
        "court_id": court_id,
        "text": entry.text,
        "detail": dict(entry.detail),
    }
    audit = audit_values(
        action=f"case.{entry.kind.value}",
        actor_type="user" if actor.user_id is not None else "system",
        actor_id=actor.user_id,
        actor_name=actor.username,
        target_type="case",
        target_id=entry.petition_id,
        address=actor.address,
        court_id=court_id,
        detail={"text": entry.text, **entry.detail},
    )
    return event, audit


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
    event, audit = entry_values(actor, Entry(petition_id, kind, text, court_id, dict(detail or {})))
    row = CaseEvent(**event)
    db.add(row)
    db.add(AuditEvent(**audit))
    return row


_INSERT_EVENTS = prepared(insert(table_of(CaseEvent)))
_INSERT_AUDITS = prepared(insert(table_of(AuditEvent)))


async def add_events(db: AsyncSession, actor: Actor, entries: Sequence[Entry]) -> None:
    """:func:`add_event` for many entries at once: two INSERT statements in all (the
    deadline scan writes thousands)."""
    if not entries:
        return
    rows = [entry_values(actor, e) for e in entries]
    await db.execute(_INSERT_EVENTS, [event for event, _ in rows])
    await db.execute(_INSERT_AUDITS, [audit for _, audit in rows])
