"""Staff accounts: argon2 password hashes and account rules."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from config.db import utcnow
from config.errors import InvalidError
from scheduler.models import User

_hasher = PasswordHasher()
# A hash to verify against when the user does not exist, so timing does not tell.
_DUMMY_HASH = _hasher.hash("vreception-dummy-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; spends the same time when there is no user."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def password_rule(min_length: int) -> str:
    """The strength rule in words, for the forms that ask for a new password."""
    return f"密码至少 {min_length} 个字符，需包含大写字母、小写字母、数字、符号中的至少两类"


def password_problem(password: str, min_length: int) -> str | None:
    """A Chinese message saying what is wrong with a new password, or None."""
    if len(password) < min_length:
        return f"密码至少需要 {min_length} 个字符"
    if len(password) > 256:
        return "密码不能超过 256 个字符"
    kinds = sum(
        [
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        ]
    )
    if kinds < 2:
        return "密码需包含大写字母、小写字母、数字、符号中的至少两类"
    return None


def new_password_hash(password: str, min_length: int) -> str:
    """The hash of a new password that passes the strength rule (422 ``weak_password``)."""
    problem = password_problem(password, min_length)
    if problem:
        raise InvalidError(problem, code="weak_password")
    return hash_password(password)


def apply_password(user: User, password_hash: str, *, temporary: bool) -> None:
    """Store a new password's hash. ``temporary``: someone else chose it (an administrator
    creating the account or resetting it), so its holder must replace it before doing
    anything else."""
    user.password_hash = password_hash
    user.password_changed_at = utcnow()
    user.must_change_password = temporary


def set_password(user: User, password: str, min_length: int, *, temporary: bool) -> None:
    """:func:`new_password_hash` then :func:`apply_password`."""
    apply_password(user, new_password_hash(password, min_length), temporary=temporary)
