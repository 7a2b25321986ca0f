"""The petitioner portal's API (``/api/v1/portal/…``): identity by SMS code, then the
petitioner's own cases, online petitions and requests for a video visit.

Every route is declared without staff roles and starts with
:func:`web.portal_auth.portal_principal` (except asking for a code and signing in).
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import Field

from config.audit import record_audit
from config.errors import NotFoundError
from config.privacy import mask_id_number, mask_phone
from scheduler.models import Role
from scheduler.portal import identity, sms
from scheduler.portal.models import SmsState
from scheduler.portal.sms import deliver, gateway_for
from web.errors import app_error_response
from web.keys import DB, SECRET
from web.portal_auth import (
    clear_portal_cookie,
    portal_principal,
    set_portal_cookie,
)
from web.routes import Context, api, to_json
from web.schemas import Answer, Body, Ok

TAG = "portal"


class IdentityBody(Body):
    name: str = Field(max_length=200)
    id_number: str = Field(max_length=64)
    phone: str = Field(max_length=32)


class SignInBody(IdentityBody):
    code: str = Field(max_length=16)


class CodeSent(Answer):
    phone: str  # masked
    expires_minutes: int


class PortalMe(Answer):
    name: str
    id_number: str  # masked
    phone: str  # masked
    csrf_token: str
    expires_at: datetime


def _me(me: identity.PortalPrincipal) -> PortalMe:
    return PortalMe(
        name=me.name,
        id_number=mask_id_number(me.id_number),
        phone=mask_phone(me.phone),
        csrf_token=me.csrf_token,
        expires_at=me.expires_at,
    )


@api.route(
    "POST",
    "/portal/code",
    summary="Send a one-time SMS code to a petitioner's mobile phone",
    tag=TAG,
    roles=None,
    body=IdentityBody,
    answer=CodeSent,
    status=201,
    errors=(422, 429),
)
async def send_code(ctx: Context) -> CodeSent:
    """Checks the name, the resident ID number's checksum and that the phone is a mainland
    mobile number; limits codes per phone and per address per hour (429). The code goes
    through the SMS gateway (the outbox by default), expires in ``portal_code_ttl_minutes``."""
    b: IdentityBody = ctx.body
    who = identity.claim(b.name, b.id_number, b.phone)
    message = await identity.request_code(
        ctx.db, ctx.settings, ctx.request.app[SECRET], who, ctx.address
    )
    app, settings, message_id = ctx.request.app, ctx.settings, message.id

    async def send() -> None:
        await deliver(app[DB], gateway_for(settings), [message_id])

    ctx.after_commit(send)
    return CodeSent(phone=mask_phone(who.phone), expires_minutes=settings.portal_code_ttl_minutes)


@api.route(
    "POST",
    "/portal/session",
    summary="Sign in to the portal with the SMS code",
    tag=TAG,
    roles=None,
    body=SignInBody,
    answer=PortalMe,
    errors=(401, 422, 429),
)
async def sign_in(ctx: Context) -> web.StreamResponse:
    """Sets the portal cookie (HttpOnly, SameSite=Strict); the answer carries the token for
    the ``X-Portal-CSRF`` header. A wrong code counts; after ``portal_code_max_failures`` the
    code is locked and a new one must be asked for."""
    b: SignInBody = ctx.body
    who = identity.claim(b.name, b.id_number, b.phone)
    try:
        token, _ = await identity.sign_in(
            ctx.db, ctx.settings, ctx.request.app[SECRET], who, b.code, ctx.address
        )
    except identity.CodeRefused as exc:
        if exc.code == "code_locked":
            exc.status = 429
        return app_error_response(exc)  # answered, not raised: the failure count is kept
    me = await identity.session_principal(ctx.db, token)
    assert me is not None
    response = web.json_response(to_json(_me(me)))
    set_portal_cookie(response, ctx.settings, token)
    return response


@api.route(
    "GET", "/portal/me", summary="The signed-in petitioner", tag=TAG, roles=None, answer=PortalMe
)
async def who_am_i(ctx: Context) -> PortalMe:
    """401 without a portal session."""
    return _me(await portal_principal(ctx))


@api.route("DELETE", "/portal/session", summary="Sign out", tag=TAG, roles=None, answer=Ok)
async def sign_out(ctx: Context) -> web.StreamResponse:
    me = await portal_principal(ctx)
    await identity.sign_out(ctx.db, me.session_id)
    response = web.json_response({"ok": True})
    clear_portal_cookie(response)
    return response


# ---------------------------------------------------------------- the SMS outbox (operators)


class SmsOut(Answer):
    id: int
    phone: str
    text: str
    purpose: str
    state: SmsState
    attempts: int
    error: str
    created_at: datetime
    sent_at: datetime | None


OUTBOX_ROLES = frozenset({Role.operator, Role.admin})


@api.route(
    "GET",
    "/sms-outbox",
    summary="The SMS outbox: every outgoing message and its state",
    tag=TAG,
    roles=OUTBOX_ROLES,
    answer=list[SmsOut],
)
async def sms_outbox(ctx: Context) -> list[SmsOut]:
    """Newest first: the court's messages and the portal's login codes (queued until relayed
    when no SMS platform is configured, sent, or failed with the platform's error)."""
    rows = await sms.outbox(ctx.db, None if ctx.me.actor().is_admin else ctx.me.court_id)
    return [SmsOut.model_validate(r) for r in rows]


@api.route(
    "POST",
    r"/sms-outbox/{message_id:\d+}/sent",
    summary="Mark an outbox message as relayed by hand",
    tag=TAG,
    roles=OUTBOX_ROLES,
    answer=SmsOut,
    errors=(409,),
)
async def sms_mark_sent(ctx: Context) -> SmsOut:
    row = await sms.mark_sent(ctx.db, ctx.path_id("message_id"))
    if not ctx.me.actor().is_admin and row.court_id not in (None, ctx.me.court_id):
        raise NotFoundError("短信不存在")
    record_audit(
        ctx.db,
        action="sms.marked_sent",
        actor_id=ctx.me.user_id,
        actor_name=ctx.me.username,
        target_type="sms",
        target_id=row.id,
        address=ctx.address,
        court_id=ctx.me.court_id,
        detail={"phone": mask_phone(row.phone)},
    )
    return SmsOut.model_validate(row)
