"""Walk-ins: a petitioner who comes without a booking is seen now by a free judge on duty,
or waits in the queue that housekeeping seats as judges come free."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import record_audit
from config.db import utcnow
from config.errors import ConflictError, InvalidError, NotFoundError
from config.privacy import mask_id_number
from config.settings import Settings
from scheduler.booking import book_visit, hosting_court, open_case
from scheduler.models import Role, Visit, VisitState, WalkIn, WalkInStatus
from scheduler.scope import Actor, court_scope


@dataclass(frozen=True)
class WalkInResult:
    """Either a visit started now, or a place in the queue."""

    visit: Visit | None
    queued: WalkIn | None
    position: int = 0


def next_unit(now: datetime) -> datetime:
    base = now.replace(second=0, microsecond=0)
    return base + timedelta(minutes=(-base.minute) % 5)


async def walk_in(
    db: AsyncSession,
    actor: Actor,
    settings: Settings,
    *,
    petition_id: int,
    receiving_court_id: int,
    room_id: int,
    document_type: str,
    document_number: str,
    now: datetime | None = None,
) -> WalkInResult:
    """Start a visit now with a free judge on duty, or queue for the next free one."""
    now = now or utcnow()
    petition = await open_case(db, actor, petition_id)
    host = hosting_court(actor, petition)
    assert host is not None  # open_case refused otherwise
    masked = mask_id_number(document_number.strip().upper())
    start = next_unit(now)
    try:
        async with db.begin_nested():
            visit = await book_visit(
                db,
                actor,
                settings,
                petition_id=petition.id,
                receiving_court_id=receiving_court_id,
                judge_id=None,
                room_id=room_id,
                starts_at=start,
                now=now,
                state=VisitState.checked_in,
                walk_in=True,
                checkin=(document_type, masked),
            )
        return WalkInResult(visit=visit, queued=None)
    except (ConflictError, InvalidError) as exc:
        if exc.code not in ("double_booking", "outside_reception_hours"):
            raise
    waiting = await db.scalar(
        select(WalkIn.id).where(
            WalkIn.petition_id == petition.id, WalkIn.status == WalkInStatus.waiting
        )
    )
    if waiting:
        raise ConflictError("该信访事项已在候补队列中", code="already_queued")
    entry = WalkIn(
        petition_id=petition.id,
        court_id=host,
        receiving_court_id=receiving_court_id,
        room_id=room_id,
        document_type=document_type,
        document_masked=masked,
        created_by=actor.user_id,
        created_at=now,
    )
    db.add(entry)
    await db.flush()
    position = await db.scalar(
        select(func.count())
        .select_from(WalkIn)
        .where(
            WalkIn.receiving_court_id == receiving_court_id,
            WalkIn.status == WalkInStatus.waiting,
            WalkIn.id <= entry.id,
        )
    )
    record_audit(
        db,
        action="visit.walk_in_queued",
        actor_id=actor.user_id,
        actor_name=actor.username,
        target_type="walk_in",
        target_id=entry.id,
        address=actor.address,
        court_id=host,
        detail={"petition": petition.number},
    )
    return WalkInResult(visit=None, queued=entry, position=int(position or 1))


async def waiting_walk_ins(db: AsyncSession, actor: Actor) -> Sequence[WalkIn]:
    stmt = select(WalkIn).where(WalkIn.status == WalkInStatus.waiting).order_by(WalkIn.id)
    if actor.role is Role.judge:
        stmt = stmt.where(WalkIn.receiving_court_id == actor.court_id)
    elif not actor.is_admin:
        scope = await court_scope(db, actor)
        stmt = stmt.where(WalkIn.court_id.in_(scope or set()))
    return (await db.scalars(stmt)).all()


async def withdraw_walk_in(db: AsyncSession, actor: Actor, walk_in_id: int) -> WalkIn:
    entry = await db.get(WalkIn, walk_in_id)
    if entry is None or not (actor.is_admin or actor.court_id == entry.court_id):
        raise NotFoundError("候补记录不存在")
    if entry.status is not WalkInStatus.waiting:
        raise ConflictError("该候补已处理", code="invalid_state")
    entry.status = WalkInStatus.withdrawn
    record_audit(
        db,
        action="visit.walk_in_withdrawn",
        actor_id=actor.user_id,
        actor_name=actor.username,
        target_type="walk_in",
        target_id=entry.id,
        address=actor.address,
        court_id=entry.court_id,
    )
    return entry


async def expire_walk_ins(db: AsyncSession, settings: Settings, now: datetime) -> int:
    """Walk-ins still waiting from an earlier day (the court's local day) are withdrawn: the
    petitioner went home, and is not seated the next morning on yesterday's identity check
    as if checked in."""
    today = now.astimezone(settings.tz).replace(hour=0, minute=0, second=0, microsecond=0)
    # one conditional UPDATE: a walk-in seated, withdrawn or expired by another node (or
    # request) meanwhile is not changed again, so each is expired and audited once
    expired = await db.execute(
        update(WalkIn)
        .where(WalkIn.status == WalkInStatus.waiting, WalkIn.created_at < today)
        .values(status=WalkInStatus.withdrawn)
        .returning(WalkIn.id, WalkIn.court_id)
        .execution_options(synchronize_session=False)
    )
    stale = sorted(expired.all(), key=lambda row: row.id)
    for entry in stale:
        record_audit(
            db,
            action="visit.walk_in_expired",
            actor_type="system",
            target_type="walk_in",
            target_id=entry.id,
            court_id=entry.court_id,
        )
    return len(stale)
