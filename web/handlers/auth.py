"""Login, logout and the current user."""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp import web
from sqlalchemy import update

from config.audit import record_audit
from config.errors import AuthenticationError, RateLimitedError
from scheduler.accounts import hash_password, needs_rehash, verify_password
from scheduler.models import Court, Role, User
from web.auth import (
    Principal,
    account_key,
    address_key,
    clear_session_cookie,
    close_session,
    find_active_user,
    open_session,
    principal_of,
    set_session_cookie,
    wait_minutes,
)
from web.errors import app_error_response
from web.keys import STAFF_SOCKETS, THROTTLE
from web.metrics import count_login_failure
from web.routes import ALL_STAFF, Context, api, json_response
from web.schemas import LoginBody, Me, Ok

HOME = {
    Role.admin: "/admin",
    Role.operator: "/operator",
    Role.judge: "/judge",
    Role.archivist: "/archive",
    Role.petition_officer: "/cases",
    Role.leader: "/cases",
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


def unknown_name(typed: str) -> str:
    """How the audit trail names a login attempt for no account: 未知用户名#<8 hex>."""
    digest = hashlib.sha256(typed.encode()).hexdigest()[:8]
    return f"未知用户名#{digest}"


@api.route(
    "POST",
    "/auth/login",
    summary="Log in with username and password",
    tag="auth",
    roles=None,
    body=LoginBody,
    answer=Me,
    errors=(401, 429),
    split=True,
)
async def login(ctx: Context) -> web.StreamResponse:
    """Sets the HttpOnly session cookie; the answer carries the CSRF token for later requests.

    Attempts are limited per account and per address (429 with Retry-After). Each attempt is
    counted before the password is checked, so parallel guesses cannot exceed the limit. A
    refused password says how many attempts are left (``details.attempts_left``); the last
    one, and a locked account, say how many minutes to wait.
    """
    body: LoginBody = ctx.body
    settings = ctx.settings
    throttle = ctx.request.app[THROTTLE]
    window = settings.login_failure_window_seconds
    limits = {
        account_key(body.username): settings.login_max_failures_per_account,
        address_key(ctx.address): settings.login_max_failures_per_address,
    }
    tokens = {key: await throttle.hit(key, window) for key in limits}
    if any(count > limits[key] for key, (count, _) in tokens.items()):
        wait = 1
        for key, (_, token) in tokens.items():
            await throttle.release(key, token)  # a refused attempt is not a guess
            wait = max(wait, await throttle.retry_after(key, limits[key], window))
        count_login_failure(ctx.request.app, "blocked")
        async with ctx.write() as db:
            record_audit(
                db,
                action="auth.login_blocked",
                actor_type="anonymous",
                actor_name=body.username,
                address=ctx.address,
                detail={"retry_after": wait},
            )
        return app_error_response(
            RateLimitedError(
                f"登录失败次数过多，已暂时锁定，请 {wait_minutes(wait)} 分钟后再试"
                "（或请系统管理员解锁）",
                retry_after=wait,
            )
        )
    user = await find_active_user(ctx.db, body.username)
    # argon2 takes tens of milliseconds of CPU: not on the event loop, not under the lock
    valid = await asyncio.to_thread(
        verify_password, user.password_hash if user else None, body.password
    )
    if user is None or not valid or not user.active:
        reason = "inactive" if user and valid else "bad_credentials"
        count_login_failure(ctx.request.app, reason)
        async with ctx.write() as db:
            record_audit(
                db,
                action="auth.login_failed",
                actor_type="anonymous",
                # a name no account has may be a password typed in the wrong box: the trail,
                # kept for good, holds it only as a short fingerprint (tries of one name
                # still read alike)
                actor_name=body.username if user is not None else unknown_name(body.username),
                address=ctx.address,
                detail={"reason": reason},
            )
        left = min(limits[key] - count for key, (count, _) in tokens.items())
        if left > 0:
            warning = f"还可尝试 {left} 次"
        else:
            wait = max([await throttle.retry_after(k, limits[k], window) for k in limits])
            warning = f"已暂时锁定，请 {wait_minutes(wait)} 分钟后再试（或请系统管理员解锁）"
        return app_error_response(
            AuthenticationError(
                f"用户名或密码错误，或账户已停用；{warning}",
                code="bad_credentials",
                details={"attempts_left": left},
            )
        )
    await throttle.reset(account_key(body.username))
    by_address = address_key(ctx.address)
    await throttle.release(by_address, tokens[by_address][1])  # a success is no guess
    async with ctx.write() as db:
        if needs_rehash(user.password_hash):
            new_hash = await asyncio.to_thread(hash_password, body.password)
            await db.execute(update(User).where(User.id == user.id).values(password_hash=new_hash))
        token, row = await open_session(
            db, settings, user, ctx.address, ctx.request.headers.get("User-Agent", "")
        )
        record_audit(
            db,
            action="auth.login",
            actor_id=user.id,
            actor_name=user.username,
            address=ctx.address,
            court_id=user.court_id,
            target_type="user",
            target_id=user.id,
        )
    principal = principal_of(user, row, ctx.address)  # before fresh() expires ``user``
    await ctx.fresh()
    response = json_response(await _me(ctx, principal))
    set_session_cookie(response, settings, token)
    return response


@api.route(
    "POST", "/auth/logout", summary="End this session", tag="auth", roles=ALL_STAFF, answer=Ok
)
async def logout(ctx: Context) -> web.StreamResponse:
    """Also closes the live sockets (call, notifications) opened with this session."""
    await close_session(ctx.db, ctx.me.session_id)
    sockets, session_id = ctx.request.app[STAFF_SOCKETS], ctx.me.session_id
    ctx.after_commit(lambda: sockets.logged_out(session_id))
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
