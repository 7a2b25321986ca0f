"""In-app notifications: stored rows plus an outbox pushed over socket.io after commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import prepared, table_of, utcnow
from scheduler.models import Notification, Role, User, Visit

OUTBOX = "notification_outbox"


class Notifier(Protocol):
    """Pushes a committed notification to its user's open pages."""

    async def push(self, user_id: int, payload: dict[str, Any]) -> None: ...


def payload(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id,
        "kind": n.kind,
        "visit_id": n.visit_id,
        "title": n.title,
        "body": n.body,
        "created_at": n.created_at.isoformat(),
        "read": n.read_at is not None,
    }


async def visit_recipients(db: AsyncSession, visit: Visit, exclude: int | None) -> set[int]:
    """The visit's judge and the active operators of the booking court."""
    ids = set(
        (
            await db.scalars(
                select(User.id).where(
                    User.court_id == visit.court_id, User.role == Role.operator, User.active
                )
            )
        ).all()
    )
    if visit.judge_id is not None:
        ids.add(visit.judge_id)
    if exclude is not None:
        ids.discard(exclude)
    return ids


async def notify(
    db: AsyncSession,
    user_ids: Iterable[int | None],
    *,
    kind: str,
    title: str,
    body: str = "",
    visit_id: str | None = None,
) -> list[Notification]:
    """Store one notification per user and queue it for pushing after commit (a job
    notifying thousands at once: :func:`notify_many`)."""
    rows = [
        Notification(user_id=uid, kind=kind, title=title, body=body, visit_id=visit_id)
        for uid in _recipients(user_ids)
    ]
    if not rows:
        return rows
    db.add_all(rows)
    await db.flush()
    db.info.setdefault(OUTBOX, []).extend(rows)
    return rows


_INSERT_NOTIFICATIONS = prepared(
    insert(table_of(Notification)).returning(
        Notification.__table__.c.id, sort_by_parameter_order=True
    )
)


async def notify_now(
    db: AsyncSession,
    user_ids: Iterable[int | None],
    *,
    kind: str,
    title: str,
    body: str = "",
    visit_id: str | None = None,
) -> list[Notification]:
    """:func:`notify` in one INSERT statement, without flushing the session: for a caller
    that writes its other rows as statements too (booking)."""
    now = utcnow()
    values = [
        {
            "user_id": uid,
            "kind": kind,
            "title": title,
            "body": body,
            "visit_id": visit_id,
            "created_at": now,
            "read_at": None,
        }
        for uid in _recipients(user_ids)
    ]
    if not values:
        return []
    ids = (await db.execute(_INSERT_NOTIFICATIONS, values)).scalars().all()
    rows = [Notification(id=nid, **row) for nid, row in zip(ids, values, strict=True)]
    db.info.setdefault(OUTBOX, []).extend(rows)
    return rows


def _recipients(user_ids: Iterable[int | None]) -> list[int]:
    return sorted({u for u in user_ids if u is not None})


@dataclass(frozen=True)
class Notice:
    """One notice to several users (:func:`notify_many`)."""

    user_ids: Sequence[int | None]
    kind: str
    title: str
    body: str = ""


async def notify_many(db: AsyncSession, notices: Iterable[Notice]) -> list[Notification]:
    """:func:`notify` for many notices at once: the rows are inserted in a few statements
    (a job notifying thousands), and pushed after commit as any other."""
    values = [
        {"user_id": uid, "kind": n.kind, "title": n.title, "body": n.body, "visit_id": None}
        for n in notices
        for uid in _recipients(n.user_ids)
    ]
    if not values:
        return []
    rows = list((await db.scalars(insert(Notification).returning(Notification), values)).all())
    db.info.setdefault(OUTBOX, []).extend(rows)
    return rows


def take_outbox(db: AsyncSession) -> list[Notification]:
    """The notifications this session stored (call after commit, then push them)."""
    rows: list[Notification] = db.info.pop(OUTBOX, [])
    return rows


async def push_all(notifier: Notifier | None, rows: Iterable[Notification]) -> None:
    if notifier is None:
        return
    for row in rows:
        await notifier.push(row.user_id, payload(row))
