"""iCalendar feeds of visits for one judge or one room, behind revocable secret URLs."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from icalendar import Calendar, Event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import record_audit
from config.db import utcnow
from config.errors import InvalidError, NotFoundError, PermissionDeniedError
from config.vocabulary import label
from scheduler.lifecycle import OPEN
from scheduler.models import (
    CalendarFeed,
    Petition,
    ReceptionRoom,
    Role,
    User,
    Visit,
    VisitState,
)
from scheduler.scope import Actor

FEED_KINDS = ("judge", "room")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _check_owner(db: AsyncSession, actor: Actor, kind: str, owner_id: int) -> str:
    """The display name of the feed's owner, if ``actor`` may manage its feed."""
    if kind == "judge":
        judge = await db.get(User, owner_id)
        if judge is None or judge.role is not Role.judge:
            raise NotFoundError(f"法官 {owner_id} 不存在")
        if not (actor.is_admin or actor.user_id == judge.id):
            raise PermissionDeniedError("只能管理本人的日历订阅")
        return judge.display_name
    if kind == "room":
        room = await db.get(ReceptionRoom, owner_id)
        if room is None:
            raise NotFoundError(f"接访室 {owner_id} 不存在")
        if not (
            actor.is_admin or (actor.role is Role.operator and actor.court_id == room.court_id)
        ):
            raise PermissionDeniedError("只能管理本院接访室的日历订阅")
        return room.name
    raise InvalidError("订阅类型须为法官（judge）或接访室（room）", code="invalid_kind")


async def create_feed(
    db: AsyncSession, actor: Actor, *, kind: str, owner_id: int
) -> tuple[str, CalendarFeed]:
    """A new feed; the token is returned once and only its hash is stored."""
    await _check_owner(db, actor, kind, owner_id)
    token = secrets.token_urlsafe(24)
    feed = CalendarFeed(
        owner_kind=kind, owner_id=owner_id, token_hash=token_hash(token), created_by=actor.user_id
    )
    db.add(feed)
    await db.flush()
    record_audit(
        db,
        action="calendar.feed_create",
        actor_id=actor.user_id,
        actor_name=actor.username,
        target_type="calendar_feed",
        target_id=feed.id,
        address=actor.address,
        court_id=actor.court_id,
        detail={"kind": kind, "owner_id": owner_id},
    )
    return token, feed


async def list_feeds(db: AsyncSession, actor: Actor) -> Sequence[CalendarFeed]:
    stmt = select(CalendarFeed).where(CalendarFeed.revoked_at.is_(None))
    if not actor.is_admin:
        stmt = stmt.where(CalendarFeed.created_by == actor.user_id)
    return (await db.scalars(stmt.order_by(CalendarFeed.id))).all()


async def revoke_feed(db: AsyncSession, actor: Actor, feed_id: int) -> CalendarFeed:
    feed = await db.get(CalendarFeed, feed_id)
    if feed is None or feed.revoked_at is not None:
        raise NotFoundError("订阅不存在")
    await _check_owner(db, actor, feed.owner_kind, feed.owner_id)
    feed.revoked_at = utcnow()
    record_audit(
        db,
        action="calendar.feed_revoke",
        actor_id=actor.user_id,
        actor_name=actor.username,
        target_type="calendar_feed",
        target_id=feed.id,
        address=actor.address,
        court_id=actor.court_id,
    )
    return feed


async def _still_entitled(db: AsyncSession, feed: CalendarFeed) -> bool:
    """A feed lives only while its creator could still create it: active, same role and
    court (a deactivated or transferred user's old URLs stop working)."""
    creator = await db.get(User, feed.created_by) if feed.created_by else None
    if creator is None or not creator.active:
        return False
    if creator.role is Role.admin:
        return True
    if feed.owner_kind == "judge":
        judge = await db.get(User, feed.owner_id)
        return judge is not None and judge.active and creator.id == judge.id
    room = await db.get(ReceptionRoom, feed.owner_id)
    return room is not None and creator.role is Role.operator and creator.court_id == room.court_id


async def feed_calendar(db: AsyncSession, token: str, now: datetime | None = None) -> bytes:
    """The iCalendar text behind a feed token; unknown or revoked tokens are 404."""
    now = now or utcnow()
    feed = await db.scalar(select(CalendarFeed).where(CalendarFeed.token_hash == token_hash(token)))
    if feed is None or feed.revoked_at is not None or not await _still_entitled(db, feed):
        raise NotFoundError("订阅不存在或已撤销")
    column = Visit.judge_id if feed.owner_kind == "judge" else Visit.room_id
    rows = (
        await db.execute(
            select(Visit, Petition.number, ReceptionRoom.name)
            .join(Petition, Petition.id == Visit.petition_id)
            .join(ReceptionRoom, ReceptionRoom.id == Visit.room_id)
            .where(
                column == feed.owner_id,
                Visit.starts_at >= now - timedelta(days=30),
                Visit.state.in_([*OPEN, VisitState.ended, VisitState.cancelled]),
            )
            .order_by(Visit.starts_at)
            .limit(2000)
        )
    ).all()
    cal = Calendar()
    cal.add("prodid", "-//vreception//远程视频接访//ZH")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", "远程视频接访")
    cal.add("x-wr-timezone", "Asia/Shanghai")
    for visit, number, room in rows:
        event = Event()
        event.add("uid", f"{visit.id}@vreception")
        event.add("dtstamp", visit.updated_at)
        event.add("dtstart", visit.starts_at)
        event.add("dtend", visit.ends_at)
        event.add("summary", f"视频接访 {number}")
        event.add("location", room)
        event.add("description", f"状态：{label(visit.state)}")
        event.add("status", "CANCELLED" if visit.state is VisitState.cancelled else "CONFIRMED")
        cal.add_component(event)
    return bytes(cal.to_ical())
