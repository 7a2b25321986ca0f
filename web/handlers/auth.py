"""Login, logout and the current user."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from typing import Any

from aiohttp import web
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from config.audit import record_audit
from config.errors import AuthenticationError, ConflictError, InvalidError, RateLimitedError
from scheduler.accounts import (
    apply_password,
    hash_password,
    needs_rehash,
    new_password_hash,
    password_rule,
    verify_password,
)
from scheduler.models import Court, Role, User
from web.auth import (
    Principal,
    account_key,
    address_key,
    clear_session_cookie,
    close_other_sessions,
    close_session,
    find_active_user,
    open_session,
    principal_of,
    session_exists,
    set_session_cookie,
    wait_minutes,
)
from web.errors import app_error_response
from web.keys import STAFF_SOCKETS, THROTTLE
from web.metrics import count_login_failure
from web.routes import ALL_STAFF, Context, api, json_response
from web.schemas import LoginBody, Me, Ok, PasswordChange

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
        must_change_password=principal.must_change_password,
        password_rule=password_rule(ctx.settings.password_min_length),
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
    "POST",
    "/auth/logout",
    summary="End this session",
    tag="auth",
    roles=ALL_STAFF,
    answer=Ok,
    before_password_change=True,
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


@api.route(
    "GET",
    "/auth/me",
    summary="The logged-in user",
    tag="auth",
    roles=ALL_STAFF,
    answer=Me,
    before_password_change=True,
)
async def me(ctx: Context) -> Me:
    """Also returns the CSRF token that state-changing requests must send."""
    return await _me(ctx, ctx.me)


def _own_account_event(db: AsyncSession, ctx: Context, action: str, **detail: Any) -> None:
    """An audit event of the logged-in staff member about their own account."""
    me = ctx.me
    record_audit(
        db,
        action=action,
        actor_id=me.user_id,
        actor_name=me.username,
        address=ctx.address,
        court_id=me.court_id,
        target_type="user",
        target_id=me.user_id,
        detail=detail or None,
    )


@api.route(
    "POST",
    "/auth/password",
    summary="Change one's own password",
    tag="auth",
    roles=ALL_STAFF,
    body=PasswordChange,
    answer=Me,
    errors=(422, 429),
    split=True,
    before_password_change=True,
)
async def change_password(ctx: Context) -> web.StreamResponse:
    """The current password proves who is at the keyboard (a session left open is not
    enough). A wrong one is a failed login for the account's lock (422 ``wrong_password``
    with ``details.attempts_left``; 429 once locked). The new one follows the strength rule
    (422 ``weak_password``) and must differ from the current one (422 ``same_password``).
    The account's other sessions end and their sockets close; this one stays."""
    body: PasswordChange = ctx.body
    me, settings = ctx.me, ctx.settings
    throttle = ctx.request.app[THROTTLE]
    window, limit = settings.login_failure_window_seconds, settings.login_max_failures_per_account
    key = account_key(me.username)
    count, token = await throttle.hit(key, window)
    if count > limit:
        await throttle.release(key, token)
        wait = await throttle.retry_after(key, limit, window)
        async with ctx.write() as db:
            _own_account_event(db, ctx, "auth.password_change_blocked", retry_after=wait)
        return app_error_response(
            RateLimitedError(
                f"密码错误次数过多，请 {wait_minutes(wait)} 分钟后再试", retry_after=wait
            )
        )
    user = await ctx.db.get(User, me.user_id)
    assert user is not None  # the session's account (the principal was just loaded)
    valid = await asyncio.to_thread(verify_password, user.password_hash, body.current_password)
    if not valid:
        async with ctx.write() as db:
            _own_account_event(db, ctx, "auth.password_change_failed")
        left = limit - count
        return app_error_response(
            InvalidError(
                "当前密码不正确"
                + (f"；还可尝试 {left} 次" if left > 0 else "；账户已暂时锁定，请稍后再试"),
                code="wrong_password",
                details={"attempts_left": max(left, 0)},
            )
        )
    await throttle.reset(key)  # proved, as a login does: earlier typos are forgiven
    if await asyncio.to_thread(verify_password, user.password_hash, body.new_password):
        raise InvalidError("新密码不能与当前密码相同", code="same_password")
    new_hash = await asyncio.to_thread(
        new_password_hash, body.new_password, settings.password_min_length
    )
    proved = user.password_hash
    async with ctx.write() as db:
        row = await db.get(User, me.user_id, with_for_update=True)
        if row is None or row.password_hash != proved or not await session_exists(db, me):
            # reset by an administrator meanwhile (which ended this session): theirs stands
            raise ConflictError("密码已被管理员重置，请重新登录", code="password_reset")
        apply_password(row, new_hash, temporary=False)
        others = await close_other_sessions(db, me.user_id, keep=me.session_id)
        _own_account_event(db, ctx, "auth.password_changed", sessions_ended=len(others))
        sockets = ctx.request.app[STAFF_SOCKETS]

        async def close_others() -> None:
            for session_id in others:
                await sockets.logged_out(session_id)

        ctx.after_commit(close_others)
    await ctx.fresh()
    principal = dataclasses.replace(me, must_change_password=False)
    return json_response(await _me(ctx, principal))
