"""One-time visit codes for petitioners and invited third parties.

Codes are random, drawn from an alphabet without look-alike characters, expire, and are
stored only as an HMAC-SHA-256 keyed with the server secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import utcnow
from config.errors import AuthenticationError
from scheduler.models import CodeRole, VisitCode

# No 0/O, 1/I/L: codes are read aloud and typed from paper.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
MIN_CODE_LENGTH = 8


class VisitCodeError(AuthenticationError):
    """A visit code was refused; ``code`` says why (invalid, expired, used, revoked)."""


def generate_code(length: int = 10) -> str:
    if length < MIN_CODE_LENGTH:
        raise ValueError(f"visit codes have at least {MIN_CODE_LENGTH} characters")
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def normalize_code(text: str) -> str:
    """Upper-case and drop spaces and dashes, so ``abcd-efgh`` matches ``ABCDEFGH``."""
    return "".join(ch for ch in text.upper() if ch not in " -\t")


def hash_code(secret: bytes, code: str) -> str:
    return hmac.new(secret, normalize_code(code).encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class IssuedCode:
    """A freshly issued code: ``code`` is shown once and never stored."""

    code: str
    record: VisitCode


async def issue_visit_code(
    session: AsyncSession,
    *,
    secret: bytes,
    visit_id: str,
    role: CodeRole,
    ttl: timedelta,
    length: int = 10,
    created_by: int | None = None,
    label: str = "",
    now: datetime | None = None,
) -> IssuedCode:
    """Create a code for ``visit_id``; only its hash is stored."""
    now = now or utcnow()
    code = generate_code(length)
    record = VisitCode(
        visit_id=visit_id,
        role=role,
        code_hash=hash_code(secret, code),
        label=label,
        expires_at=now + ttl,
        created_by=created_by,
        created_at=now,
    )
    session.add(record)
    await session.flush()
    return IssuedCode(code=code, record=record)


async def verify_visit_code(
    session: AsyncSession,
    *,
    secret: bytes,
    code: str,
    visit_id: str | None = None,
    consume: bool = True,
    now: datetime | None = None,
) -> VisitCode:
    """Check a code and, with ``consume``, mark it used so it cannot be used again.

    Raises :class:`VisitCodeError` with code ``invalid_code``, ``expired_code``, ``used_code``
    or ``revoked_code``. A code for another visit is ``invalid_code``: the caller learns nothing.
    """
    now = now or utcnow()
    normalized = normalize_code(code)
    if len(normalized) < MIN_CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in normalized):
        raise VisitCodeError("接访码无效", code="invalid_code")
    record = await session.scalar(
        select(VisitCode).where(VisitCode.code_hash == hash_code(secret, normalized))
    )
    if record is None or (visit_id is not None and record.visit_id != visit_id):
        raise VisitCodeError("接访码无效", code="invalid_code")
    if record.revoked_at is not None:
        raise VisitCodeError("接访码已作废", code="revoked_code")
    if record.used_at is not None:
        raise VisitCodeError("接访码已使用", code="used_code")
    if record.expires_at <= now:
        raise VisitCodeError("接访码已过期", code="expired_code")
    if consume:
        # Conditional update: of two concurrent uses of one code, only one wins.
        result = await session.execute(
            update(VisitCode)
            .where(VisitCode.id == record.id, VisitCode.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 1) != 1:
            raise VisitCodeError("接访码已使用", code="used_code")
        record.used_at = now
    return record
