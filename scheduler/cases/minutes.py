"""A video supervision meeting's minutes (约谈纪要): when the meeting ends, the notes its host
took go to the timeline of every case it concerned, with a link to its recording.

Called by the visit lifecycle (``scheduler/lifecycle.py``, ``end_visit``) in the transaction
that ends the meeting, wherever it is ended (the call, the lists, housekeeping).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import Settings
from scheduler.cases.models import MeetingCase, MeetingInvitee
from scheduler.cases.timeline import add_event
from scheduler.cases.words import EventKind
from scheduler.models import Court, User, Visit, VisitEvent, VisitEventKind
from scheduler.scope import Actor
from scheduler.visits import local_text


def recording_link(visit_id: str) -> str:
    """Where a meeting's (or visit's) recording is played back."""
    return f"/archive/visits/{visit_id}"


async def record_minutes(db: AsyncSession, actor: Actor, settings: Settings, visit: Visit) -> None:
    """One timeline entry (EventKind.meeting) on each case of the meeting ``visit``: who took
    part, the notes in order with their local times, and the recording's link."""
    notes = (
        await db.scalars(
            select(VisitEvent)
            .where(VisitEvent.visit_id == visit.id, VisitEvent.kind == VisitEventKind.room)
            .order_by(VisitEvent.id)
        )
    ).all()
    lines = [
        {
            "at": n.at.isoformat(),
            "author": n.actor_name,
            "text": str(n.detail.get("text", "")),
        }
        for n in notes
        if n.detail.get("event") == "note"
    ]
    host = await db.get(User, visit.judge_id) if visit.judge_id is not None else None
    invited = (
        await db.execute(
            select(User.display_name, Court.name)
            .join(MeetingInvitee, MeetingInvitee.user_id == User.id)
            .join(Court, Court.id == User.court_id)
            .where(MeetingInvitee.visit_id == visit.id)
            .order_by(Court.name, User.display_name)
        )
    ).all()
    link = recording_link(visit.id)
    when = local_text(visit.starts_at, settings) if visit.starts_at else ""
    body = "\n".join(
        f"[{local_text(n.at, settings)[11:]}] {n.detail.get('text', '')}"
        for n in notes
        if n.detail.get("event") == "note"
    )
    text = (
        f"视频约谈纪要（{when}，主持人：{host.display_name if host else ''}；"
        f"参会：{'、'.join(f'{name}（{court}）' for name, court in invited)}）\n"
        f"{body or '（本次约谈未记录笔记）'}\n录像：{link}"
    )
    for petition_id in await meeting_case_ids(db, visit.id):
        add_event(
            db,
            petition_id,
            EventKind.meeting,
            actor,
            text,
            court_id=visit.court_id,
            detail={"visit_id": visit.id, "recording": link, "notes": lines},
        )


async def meeting_case_ids(db: AsyncSession, visit_id: str) -> list[int]:
    """The cases a meeting is about (its entries go on each of them), in order."""
    return list(
        (
            await db.scalars(
                select(MeetingCase.petition_id)
                .where(MeetingCase.visit_id == visit_id)
                .order_by(MeetingCase.petition_id)
            )
        ).all()
    )
