"""Visits feed cases: a video visit is booked from a case (信访件) and is one of its contacts;
its booking, its cancellation and the outcomes its judge records are entries of the case's
timeline (全程留痕). Nothing here is ever updated or deleted: each fact is a new entry.

Booking (``scheduler/booking.py``) and cancelling (``scheduler/lifecycle.py``) call these
functions in their own transaction; who may record an outcome is the lifecycle's rule
(``Action.outcome``: the visit's judge).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Integer, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import prepared, table_of, utcnow
from config.errors import ConflictError
from config.settings import Settings
from config.vocabulary import label
from scheduler.cases.models import CaseEvent, Contact
from scheduler.cases.rules import NO_VISITS
from scheduler.cases.timeline import Entry, add_event, entry_values
from scheduler.cases.words import CHANNEL_BITS, Channel, EventKind, VisitOutcome
from scheduler.models import Court, Petition, User, Visit, VisitState
from scheduler.scope import Actor
from scheduler.visits import local_text

# A visit's outcome may be recorded while the call goes on and once it is over (the
# recording is archived a moment after the end: the judge may still be writing).
OUTCOME_STATES = frozenset({VisitState.in_progress, VisitState.ended, VisitState.archived})


def visit_link(visit_id: str) -> str:
    """Where the case's timeline links a visit: its recording in the archive."""
    return f"/archive/visits/{visit_id}"


def require_open_case(petition: Petition) -> None:
    """A closed case (已化解, 已终结) takes no new visit: 409 until it is reopened."""
    if petition.state in NO_VISITS:
        raise ConflictError(
            f"信访件 {petition.number} {label(petition.state)}，不能预约接访；"
            "如需继续办理，请先重新启动该信访件",
            code="case_closed",
            details={"petition_id": petition.id, "state": petition.state.value},
        )


class BookedRows(NamedTuple):
    """The rows a booked visit adds to its case: a contact, a timeline entry and the
    entry's audit event."""

    contact: dict[str, Any]
    event: dict[str, Any]
    audit: dict[str, Any]


_INSERT_CONTACT = prepared(insert(table_of(Contact)))
_INSERT_EVENT = prepared(insert(table_of(CaseEvent)))
_COUNT_CONTACT = prepared(
    update(table_of(Petition))
    .where(table_of(Petition).c.id == bindparam("case_id"))
    .values(
        contact_count=table_of(Petition).c.contact_count + 1,
        channels=table_of(Petition).c.channels.op("|")(bindparam("bit", type_=Integer)),
        updated_at=bindparam("now"),
    )
    .returning(table_of(Petition).c.contact_count, table_of(Petition).c.updated_at)
)


async def count_contact(db: AsyncSession, case_id: int, channel: Channel) -> tuple[int, datetime]:
    """One more contact on the case (its 来访次数), by ``channel`` (kept among the case's
    channels for the list's filter): every contact added, a visit's too. Returns the case's
    new count and time of change."""
    values = {"case_id": case_id, "bit": CHANNEL_BITS[channel], "now": utcnow()}
    count, at = (await db.execute(_COUNT_CONTACT, values)).one()
    return int(count), at


def visit_booked_rows(
    actor: Actor,
    settings: Settings,
    *,
    visit: Visit,
    petition: Petition,
    receiver: User,
    receiving: Court,
) -> BookedRows:
    """The visit is a contact of its case (channel 视频接访) and an entry of its timeline:
    their rows (:func:`visit_booked` writes them)."""
    assert visit.starts_at is not None
    contact = {
        "petition_id": petition.id,
        "court_id": receiving.id,
        "channel": Channel.video,
        "occurred_at": visit.starts_at,
        "summary": f"{label(visit.kind)}：{receiving.name}",
        "people_count": 1,
        "repeat": False,
        "visit_id": visit.id,
        "registered_by": actor.user_id,
        "created_at": utcnow(),
    }
    when = local_text(visit.starts_at, settings)
    event, audit = entry_values(
        actor,
        Entry(
            petition.id,
            EventKind.visit,
            f"{'现场安排' if visit.walk_in else '预约'}{label(visit.kind)}：{when}，"
            f"{receiving.name}{label(receiver.role)}{receiver.display_name}",
            visit.court_id,
            {
                "visit_id": visit.id,
                "kind": visit.kind.value,
                "starts_at": visit.starts_at.isoformat(),
                "judge_id": receiver.id,
                "receiving_court_id": receiving.id,
                "link": visit_link(visit.id),
            },
        ),
    )
    return BookedRows(contact, event, audit)


async def visit_booked(db: AsyncSession, rows: BookedRows) -> None:
    """Write a booked visit's contact and timeline entry (its audit event is the caller's
    to insert, with its own): statements, no unit of work."""
    await db.execute(_INSERT_CONTACT, rows.contact)
    await count_contact(db, rows.contact["petition_id"], rows.contact["channel"])
    await db.execute(_INSERT_EVENT, rows.event)


async def visit_cancelled(
    db: AsyncSession, actor: Actor, settings: Settings, visit: Visit, reason: str
) -> None:
    """A cancelled visit stays on its case's timeline; the cancellation is a new entry."""
    when = local_text(visit.starts_at, settings) if visit.starts_at else ""
    add_event(
        db,
        visit.petition_id,
        EventKind.visit,
        actor,
        f"取消{label(visit.kind)}：原定 {when}；原因：{reason}",
        court_id=visit.court_id,
        detail={
            "visit_id": visit.id,
            "kind": visit.kind.value,
            "cancelled": True,
            "reason": reason,
            "link": visit_link(visit.id),
        },
    )


def record_outcome(
    db: AsyncSession, actor: Actor, visit: Visit, outcome: VisitOutcome, text: str
) -> CaseEvent:
    """The judge's outcome of ``visit`` as a new entry of its case's timeline (who may, the
    caller checked with the lifecycle); 409 before the call has started. Several outcomes
    may be recorded: each is its own entry, none replaces another."""
    if visit.state not in OUTCOME_STATES:
        raise ConflictError(
            f"接访{label(visit.state)}，只能在接访进行中或结束后记录接访结果",
            code="invalid_state",
            details={"state": visit.state.value},
        )
    sentence = f"接访结果：{label(outcome)}" + (f"。{text}" if text else "")
    return add_event(
        db,
        visit.petition_id,
        EventKind.outcome,
        actor,
        sentence,
        detail={
            "visit_id": visit.id,
            "outcome": outcome.value,
            "text": text,
            "link": visit_link(visit.id),
        },
    )


async def visit_outcomes(db: AsyncSession, visit: Visit) -> Sequence[CaseEvent]:
    """The outcomes recorded for ``visit``, oldest first."""
    rows = await db.scalars(
        select(CaseEvent)
        .where(CaseEvent.petition_id == visit.petition_id, CaseEvent.kind == EventKind.outcome)
        .order_by(CaseEvent.id)
    )
    return [e for e in rows if e.detail.get("visit_id") == visit.id]
