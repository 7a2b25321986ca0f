"""Who a petitioner is on the portal: name, resident ID number (checksum checked) and a
mainland mobile number proved by a one-time SMS code; then a short portal session.

Codes are 6 digits, stored as an HMAC keyed with the server secret, expire after
``portal_code_ttl_minutes`` and lock after ``portal_code_max_failures`` wrong tries. How many
codes one phone and one address may ask for per hour is limited. Sessions are opaque tokens
stored hashed, bound to the identity's ID number key and phone. An identity is an ID number
together with a proved phone: the code proves the phone only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from config.db import utcnow
from config.errors import AuthenticationError, InvalidError, RateLimitedError
from config.settings import Settings
from scheduler.models import IdType
from scheduler.portal.models import PortalCode, PortalIdentity, PortalSession, SmsMessage
from scheduler.portal.sms import queue_sms
from scheduler.service import check_id_number

MOBILE = re.compile(r"1[3-9]\d{9}")
CODE_DIGITS = 6
NAME_LIMIT = 64


class CodeRefused(AuthenticationError):
    """A wrong, expired or locked SMS code; the failure it counts must be committed."""


def check_phone(phone: str) -> str:
    """A mainland mobile number (11 digits, 1[3-9]…), spaces and dashes dropped."""
    value = re.sub(r"[\s-]", "", phone or "").removeprefix("+86")
    if not MOBILE.fullmatch(value):
        raise InvalidError(
            "手机号码无效：请填写 11 位中国大陆手机号码（1 开头）", code="invalid_phone"
        )
    return value


def check_name(name: str) -> str:
    value = (name or "").strip()
    if not value:
        raise InvalidError("请填写姓名", code="missing_field", details={"fields": ["姓名"]})
    if len(value) > NAME_LIMIT or any(not ch.isprintable() for ch in value):
        raise InvalidError("姓名无效", code="invalid_name")
    return value


def check_resident_id(id_number: str) -> str:
    return check_id_number(IdType.resident_id, id_number or "")


def id_key(secret: bytes, id_number: str) -> str:
    """The ID number as sessions and codes are bound to it (never the number itself)."""
    return hmac.new(secret, b"portal-id|" + id_number.encode(), hashlib.sha256).hexdigest()


def _code_hash(secret: bytes, phone: str, code: str) -> str:
    return hmac.new(secret, f"portal-code|{phone}|{code}".encode(), hashlib.sha256).hexdigest()


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _locked(settings: Settings) -> CodeRefused:
    return CodeRefused(
        f"验证码输错已达 {settings.portal_code_max_failures} 次，该验证码已锁定，请重新获取验证码",
        code="code_locked",
    )


@dataclass(frozen=True)
class Claimed:
    """Who a petitioner says they are, checked for form."""

    name: str
    id_number: str
    phone: str


def claim(name: str, id_number: str, phone: str) -> Claimed:
    return Claimed(check_name(name), check_resident_id(id_number), check_phone(phone))


async def _recent(
    db: AsyncSession, column: InstrumentedAttribute[str], value: str, since: datetime
) -> list[datetime]:
    rows = await db.scalars(
        select(PortalCode.created_at)
        .where(column == value, PortalCode.created_at > since)
        .order_by(PortalCode.created_at)
    )
    return list(rows.all())


async def request_code(
    db: AsyncSession,
    settings: Settings,
    secret: bytes,
    who: Claimed,
    address: str | None,
    now: datetime | None = None,
) -> SmsMessage:
    """Issue a login code to ``who.phone`` (through the outbox); refuses beyond the hourly
    limits per phone and per address (429 with the wait)."""
    now = now or utcnow()
    hour = now - timedelta(hours=1)
    limits = (
        (PortalCode.phone, who.phone, settings.portal_codes_per_phone_hour, "该手机号"),
        (PortalCode.address, address or "", settings.portal_codes_per_address_hour, "您的网络"),
    )
    for column, value, limit, whose in limits:
        recent = await _recent(db, column, value, hour)
        if len(recent) >= limit:
            wait = int((recent[-limit] + timedelta(hours=1) - now).total_seconds()) + 1
            raise RateLimitedError(
                f"{whose}获取验证码过于频繁（每小时最多 {limit} 次），"
                f"请 {max(1, -(-wait // 60))} 分钟后再试",
                retry_after=max(1, wait),
                code="sms_rate_limited",
            )
    key = id_key(secret, who.id_number)
    # an older unused code of this phone stops working when a new one is sent
    await db.execute(
        update(PortalCode)
        .where(PortalCode.phone == who.phone, PortalCode.used_at.is_(None))
        .values(used_at=now)
    )
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    db.add(
        PortalCode(
            phone=who.phone,
            id_key=key,
            code_hash=_code_hash(secret, who.phone, code),
            address=address or "",
            created_at=now,
            expires_at=now + timedelta(minutes=settings.portal_code_ttl_minutes),
        )
    )
    message = queue_sms(
        db,
        who.phone,
        f"【人民法院网上信访】您的验证码为 {code}，{settings.portal_code_ttl_minutes} 分钟内有效。"
        "请勿告诉他人。",
        purpose="login_code",
    )
    await db.flush()
    return message


async def sign_in(
    db: AsyncSession,
    settings: Settings,
    secret: bytes,
    who: Claimed,
    code: str,
    address: str | None,
    now: datetime | None = None,
) -> tuple[str, PortalSession]:
    """Check the code sent to ``who.phone`` for this ID number; open a portal session.

    Returns the cookie token (shown once) and the session. A wrong code raises
    :class:`CodeRefused` after counting the failure (the caller commits it).
    """
    now = now or utcnow()
    key = id_key(secret, who.id_number)
    row = await db.scalar(
        select(PortalCode)
        .where(PortalCode.phone == who.phone, PortalCode.id_key == key)
        .order_by(PortalCode.id.desc())
        .limit(1)
    )
    if row is None:
        raise CodeRefused("请先获取短信验证码", code="no_code")
    if row.failures >= settings.portal_code_max_failures:
        raise _locked(settings)
    if row.used_at is not None:
        raise CodeRefused("验证码已使用或已被新验证码取代，请重新获取", code="code_used")
    if row.expires_at <= now:
        raise CodeRefused("验证码已过期，请重新获取", code="code_expired")
    # every try takes one of the code's tries before it is compared, in one statement: tries
    # made at once (PostgreSQL runs them side by side) each take their own
    taken = await db.scalar(
        update(PortalCode)
        .where(
            PortalCode.id == row.id,
            PortalCode.failures < settings.portal_code_max_failures,
        )
        .values(failures=PortalCode.failures + 1)
        .returning(PortalCode.failures)
    )
    if taken is None:
        raise _locked(settings)
    supplied = re.sub(r"\s", "", code or "")
    if not hmac.compare_digest(row.code_hash, _code_hash(secret, who.phone, supplied)):
        failures = taken
        left = settings.portal_code_max_failures - failures
        if left <= 0:
            raise CodeRefused(
                "验证码错误，已连续输错 "
                f"{settings.portal_code_max_failures} 次，该验证码已锁定，请重新获取验证码",
                code="code_locked",
            )
        raise CodeRefused(
            f"验证码错误，还可尝试 {left} 次", code="wrong_code", details={"left": left}
        )
    done = await db.execute(
        update(PortalCode)
        .where(PortalCode.id == row.id, PortalCode.used_at.is_(None))
        .values(used_at=now)
    )
    if getattr(done, "rowcount", 1) != 1:
        raise CodeRefused("验证码已使用，请重新获取", code="code_used")
    # the ID number with the phone just proved: the same ID number with another phone is
    # another identity, which sees none of this one's questions, complaints or requests
    identity = await db.scalar(
        select(PortalIdentity).where(
            PortalIdentity.id_key == key, PortalIdentity.phone == who.phone
        )
    )
    if identity is None:
        identity = PortalIdentity(
            id_key=key, id_number=who.id_number, name=who.name, phone=who.phone, created_at=now
        )
        db.add(identity)
    identity.name, identity.last_login_at = who.name, now
    await db.flush()
    token = secrets.token_urlsafe(32)
    session = PortalSession(
        id=_token_id(token),
        identity_id=identity.id,
        id_key=key,
        phone=who.phone,
        csrf_token=secrets.token_urlsafe(24),
        created_at=now,
        expires_at=now + timedelta(minutes=settings.portal_session_minutes),
        address=(address or "")[:64],
    )
    db.add(session)
    await db.flush()
    return token, session


@dataclass(frozen=True)
class PortalPrincipal:
    """The petitioner behind a portal request (checked at every request)."""

    identity_id: int
    name: str
    id_number: str
    phone: str
    session_id: str
    csrf_token: str
    expires_at: datetime


async def session_principal(
    db: AsyncSession, token: str | None, now: datetime | None = None
) -> PortalPrincipal | None:
    """The petitioner of a portal cookie token, or None (missing, expired, or no longer bound
    to its identity's ID number and phone)."""
    if not token:
        return None
    now = now or utcnow()
    found = (
        await db.execute(
            select(PortalSession, PortalIdentity)
            .join(PortalIdentity, PortalIdentity.id == PortalSession.identity_id)
            .where(PortalSession.id == _token_id(token))
        )
    ).first()
    if found is None:
        return None
    session, identity = found
    if session.expires_at <= now:
        return None
    if session.id_key != identity.id_key or session.phone != identity.phone:
        return None
    return PortalPrincipal(
        identity_id=identity.id,
        name=identity.name,
        id_number=identity.id_number,
        phone=identity.phone,
        session_id=session.id,
        csrf_token=session.csrf_token,
        expires_at=session.expires_at,
    )


async def sign_out(db: AsyncSession, session_id: str) -> None:
    await db.execute(
        update(PortalSession).where(PortalSession.id == session_id).values(expires_at=utcnow())
    )


async def purge(db: AsyncSession, now: datetime | None = None) -> None:
    """Forget expired sessions and day-old codes (the housekeeping job may call this)."""
    now = now or utcnow()
    await db.execute(delete(PortalSession).where(PortalSession.expires_at <= now))
    await db.execute(delete(PortalCode).where(PortalCode.created_at <= now - timedelta(days=1)))
