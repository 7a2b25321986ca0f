"""Periodic work, safe to run on every node at once (each change is conditional): no-shows,
"starts in N minutes" reminders, seating queued walk-ins, on-site receptions' room holds,
petition case deadlines."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import utcnow
from config.errors import ConflictError, InvalidError
from config.settings import Settings
from scheduler.booking import book_visit
from scheduler.cases.service import scan_deadlines
from scheduler.cases.words import VisitKind
from scheduler.lifecycle import transition
from scheduler.models import Petition, Role, Visit, VisitState, WalkIn, WalkInStatus
from scheduler.notify import OUTBOX, notify, visit_recipients
from scheduler.onsite import extend_ongoing
from scheduler.portal.feedback import mark_overdue as overdue_questions
from scheduler.scope import SYSTEM_ACTOR, Actor
from scheduler.visits import local_text
from scheduler.walkins import expire_walk_ins, next_unit


async def housekeeping(
    db: AsyncSession, settings: Settings, now: datetime | None = None
) -> dict[str, int]:
    """Periodic work, safe to run on every node at once (each change is conditional):
    mark no-shows, send "starts in N minutes" reminders, seat queued walk-ins, remind of
    petition case deadlines and alert the supervising court of overdue cases.

    Notifications are queued on ``db`` (push them after commit: scheduler.notify)."""
    now = now or utcnow()
    done = {"no_show": 0, "reminded": 0, "walk_ins": 0, "questions_overdue": 0}
    done["questions_overdue"] = await overdue_questions(db, now)
    grace = timedelta(minutes=settings.no_show_grace_minutes)
    late = (
        await db.scalars(
            select(Visit)
            .where(
                # a checked-in petitioner is in the building: only unseen ones are no-shows;
                # a meeting its host never opened, once its time is over (a host late by
                # a quarter of an hour still holds it)
                Visit.state == VisitState.scheduled,
                or_(
                    and_(Visit.kind != VisitKind.meeting, Visit.starts_at <= now - grace),
                    and_(Visit.kind == VisitKind.meeting, Visit.ends_at <= now),
                ),
            )
            .limit(200)
        )
    ).all()
    for visit in late:
        try:
            async with db.begin_nested():
                await transition(
                    db,
                    SYSTEM_ACTOR,
                    visit,
                    VisitState.no_show,
                    grace_minutes=settings.no_show_grace_minutes,
                )
            done["no_show"] += 1
        except ConflictError:
            continue
    soon = now + timedelta(minutes=settings.reminder_minutes)
    upcoming = (
        await db.scalars(
            select(Visit)
            .where(
                Visit.state.in_([VisitState.scheduled, VisitState.checked_in]),
                Visit.starts_at > now,
                Visit.starts_at <= soon,
                Visit.reminded_at.is_(None),
            )
            .limit(200)
        )
    ).all()
    for visit in upcoming:
        result = await db.execute(
            update(Visit)
            .where(Visit.id == visit.id, Visit.reminded_at.is_(None))
            .values(reminded_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 1) != 1:
            continue
        petition = await db.get(Petition, visit.petition_id)
        minutes = (
            max(1, round((visit.starts_at - now).total_seconds() / 60)) if visit.starts_at else 0
        )
        await notify(
            db,
            await visit_recipients(db, visit, None),
            kind="visit_starting",
            title=f"{minutes} 分钟后开始接访：{petition.number if petition else ''}",
            body=local_text(visit.starts_at, settings) if visit.starts_at else "",
            visit_id=visit.id,
        )
        done["reminded"] += 1
    done["walk_ins_expired"] = await expire_walk_ins(db, settings, now)
    queue = (
        await db.scalars(
            select(WalkIn)
            .where(WalkIn.status == WalkInStatus.waiting)
            .order_by(WalkIn.id)
            .limit(50)
        )
    ).all()
    for entry in queue:
        outbox_before = len(db.info.get(OUTBOX, []))
        actor = Actor(
            user_id=entry.created_by, username="system", role=Role.admin, court_id=entry.court_id
        )
        try:
            async with db.begin_nested():
                visit = await book_visit(
                    db,
                    actor,
                    settings,
                    petition_id=entry.petition_id,
                    receiving_court_id=entry.receiving_court_id,
                    judge_id=None,
                    room_id=entry.room_id,
                    starts_at=next_unit(now),
                    now=now,
                    state=VisitState.checked_in,
                    walk_in=True,
                    checkin=(entry.document_type, entry.document_masked),
                )
                claimed = await db.execute(
                    update(WalkIn)
                    .where(WalkIn.id == entry.id, WalkIn.status == WalkInStatus.waiting)
                    .values(status=WalkInStatus.assigned, visit_id=visit.id)
                    .execution_options(synchronize_session=False)
                )
                if getattr(claimed, "rowcount", 1) != 1:
                    raise ConflictError("claimed elsewhere", code="claimed")
            done["walk_ins"] += 1
        except (ConflictError, InvalidError):
            del db.info.get(OUTBOX, [])[outbox_before:]  # rolled back with the savepoint
            continue
    done["onsite_extended"] = await extend_ongoing(db, now)
    scan = await scan_deadlines(db, settings, now)
    done["case_reminded"] = scan.reminded
    done["case_overdue"] = scan.overdue
    done["case_escalated"] = scan.escalated
    return done
