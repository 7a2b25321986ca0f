"""Staff accounts (admin only)."""

from __future__ import annotations

from scheduler import service
from scheduler.models import Role
from web.auth import close_user_sessions
from web.keys import STAFF_SOCKETS
from web.routes import Context, api
from web.schemas import Page, UserIn, UserOut, UserPatch, UserQuery, page_of


@api.route(
    "GET",
    "/users",
    summary="List staff accounts",
    tag="users",
    roles={Role.admin},
    query=UserQuery,
    answer=Page[UserOut],
)
async def list_users(ctx: Context) -> Page[UserOut]:
    q: UserQuery = ctx.query
    page = await service.list_users(ctx.db, court_id=q.court_id, limit=q.limit, offset=q.offset)
    return page_of(Page[UserOut], page.items, page.total, q, UserOut.of)


@api.route(
    "POST",
    "/users",
    summary="Create a staff account",
    tag="users",
    roles={Role.admin},
    body=UserIn,
    answer=UserOut,
    status=201,
    errors=(409,),
)
async def create_user(ctx: Context) -> UserOut:
    """Operators belong to a basic court, judges to a court above it; admins may have none."""
    body: UserIn = ctx.body
    user = await service.create_user(
        ctx.db,
        ctx.me.actor(),
        username=body.username,
        display_name=body.display_name,
        role=body.role,
        court_id=body.court_id,
        password=body.password,
        password_min_length=ctx.settings.password_min_length,
    )
    return UserOut.of(user)


@api.route(
    "GET",
    r"/users/{user_id:\d+}",
    summary="One staff account",
    tag="users",
    roles={Role.admin},
    answer=UserOut,
)
async def get_user(ctx: Context) -> UserOut:
    return UserOut.of(await service.get_user(ctx.db, ctx.path_id("user_id")))


@api.route(
    "PATCH",
    r"/users/{user_id:\d+}",
    summary="Change, deactivate or reset an account",
    tag="users",
    roles={Role.admin},
    body=UserPatch,
    answer=UserOut,
)
async def update_user(ctx: Context) -> UserOut:
    """A change of role or court, deactivation or a password reset ends the user's sessions
    and closes their live sockets (call, notifications) on every node."""
    body: UserPatch = ctx.body
    user, end_sessions = await service.update_user(
        ctx.db,
        ctx.me.actor(),
        ctx.path_id("user_id"),
        display_name=body.display_name,
        role=body.role,
        court_id=body.court_id,
        active=body.active,
        password=body.password,
        password_min_length=ctx.settings.password_min_length,
    )
    if end_sessions:
        await close_user_sessions(ctx.db, user.id)
        sockets, user_id = ctx.request.app[STAFF_SOCKETS], user.id
        ctx.after_commit(lambda: sockets.user_changed(user_id))
    return UserOut.of(user)
