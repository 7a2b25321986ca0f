"""Errors that any package may raise; the web layer turns them into JSON answers."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """A refusal with a machine-readable code, a human message and an HTTP status."""

    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, details: Any | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class NotFoundError(AppError):
    """The record does not exist, or the caller may not know that it exists."""

    status = 404
    code = "not_found"


class ConflictError(AppError):
    """The change conflicts with a stored record (duplicate, booked, in use)."""

    status = 409
    code = "conflict"


class InvalidError(AppError):
    """Well-formed input that breaks a rule of the domain."""

    status = 422
    code = "invalid"


class PermissionDeniedError(AppError):
    """The caller is known but may not do this."""

    status = 403
    code = "forbidden"


class AuthenticationError(AppError):
    """No valid session or credentials."""

    status = 401
    code = "unauthenticated"


class RateLimitedError(AppError):
    """Too many attempts; retry after ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
