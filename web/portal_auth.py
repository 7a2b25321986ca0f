"""The portal session, as handlers use it (separate from staff sessions).

The whole API for portal handlers::

    me = await portal_principal(ctx)   # 401 without a live portal session; on POST/PUT/
                                       # PATCH/DELETE also 403 without the X-Portal-CSRF header
    me.identity_id, me.name, me.id_number, me.phone

Declare portal routes with ``roles=None`` (no staff session) and call this first; which cases
the petitioner may see is :func:`scheduler.portal.cases.my_case` (checked per request).
The cookie ``vr_portal`` is an opaque token (only its hash is stored), HttpOnly,
SameSite=Strict and as short-lived as ``portal_session_minutes``.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from config.errors import AuthenticationError, PermissionDeniedError
from config.settings import Settings
from scheduler.portal.identity import PortalPrincipal, session_principal
from web.routes import SAFE_METHODS, Context

PORTAL_COOKIE = "vr_portal"
PORTAL_CSRF_HEADER = "X-Portal-CSRF"

__all__ = [
    "PORTAL_COOKIE",
    "PORTAL_CSRF_HEADER",
    "PortalPrincipal",
    "clear_portal_cookie",
    "portal_principal",
    "set_portal_cookie",
]


async def portal_principal(ctx: Context) -> PortalPrincipal:
    """The petitioner behind this request; raises 401 (no session) or 403 (CSRF)."""
    me = await session_principal(ctx.db, ctx.request.cookies.get(PORTAL_COOKIE))
    if me is None:
        raise AuthenticationError("请先验证身份（姓名、身份证号和手机验证码）", code="portal_login")
    if ctx.request.method not in SAFE_METHODS:
        supplied = ctx.request.headers.get(PORTAL_CSRF_HEADER, "")
        if not supplied or not hmac.compare_digest(supplied, me.csrf_token):
            raise PermissionDeniedError("页面已过期，请刷新后重试", code="csrf_failed")
    return me


def set_portal_cookie(response: web.StreamResponse, settings: Settings, token: str) -> None:
    response.set_cookie(
        PORTAL_COOKIE,
        token,
        max_age=settings.portal_session_minutes * 60,
        httponly=True,
        samesite="Strict",
        secure=settings.cookie_secure,
        path="/",
    )


def clear_portal_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(PORTAL_COOKIE, path="/")
