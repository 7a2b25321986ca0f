"""Staff accounts (admin only): create, change, unlock after failed logins, reset password."""

from __future__ import annotations

from config.audit import record_audit
from config.errors import ConflictError
from scheduler import service
from scheduler.models import Role, User
from web.auth import account_lockout, close_user_sessions, unlock_account
from web.keys import STAFF_SOCKETS, THROTTLE
from web.routes import Context, api
from web.schemas import (
    Page,
    PasswordIn,
    UserIn,
    UserOut,
    UserPatch,
    UserQuery,
    page_of,
)


async def _out(ctx: Context, user: User) -> UserOut:
    locked = await account_lockout(ctx.request.app[THROTTLE], ctx.settings, user.username)
    return UserOut.of(user, locked)


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
    """``locked_seconds`` says which accounts failed logins have locked, and for how long."""
    q: UserQuery = ctx.query
    page = await service.list_users(ctx.db, court_id=q.court_id, limit=q.limit, offset=q.offset)
    items = [await _out(ctx, user) for user in page.items]
    return page_of(Page[UserOut], items, page.total, q, lambda out: out)


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
    return await _out(ctx, await service.get_user(ctx.db, ctx.path_id("user_id")))


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
    return await _out(ctx, user)


@api.route(
    "POST",
    r"/users/{user_id:\d+}/unlock",
    summary="Lift the lock that failed logins put on an account (audited)",
    tag="users",
    roles={Role.admin},
    answer=UserOut,
    errors=(404, 409),
)
async def unlock_user(ctx: Context) -> UserOut:
    """409 ``not_locked`` when the account is not locked."""
    user = await service.get_user(ctx.db, ctx.path_id("user_id"))
    throttle = ctx.request.app[THROTTLE]
    if not await account_lockout(throttle, ctx.settings, user.username):
        raise ConflictError(f"账户 {user.username} 未被锁定", code="not_locked")
    await unlock_account(throttle, user.username)
    me = ctx.me
    record_audit(
        ctx.db,
        action="user.unlock",
        actor_id=me.user_id,
        actor_name=me.username,
        target_type="users",
        target_id=user.id,
        address=ctx.address,
        court_id=user.court_id,
        detail={"username": user.username},
    )
    return UserOut.of(user)


@api.route(
    "POST",
    r"/users/{user_id:\d+}/password",
    summary="Reset an account's password (audited; ends its sessions and lifts its lock)",
    tag="users",
    roles={Role.admin},
    body=PasswordIn,
    answer=UserOut,
    errors=(404,),
)
async def reset_password(ctx: Context) -> UserOut:
    """The new password follows the same rule as a new account's (422 ``weak_password``)."""
    body: PasswordIn = ctx.body
    user = await service.get_user(ctx.db, ctx.path_id("user_id"))
    await service.reset_password(
        ctx.db,
        ctx.me.actor(),
        user,
        password=body.password,
        password_min_length=ctx.settings.password_min_length,
    )
    await close_user_sessions(ctx.db, user.id)
    sockets, user_id = ctx.request.app[STAFF_SOCKETS], user.id
    ctx.after_commit(lambda: sockets.user_changed(user_id))
    await unlock_account(ctx.request.app[THROTTLE], user.username)
    return UserOut.of(user)
