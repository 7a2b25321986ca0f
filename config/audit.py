"""The append-only audit trail: who did what to which record, when, from where.

It lives in ``config`` because every package (web, recorder, scheduler) must write to it and
``config`` is the one package all of them may import. Updates and deletes are refused by
database triggers (see the first migration), not only by the absence of routes.
"""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from config.db import Base, UTCDateTime, utcnow
from config.privacy import mask_text


class AuditEvent(Base):
    """One audited action. Rows are only ever inserted."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    actor_type: Mapped[str] = mapped_column(String(16), nullable=False)
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_name: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64))
    court_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)

    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_actor", "actor_type", "actor_id"),
        Index("ix_audit_events_target", "target_type", "target_id"),
    )


def audit_time(instant: datetime, tz: tzinfo) -> str:
    """An instant as audit details write it: ISO 8601 in the court's zone (``…+08:00``)."""
    return instant.astimezone(tz).isoformat(timespec="seconds")


def _masked(detail: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(mask_text(json.dumps(detail, ensure_ascii=False, default=str))))


def audit_values(
    *,
    action: str,
    actor_type: str = "user",
    actor_id: str | int | None = None,
    actor_name: str | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    address: str | None = None,
    court_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The columns of one audit event (what :func:`record_audit` stores; a job writing many
    at once inserts these in one statement)."""
    return {
        "at": utcnow(),
        "actor_type": actor_type,
        "actor_id": None if actor_id is None else str(actor_id),
        "actor_name": actor_name,
        "action": action,
        "target_type": target_type,
        "target_id": None if target_id is None else str(target_id),
        "address": address,
        "court_id": court_id,
        "detail": _masked(detail or {}),
    }


def record_audit(
    session: AsyncSession,
    *,
    action: str,
    actor_type: str = "user",
    actor_id: str | int | None = None,
    actor_name: str | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    address: str | None = None,
    court_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to the session's transaction (so it commits with the change)."""
    event = AuditEvent(
        **audit_values(
            action=action,
            actor_type=actor_type,
            actor_id=actor_id,
            actor_name=actor_name,
            target_type=target_type,
            target_id=target_id,
            address=address,
            court_id=court_id,
            detail=detail,
        )
    )
    session.add(event)
    return event
