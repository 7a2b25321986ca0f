"""Login, logout and the current user."""

from __future__ import annotations

from aiohttp import web

from config.audit import record_audit
from config.errors import AuthenticationError, RateLimitedError
from scheduler.accounts import hash_password, needs_rehash, verify_password
from scheduler.models import Court, Role
from web.auth import (
    Principal,
    clear_session_cookie,
    close_session,
    find_active_user,
    open_session,
    principal_of,
    set_session_cookie,
)
from web.errors import app_error_response
from web.keys import THROTTLE
from web.routes import ALL_STAFF, Context, api, to_json
from web.schemas import LoginBody, Me, Ok

HOME = {
    Role.admin: "/admin",
    Role.operator: "/operator",
    Role.judge: "/judge",
    Role.archivist: "/archive",
}


async def _me(ctx: Context, principal: Principal) -> Me:
    court = await ctx.db.get(Court, principal.court_id) if principal.court_id else None
    return Me(
        id=principal.user_id,
        username=principal.username,
        display_name=principal.display_name,
        role=principal.role,
        court_id=principal.court_id,
        court_name=court.name if court else None,
        csrf_token=principal.csrf_token,
        home=HOME[principal.role],
    )


@api.route(
    "POST",
    "/auth/login",
    summary="Log in with username and password",
    tag="auth",
    roles=None,
    body=LoginBody,
    answer=Me,
    errors=(401, 429),
)
async def login(ctx: Context) -> web.StreamResponse:
    """Sets the HttpOnly session cookie; the answer carries the CSRF token for later requests.

    Failed attempts are limited per account and per address (429 with Retry-After).
    """
    body: LoginBody = ctx.body
    settings = ctx.settings
    throttle = ctx.request.app[THROTTLE]
    window = settings.login_failure_window_seconds
    account_key = "account:" + body.username.lower()
    address_key = "address:" + (ctx.address or "unknown")
    wait = max(
        await throttle.blocked_for(account_key, settings.login_max_failures_per_account, window),
        await throttle.blocked_for(address_key, settings.login_max_failures_per_address, window),
    )
    if wait:
        record_audit(
            ctx.db,
            action="auth.login_blocked",
            actor_type="anonymous",
            actor_name=body.username,
            address=ctx.address,
            detail={"retry_after": wait},
        )
        return app_error_response(
            RateLimitedError(f"登录失败次数过多，请 {wait} 秒后再试", retry_after=wait)
        )
    user = await find_active_user(ctx.db, body.username)
    valid = verify_password(user.password_hash if user else None, body.password)
    if user is None or not valid or not user.active:
        await throttle.fail(account_key, window)
        await throttle.fail(address_key, window)
        record_audit(
            ctx.db,
            action="auth.login_failed",
            actor_type="anonymous",
            actor_name=body.username,
            address=ctx.address,
            detail={"reason": "inactive" if user and valid else "bad_credentials"},
        )
        return app_error_response(
            AuthenticationError("用户名或密码错误，或账户已停用", code="bad_credentials")
        )
    await throttle.reset(account_key)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(body.password)
    token, row = await open_session(
        ctx.db, settings, user, ctx.address, ctx.request.headers.get("User-Agent", "")
    )
    record_audit(
        ctx.db,
        action="auth.login",
        actor_id=user.id,
        actor_name=user.username,
        address=ctx.address,
        court_id=user.court_id,
        target_type="user",
        target_id=user.id,
    )
    principal = principal_of(user, row, ctx.address)
    response = web.json_response(to_json(await _me(ctx, principal)))
    set_session_cookie(response, settings, token)
    return response


@api.route(
    "POST", "/auth/logout", summary="End this session", tag="auth", roles=ALL_STAFF, answer=Ok
)
async def logout(ctx: Context) -> web.StreamResponse:
    await close_session(ctx.db, ctx.me.session_id)
    record_audit(
        ctx.db,
        action="auth.logout",
        actor_id=ctx.me.user_id,
        actor_name=ctx.me.username,
        address=ctx.address,
        court_id=ctx.me.court_id,
    )
    response = web.json_response({"ok": True})
    clear_session_cookie(response, ctx.settings)
    return response


@api.route("GET", "/auth/me", summary="The logged-in user", tag="auth", roles=ALL_STAFF, answer=Me)
async def me(ctx: Context) -> Me:
    """Also returns the CSRF token that state-changing requests must send."""
    return await _me(ctx, ctx.me)
