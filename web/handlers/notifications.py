"""Notification list and iCalendar feeds (the feed itself is public behind its secret URL)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import func, select, update

from config.db import utcnow
from config.errors import NotFoundError
from scheduler import ical
from scheduler.models import Notification
from web.auth import request_scheme
from web.keys import DB
from web.routes import ALL_STAFF, Context, api
from web.scheduling_schemas import (
    FeedIn,
    FeedOut,
    NotificationList,
    NotificationOut,
    NotificationQuery,
)
from web.schemas import Ok


@api.route(
    "GET",
    "/notifications",
    summary="My notifications, newest first",
    tag="notifications",
    roles=ALL_STAFF,
    query=NotificationQuery,
    answer=NotificationList,
)
async def list_notifications(ctx: Context) -> NotificationList:
    q: NotificationQuery = ctx.query
    stmt = select(Notification).where(Notification.user_id == ctx.me.user_id)
    if q.unread:
        stmt = stmt.where(Notification.read_at.is_(None))
    rows = await ctx.db.scalars(stmt.order_by(Notification.id.desc()).limit(q.limit))
    unread = await ctx.db.scalar(
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == ctx.me.user_id, Notification.read_at.is_(None))
    )
    return NotificationList(items=[NotificationOut.of(n) for n in rows], unread=int(unread or 0))


@api.route(
    "POST",
    r"/notifications/{notification_id:\d+}/read",
    summary="Mark one as read",
    tag="notifications",
    roles=ALL_STAFF,
    answer=Ok,
)
async def mark_read(ctx: Context) -> Ok:
    row = await ctx.db.get(Notification, ctx.path_id("notification_id"))
    if row is None or row.user_id != ctx.me.user_id:
        raise NotFoundError("通知不存在")
    row.read_at = row.read_at or utcnow()
    return Ok()


@api.route(
    "POST",
    "/notifications/read-all",
    summary="Mark all as read",
    tag="notifications",
    roles=ALL_STAFF,
    answer=Ok,
)
async def mark_all_read(ctx: Context) -> Ok:
    await ctx.db.execute(
        update(Notification)
        .where(Notification.user_id == ctx.me.user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    return Ok()


def _feed_url(ctx: Context, token: str) -> str:
    scheme = request_scheme(ctx.request, ctx.settings)
    return f"{scheme}://{ctx.request.host}/calendar/{token}.ics"


@api.route(
    "POST",
    "/calendar-feeds",
    summary="Create a secret iCalendar feed URL",
    tag="calendar",
    roles=ALL_STAFF,
    body=FeedIn,
    answer=FeedOut,
    status=201,
    errors=(404,),
)
async def create_feed(ctx: Context) -> FeedOut:
    """For a judge's own visits, or an operator's room. The URL is shown once."""
    b: FeedIn = ctx.body
    token, feed = await ical.create_feed(ctx.db, ctx.me.actor(), kind=b.kind, owner_id=b.owner_id)
    return FeedOut.of(feed, url=_feed_url(ctx, token))


@api.route(
    "GET",
    "/calendar-feeds",
    summary="My active feeds",
    tag="calendar",
    roles=ALL_STAFF,
    answer=list[FeedOut],
)
async def list_feeds(ctx: Context) -> list[FeedOut]:
    return [FeedOut.of(f) for f in await ical.list_feeds(ctx.db, ctx.me.actor())]


@api.route(
    "DELETE",
    r"/calendar-feeds/{feed_id:\d+}",
    summary="Revoke a feed URL",
    tag="calendar",
    roles=ALL_STAFF,
    answer=Ok,
)
async def revoke_feed(ctx: Context) -> Ok:
    await ical.revoke_feed(ctx.db, ctx.me.actor(), ctx.path_id("feed_id"))
    return Ok()


async def calendar_feed(request: web.Request) -> web.Response:
    """GET /calendar/{token}.ics: public, the secret token is the credential."""
    async with request.app[DB].reader() as db:
        body = await ical.feed_calendar(db, request.match_info["token"])
    return web.Response(
        body=body,
        content_type="text/calendar",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get(r"/calendar/{token:[A-Za-z0-9_-]{16,64}}.ics", calendar_feed)
