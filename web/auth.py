"""Staff sessions (cookie + CSRF token), login throttling, and who the caller is."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy import ForeignKey, Integer, Select, String, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from config.db import Base, UTCDateTime, prepared, utcnow
from config.settings import Settings
from scheduler.models import Role, User
from scheduler.scope import Actor

SESSION_COOKIE = "vr_session"
CSRF_HEADER = "X-CSRF-Token"


class StaffSession(Base):
    """A logged-in staff browser; only a hash of the cookie token is stored."""

    __tablename__ = "staff_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256(token)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    address: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(256), default="", nullable=False)
    version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The authenticated staff member behind a request."""

    user_id: int
    username: str
    display_name: str
    role: Role
    court_id: int | None
    session_id: str
    csrf_token: str
    address: str | None
    needs_touch: bool = False  # the idle timer is due to be refreshed
    # an administrator chose the password: nothing but changing it until it is changed
    must_change_password: bool = False

    def actor(self) -> Actor:
        return Actor(
            user_id=self.user_id,
            username=self.username,
            role=self.role,
            court_id=self.court_id,
            address=self.address,
        )


class SessionProblem(Exception):
    """Why a cookie did not give a session: ``missing``, ``expired`` or ``invalid``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def open_session(
    db: AsyncSession, settings: Settings, user: User, address: str | None, user_agent: str
) -> tuple[str, StaffSession]:
    """Create a session for ``user``; returns the cookie token (shown once) and the row."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = StaffSession(
        id=_token_id(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(minutes=settings.session_ttl_minutes),
        address=address,
        user_agent=user_agent[:256],
    )
    db.add(row)
    return token, row


async def load_principal(
    db: AsyncSession, settings: Settings, token: str | None, address: str | None
) -> Principal:
    """The principal for a cookie token; raises SessionProblem. Reads only: the caller
    refreshes the idle timer with :func:`touch_session` when ``needs_touch``."""
    if not token:
        raise SessionProblem("missing")
    return await session_principal(db, settings, _token_id(token), address)


def _principal_statement() -> Select[Any]:
    sessions, users = StaffSession.__table__, User.__table__
    return (
        select(
            sessions.c.expires_at,
            sessions.c.last_seen_at,
            sessions.c.csrf_token,
            users.c.id,
            users.c.username,
            users.c.display_name,
            users.c.role,
            users.c.court_id,
            users.c.active,
            users.c.must_change_password,
        )
        .join(users, users.c.id == sessions.c.user_id)
        .where(sessions.c.id == bindparam("session_id"))
    )


# Every request's identity check: one query of columns, built once (no statement building,
# no ORM objects per request). Nothing is cached: logout, lockout and role changes count at
# once, on every node.
_PRINCIPAL = prepared(_principal_statement())


async def session_principal(
    db: AsyncSession,
    settings: Settings,
    session_id: str,
    address: str | None,
    *,
    live: bool = False,
) -> Principal:
    """The principal of a stored session; raises SessionProblem. ``live``: the caller holds
    an open connection of this session (a staff socket), which counts as activity, so the
    idle limit does not apply; the absolute lifetime does."""
    found = (await db.execute(_PRINCIPAL, {"session_id": session_id})).first()
    if found is None:
        raise SessionProblem("invalid")
    (
        expires_at,
        last_seen_at,
        csrf_token,
        user_id,
        username,
        name,
        role,
        court_id,
        active,
        must_change,
    ) = found
    now = utcnow()
    idle = timedelta(minutes=settings.session_idle_minutes)
    if expires_at <= now or (not live and last_seen_at + idle <= now):
        raise SessionProblem("expired")
    if not active:
        raise SessionProblem("invalid")
    return Principal(
        user_id=user_id,
        username=username,
        display_name=name,
        role=role,
        court_id=court_id,
        session_id=session_id,
        csrf_token=csrf_token,
        address=address,
        needs_touch=now - last_seen_at > timedelta(seconds=30),
        must_change_password=bool(must_change),
    )


async def touch_session(db: AsyncSession, session_id: str) -> None:
    """Refresh a session's idle timer (inside a write transaction)."""
    await db.execute(
        update(StaffSession).where(StaffSession.id == session_id).values(last_seen_at=utcnow())
    )


def principal_of(user: User, row: StaffSession, address: str | None) -> Principal:
    return Principal(
        user_id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        court_id=user.court_id,
        session_id=row.id,
        csrf_token=row.csrf_token,
        address=address,
        must_change_password=user.must_change_password,
    )


async def close_session(db: AsyncSession, session_id: str) -> None:
    await db.execute(delete(StaffSession).where(StaffSession.id == session_id))


async def close_user_sessions(db: AsyncSession, user_id: int) -> None:
    await db.execute(delete(StaffSession).where(StaffSession.user_id == user_id))


async def session_exists(db: AsyncSession, principal: Principal) -> bool:
    """The principal's session is still stored (not ended by a logout or a reset)."""
    found = await db.scalar(select(StaffSession.id).where(StaffSession.id == principal.session_id))
    return found is not None


async def close_other_sessions(db: AsyncSession, user_id: int, keep: str) -> list[str]:
    """End every session of ``user_id`` but ``keep``; returns the ended ones' ids."""
    ended = (
        await db.scalars(
            select(StaffSession.id).where(StaffSession.user_id == user_id, StaffSession.id != keep)
        )
    ).all()
    await db.execute(delete(StaffSession).where(StaffSession.id.in_(ended)))
    return list(ended)


async def purge_expired_sessions(db: AsyncSession) -> int:
    result = await db.execute(delete(StaffSession).where(StaffSession.expires_at <= utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


def csrf_ok(principal: Principal, supplied: str | None) -> bool:
    return bool(supplied) and hmac.compare_digest(principal.csrf_token, supplied or "")


def set_session_cookie(response: web.StreamResponse, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_ttl_minutes * 60,
        httponly=True,
        samesite="Strict",
        secure=settings.cookie_secure,
        path="/",
    )


def clear_session_cookie(response: web.StreamResponse, settings: Settings) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")


def _is_proxy(address: str | None, settings: Settings) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.proxy_networks)


def client_address(request: web.Request, settings: Settings) -> str | None:
    """Who is calling: the connection's peer, or, when that peer is one of
    ``trusted_proxies``, the address the proxies put into X-Forwarded-For.

    Each proxy appends the address it was connected from, so the list is read from the right,
    past the trusted proxies; the entry before them was written by a trusted proxy and names
    the client. Anything further left is what the client claims and is ignored."""
    peer = request.remote
    if not _is_proxy(peer, settings):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _is_proxy(hop, settings):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:  # not written by a proxy we know: keep the proxy's address
                return peer
    return hops[0] if hops else peer


def request_scheme(request: web.Request, settings: Settings) -> str:
    """``https`` or ``http`` as the browser used it (X-Forwarded-Proto from a trusted proxy)."""
    if _is_proxy(request.remote, settings):
        forwarded = request.headers.get("X-Forwarded-Proto", "").strip().lower()
        if forwarded in ("http", "https"):
            return forwarded
    return request.scheme


# ---------------------------------------------------------------- login throttling


class LoginThrottle(Protocol):
    """Counts login attempts per key in a sliding window. ``hit`` records an attempt and
    returns the count in one atomic step, so parallel guesses cannot slip past the limit."""

    async def hit(self, key: str, window: int) -> tuple[int, str]:
        """Record an attempt; returns (attempts in the window, including this one, token)."""
        ...

    async def release(self, key: str, token: str) -> None:
        """Forget one recorded attempt (a success, or one refused before it was tried)."""
        ...

    async def retry_after(self, key: str, limit: int, window: int) -> int:
        """Seconds until ``key`` has fewer than ``limit`` attempts in the window."""
        ...

    async def reset(self, key: str) -> None:
        """Forget every attempt of ``key`` (a success, or an admin unlocking an account)."""
        ...


class MemoryLoginThrottle:
    """In-process throttle for the embedded (single process) mode."""

    # every this many attempts, the keys whose attempts have all aged out are forgotten:
    # one address trying ever new user names must not grow the process without bound
    SWEEP_EVERY = 1024

    def __init__(self) -> None:
        self._hits: dict[str, deque[tuple[float, str]]] = defaultdict(deque)
        self._window = 0
        self._since_sweep = 0

    def _prune(self, key: str, window: int) -> deque[tuple[float, str]]:
        hits = self._hits[key]
        cutoff = time.monotonic() - window
        while hits and hits[0][0] <= cutoff:
            hits.popleft()
        return hits

    def _sweep(self) -> None:
        cutoff = time.monotonic() - self._window
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1][0] <= cutoff]:
            del self._hits[key]

    async def hit(self, key: str, window: int) -> tuple[int, str]:
        self._window = max(self._window, window)
        self._since_sweep += 1
        if self._since_sweep >= self.SWEEP_EVERY:
            self._since_sweep = 0
            self._sweep()
        hits = self._prune(key, window)
        token = secrets.token_hex(8)
        hits.append((time.monotonic(), token))
        return len(hits), token

    async def release(self, key: str, token: str) -> None:
        hits = self._hits.get(key)
        if hits:
            for item in hits:
                if item[1] == token:
                    hits.remove(item)
                    break
            if not hits:
                del self._hits[key]

    async def retry_after(self, key: str, limit: int, window: int) -> int:
        if key not in self._hits:
            return 0
        hits = self._prune(key, window)
        if len(hits) < limit:
            return 0
        return max(1, int(hits[-limit][0] + window - time.monotonic()) + 1)

    async def reset(self, key: str) -> None:
        self._hits.pop(key, None)


class RedisLoginThrottle:
    """Throttle shared by every node: a Redis sorted set of attempt times per key."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    @staticmethod
    def _key(key: str) -> str:
        return f"vreception:login-attempts:{key}"

    async def hit(self, key: str, window: int) -> tuple[int, str]:
        now = time.time()
        token = f"{now}:{secrets.token_hex(8)}"
        rkey = self._key(key)
        async with self._redis.pipeline(transaction=True) as pipe:  # MULTI … EXEC
            pipe.zremrangebyscore(rkey, 0, now - window)
            pipe.zadd(rkey, {token: now})
            pipe.zcard(rkey)
            pipe.expire(rkey, window)
            results = await pipe.execute()
        return int(results[2]), token

    async def release(self, key: str, token: str) -> None:
        await self._redis.zrem(self._key(key), token)

    async def retry_after(self, key: str, limit: int, window: int) -> int:
        now = time.time()
        rkey = self._key(key)
        await self._redis.zremrangebyscore(rkey, 0, now - window)
        scores = await self._redis.zrevrange(rkey, limit - 1, limit - 1, withscores=True)
        if not scores:
            return 0
        return max(1, int(float(scores[0][1]) + window - now) + 1)

    async def reset(self, key: str) -> None:
        await self._redis.delete(self._key(key))


def create_login_throttle(redis: Redis | None) -> LoginThrottle:
    """The throttle of this deployment: in memory (embedded) or shared through Redis."""
    return MemoryLoginThrottle() if redis is None else RedisLoginThrottle(redis)


def account_key(username: str) -> str:
    """The throttle key counting one account's attempts (from every address)."""
    return "account:" + username.lower()


def address_key(address: str | None) -> str:
    """The throttle key counting one address's attempts (at every account)."""
    return "address:" + (address or "unknown")


def wait_minutes(seconds: int) -> int:
    """A wait as people are told it: whole minutes, rounded up, at least one."""
    return max(1, -(-seconds // 60))


async def account_lockout(throttle: LoginThrottle, settings: Settings, username: str) -> int:
    """Seconds until ``username`` may try to log in again (0: not locked)."""
    return await throttle.retry_after(
        account_key(username),
        settings.login_max_failures_per_account,
        settings.login_failure_window_seconds,
    )


async def unlock_account(throttle: LoginThrottle, username: str) -> None:
    """Lift an account's login lock (its failed attempts are forgotten)."""
    await throttle.reset(account_key(username))


async def find_active_user(db: AsyncSession, username: str) -> User | None:
    return await db.scalar(select(User).where(User.username == username))
