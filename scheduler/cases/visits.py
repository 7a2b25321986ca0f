"""Visits feed cases: a video visit is booked from a case (信访件); its booking, its
cancellation and the outcomes its judge records are entries of the case's timeline (全程留痕).
Nothing here is ever updated or deleted: each fact is a new entry.

A booked visit is one of its case's contacts (channel 视频接访 ``video``, at its receiving
court) once it takes place — when it reaches ``in_progress`` (the judge admitted the
petitioner), as an on-site reception is one when it begins (``scheduler/onsite.py``) — and
dated when it began. A visit cancelled, missed (no-show) or ended before anyone was admitted
never reached the court by video and is no contact; a visit moved to another day is counted
on the day it takes place; one still to come counts in no month yet. The statistics read
contacts (``docs/statistics.md``), so 信访量 and 视频信访占比 count the visits held.

A meeting (视频约谈) is no contact (it has no petitioner); its cancellation is an entry of
each case it concerned (:func:`visit_cancelled`).

Booking (``scheduler/booking.py``) and the lifecycle (``scheduler/lifecycle.py``: the start of
the call, a cancellation) call these functions in their own transaction; who may record an
outcome is the lifecycle's rule (``Action.outcome``: the visit's judge).
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
from scheduler.cases.minutes import meeting_case_ids
from scheduler.cases.models import CaseEvent, Contact
from scheduler.cases.rules import NO_VISITS
from scheduler.cases.timeline import Entry, add_event, entry_values
from scheduler.cases.words import CHANNEL_BITS, Channel, EventKind, VisitKind, VisitOutcome
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
    """The rows a booked visit adds to its case: a timeline entry and the entry's audit
    event (its contact is added when it takes place: :func:`visit_held`)."""

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
    """The booked visit is an entry of its case's timeline: its rows (:func:`visit_booked`
    writes them). It is no contact yet: it becomes one if it takes place
    (:func:`visit_held`)."""
    assert visit.starts_at is not None
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
    return BookedRows(event, audit)


async def visit_booked(db: AsyncSession, rows: BookedRows) -> None:
    """Write a booked visit's timeline entry (its audit event is the caller's to insert,
    with its own): a statement, no unit of work."""
    await db.execute(_INSERT_EVENT, rows.event)


_CONTACT_OF_VISIT = prepared(
    select(table_of(Contact).c.id)
    .where(table_of(Contact).c.visit_id == bindparam("visit_id"))
    .limit(1)
)


async def visit_held(db: AsyncSession, visit: Visit, now: datetime | None = None) -> bool:
    """The booked ``visit`` takes place (it reached ``in_progress``): it is now one of its
    case's contacts, channel 视频接访, at its receiving court, dated when it began, counted
    in the case's 来访次数. The lifecycle calls this once, in the transaction that starts the
    call. False when the visit already has its contact (one booked before contacts waited
    for the call, or a second call): a visit is one contact, never two."""
    if (await db.execute(_CONTACT_OF_VISIT, {"visit_id": visit.id})).first() is not None:
        return False
    receiving = await db.get(Court, visit.receiving_court_id)
    now = now or utcnow()
    contact = {
        "petition_id": visit.petition_id,
        "court_id": visit.receiving_court_id,
        "channel": Channel.video,
        "occurred_at": now,
        "summary": f"{label(visit.kind)}：{receiving.name if receiving else ''}",
        "people_count": 1,
        "repeat": False,
        "visit_id": visit.id,
        # registered when it was booked, by whoever booked it
        "registered_by": visit.booked_by,
        "created_at": now,
    }
    await db.execute(_INSERT_CONTACT, contact)
    await count_contact(db, visit.petition_id, Channel.video)
    return True


async def visit_cancelled(
    db: AsyncSession, actor: Actor, settings: Settings, visit: Visit, reason: str
) -> None:
    """A cancelled visit stays on its case's timeline; the cancellation is a new entry (it
    was never held, so it is no contact). A cancelled meeting's entry goes to every case it
    concerned, as its scheduling did, without a recording link (none was made)."""
    when = local_text(visit.starts_at, settings) if visit.starts_at else ""
    text = f"取消{label(visit.kind)}：原定 {when}；原因：{reason}"
    if visit.kind is VisitKind.meeting:
        cases = await meeting_case_ids(db, visit.id)
        for petition_id in cases or [visit.petition_id]:
            add_event(
                db,
                petition_id,
                EventKind.meeting,
                actor,
                text,
                court_id=visit.court_id,
                # ``meeting_id`` as its scheduling entry has it: ``visit_id`` is read as a
                # recording to link, and a cancelled meeting has none
                detail={"meeting_id": visit.id, "cancelled": True, "reason": reason},
            )
        return
    add_event(
        db,
        visit.petition_id,
        EventKind.visit,
        actor,
        text,
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
    db: AsyncSession,
    actor: Actor,
    visit: Visit,
    outcome: VisitOutcome,
    text: str,
    petition_ids: Sequence[int] = (),
) -> CaseEvent:
    """The judge's outcome of ``visit`` as a new entry of its case's timeline (who may, the
    caller checked with the lifecycle); 409 before the call has started. Several outcomes
    may be recorded: each is its own entry, none replaces another. A meeting's (约谈结果)
    goes on each of its cases (``petition_ids``), marked ``meeting`` (the petitioners'
    portal does not show the courts' internal supervision); the first entry is returned."""
    if visit.state not in OUTCOME_STATES:
        raise ConflictError(
            f"接访{label(visit.state)}，只能在接访进行中或结束后记录接访结果",
            code="invalid_state",
            details={"state": visit.state.value},
        )
    meeting = visit.kind is VisitKind.meeting
    sentence = f"{'约谈' if meeting else '接访'}结果：{label(outcome)}" + (
        f"。{text}" if text else ""
    )
    detail = {
        "visit_id": visit.id,
        "outcome": outcome.value,
        "text": text,
        "link": visit_link(visit.id),
    } | ({"meeting": True} if meeting else {})
    cases = list(dict.fromkeys([visit.petition_id, *petition_ids]))
    entries = [
        add_event(db, case_id, EventKind.outcome, actor, sentence, detail=dict(detail))
        for case_id in cases
    ]
    return entries[0]


async def visit_outcomes(db: AsyncSession, visit: Visit) -> Sequence[CaseEvent]:
    """The outcomes recorded for ``visit``, oldest first."""
    rows = await db.scalars(
        select(CaseEvent)
        .where(CaseEvent.petition_id == visit.petition_id, CaseEvent.kind == EventKind.outcome)
        .order_by(CaseEvent.id)
    )
    return [e for e in rows if e.detail.get("visit_id") == visit.id]
