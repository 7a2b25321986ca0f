"""The petitioner portal's API (``/api/v1/portal/…``): identity by SMS code, then the
petitioner's own cases, online petitions and requests for a video visit.

Every route is declared without staff roles and starts with
:func:`web.portal_auth.portal_principal` (except asking for a code and signing in).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from pydantic import Field
from sqlalchemy import select

from config.audit import record_audit
from config.errors import InvalidError, NotFoundError
from config.privacy import mask_id_number, mask_phone, mask_text
from config.settings import Settings
from config.vocabulary import label, label_of
from scheduler.cases import service as cases
from scheduler.cases.models import Material
from scheduler.cases.words import CaseCategory
from scheduler.models import Court, Role
from scheduler.portal import identity, sms
from scheduler.portal import service as portal
from scheduler.portal.models import SmsState, VisitRequestState
from scheduler.portal.models import VisitRequest as VisitRequestRow
from scheduler.portal.sms import deliver, gateway_for
from web.errors import app_error_response
from web.handlers.cases import (
    UnsupportedMaterialError,
    Upload,
    stream_material,
)
from web.handlers.visits import plan_visit
from web.keys import DB, SECRET
from web.portal_auth import (
    clear_portal_cookie,
    portal_principal,
    set_portal_cookie,
)
from web.routes import Context, api, json_response
from web.scheduling_schemas import VisitIn
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
    material_max_mb: int


def _me(me: identity.PortalPrincipal, settings: Settings) -> PortalMe:
    return PortalMe(
        name=me.name,
        id_number=mask_id_number(me.id_number),
        phone=mask_phone(me.phone),
        csrf_token=me.csrf_token,
        expires_at=me.expires_at,
        material_max_mb=settings.case_material_max_mb,
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
    response = json_response(_me(me, ctx.settings))
    set_portal_cookie(response, ctx.settings, token)
    return response


@api.route(
    "GET", "/portal/me", summary="The signed-in petitioner", tag=TAG, roles=None, answer=PortalMe
)
async def who_am_i(ctx: Context) -> PortalMe:
    """401 without a portal session."""
    return _me(await portal_principal(ctx), ctx.settings)


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


# ---------------------------------------------------------------- the petitioner's cases


class CourtChoice(Answer):
    id: int
    name: str


class CaseRow(Answer):
    id: int
    number: str
    category: str
    state: str
    state_name: str
    node_name: str
    due_at: datetime | None
    court_name: str
    summary: str
    created_at: datetime


class StepOut(Answer):
    at: datetime
    kind: str
    title: str
    text: str
    court: str


class MaterialRow(Answer):
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime


class ResultOut(Answer):
    title: str
    ground: str
    text: str


class RequestOut(Answer):
    id: int
    case_id: int
    case_number: str
    court_name: str
    preferred: str
    note: str
    state: VisitRequestState
    state_name: str
    created_at: datetime
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    room_name: str = ""
    visit_state: str = ""


class CaseDetail(CaseRow):
    handler_court_name: str
    original_court: str
    steps: list[StepOut]
    materials: list[MaterialRow]
    result: ResultOut | None
    requests: list[RequestOut]


def _row(case: Any, court: str) -> CaseRow:
    return CaseRow(
        id=case.id,
        number=case.number,
        category=label_of("case_category", case.category),
        state=case.state.value,
        state_name=label(case.state),
        node_name=label(case.node) if case.node else "",
        due_at=case.due_at,
        court_name=court,
        summary=mask_text(case.summary),  # a counter's record may hold others' numbers
        created_at=case.created_at,
    )


def _request(v: portal.RequestView) -> RequestOut:
    r = v.request
    return RequestOut(
        id=r.id,
        case_id=r.petition_id,
        case_number=v.case_number,
        court_name=v.court,
        preferred=r.preferred,
        note=r.note,
        state=r.state,
        state_name=label(r.state),
        created_at=r.created_at,
        starts_at=v.visit.starts_at if v.visit else None,
        ends_at=v.visit.ends_at if v.visit else None,
        room_name=v.room,
        visit_state=label(v.visit.state) if v.visit else "",
    )


@api.route(
    "GET",
    "/portal/courts",
    summary="The basic courts a petitioner may choose",
    tag=TAG,
    roles=None,
    answer=list[CourtChoice],
)
async def portal_courts(ctx: Context) -> list[CourtChoice]:
    await portal_principal(ctx)
    return [CourtChoice(id=c.id, name=c.name) for c in await portal.basic_courts(ctx.db)]


@api.route(
    "GET",
    "/portal/cases",
    summary="The signed-in petitioner's cases",
    tag=TAG,
    roles=None,
    answer=list[CaseRow],
)
async def portal_cases(ctx: Context) -> list[CaseRow]:
    """The cases where the petitioner (same resident ID number, name and phone) is the lead
    or a further petitioner."""
    me = await portal_principal(ctx)
    rows = await portal.my_cases(ctx.db, me)
    ids = {c.court_id for c in rows}
    names = dict(
        (await ctx.db.execute(select(Court.id, Court.name).where(Court.id.in_(ids)))).all()
    )
    return [_row(c, names.get(c.court_id, "")) for c in rows]


@api.route(
    "GET",
    r"/portal/cases/{case_id:\d+}",
    summary="One of the petitioner's cases: progress in plain words and the result",
    tag=TAG,
    roles=None,
    answer=CaseDetail,
)
async def portal_case(ctx: Context) -> CaseDetail:
    """Internal entries (reminders, overdue warnings, supervision, corrections) are left
    out, staff accounts are never named, ID and phone numbers in texts are masked."""
    me = await portal_principal(ctx)
    view = await portal.case_view(ctx.db, me, ctx.path_id("case_id"))
    base = _row(view.case, view.court)
    return CaseDetail(
        **base.model_dump(),
        handler_court_name=view.handler_court,
        original_court=view.case.original_court,
        steps=[StepOut.model_validate(s, from_attributes=True) for s in view.steps],
        materials=[MaterialRow.model_validate(m) for m in view.materials],
        result=ResultOut.model_validate(view.result, from_attributes=True) if view.result else None,
        requests=[_request(r) for r in view.requests],
    )


# ---------------------------------------------------------------- submitting online

CHUNK = 64 * 1024
TEXT_LIMIT = 64 * 1024  # one form field, before the service's own length rules


@dataclass
class Received:
    """The online petition form: its fields, and its files streamed to temporary files in
    the materials folder and hashed on the way (the staff upload's rule,
    :func:`web.handlers.cases.stream_material`). Kept under their hash only once the case is
    stored; removed otherwise (stored whole or not at all)."""

    folder: Path
    fields: dict[str, list[str]] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)

    def materials(self) -> list[portal.MaterialIn]:
        return [
            portal.MaterialIn(u.filename, u.content_type, u.size, u.sha256, u.name)
            for u in self.uploads
        ]

    async def keep(self) -> None:
        for upload in self.uploads:
            await upload.keep()

    def discard(self) -> None:
        for upload in self.uploads:
            upload.discard()

    def one(self, name: str) -> str:
        return (self.fields.get(name) or [""])[0]


async def _text_field(part: BodyPartReader) -> str:
    data = b""
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > TEXT_LIMIT:
            raise InvalidError("填写的内容过长，请精简后再提交", code="too_long")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidError("填写的内容不是有效的文字", code="invalid_text") from None


async def _receive(request: web.Request, folder: Path, limit: int) -> Received:
    if not request.content_type.startswith("multipart/form-data"):
        raise UnsupportedMaterialError(
            "申诉须以表单提交（multipart/form-data）", code="not_multipart"
        )
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    got = Received(folder=folder)
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "materials" and not part.filename:
                await part.release()  # an empty file input (browsers send a nameless part)
            elif part.name == "materials":
                if len(got.uploads) >= portal.MAX_MATERIALS:
                    raise InvalidError(
                        f"一次最多上传 {portal.MAX_MATERIALS} 份材料", code="too_many_materials"
                    )
                upload = Upload(folder=folder, temp=folder / f".upload-{uuid.uuid4().hex}.part")
                got.uploads.append(upload)
                await stream_material(part, upload, limit)
            elif part.name in FORM_FIELDS:
                got.fields.setdefault(part.name, []).append(await _text_field(part))
            else:
                await part.release()
    except BaseException:
        got.discard()
        raise
    return got


FORM_FIELDS = frozenset({"court_id", "category", "summary", "original_numbers", "original_court"})


class Submitted(Answer):
    case_id: int
    number: str
    linked: bool
    materials: list[MaterialRow]


@api.route(
    "POST",
    "/portal/cases",
    summary="Submit a petition online (multipart: fields and ``materials`` files)",
    tag=TAG,
    roles=None,
    answer=Submitted,
    status=201,
    errors=(409, 413, 415, 422),
    split=True,
)
async def submit_petition(ctx: Context) -> Submitted:
    """Fields ``court_id`` (a basic court), ``category``, ``summary``, ``original_numbers``
    (one per line), ``original_court``; files ``materials`` (photos or PDFs, by content, up to
    ``case_material_max_mb`` each, at most 10), hashed on upload. Becomes a contact of channel
    网上申诉 at the chosen court (a new case, or linked to the petitioner's case about the
    same original case number). Nothing is kept unless all of it is."""
    me = await portal_principal(ctx)
    got = await _receive(
        ctx.request,
        cases.materials_dir(ctx.settings),
        ctx.settings.case_material_max_mb * 1024 * 1024,
    )
    try:
        raw_court = got.one("court_id").strip()
        if not raw_court.isdigit() or not 0 < int(raw_court) < 2**31:
            raise InvalidError(
                "请选择受理法院", code="missing_field", details={"fields": ["受理法院"]}
            )
        raw_category = got.one("category").strip()
        category = CaseCategory(raw_category) if raw_category in CaseCategory.__members__ else None
        numbers = [
            line for value in got.fields.get("original_numbers", []) for line in value.splitlines()
        ]
        async with ctx.write() as db:
            done = await portal.submit(
                db,
                me,
                court_id=int(raw_court),
                category=category,
                summary=got.one("summary"),
                original_numbers=numbers,
                original_court=got.one("original_court"),
                materials=got.materials(),
                settings=ctx.settings,
                address=ctx.address,
            )
            await got.keep()
            stored = (
                await db.scalars(
                    select(Material)
                    .where(Material.contact_id == done.contact.id)
                    .order_by(Material.id)
                )
            ).all()
            out = Submitted(
                case_id=done.case.id,
                number=done.case.number,
                linked=done.linked,
                materials=[MaterialRow.model_validate(m) for m in stored],
            )
    except BaseException:
        got.discard()
        raise
    return out


# ---------------------------------------------------------------- video visits


class VisitRequestIn(Body):
    preferred: str = Field("", max_length=200)
    note: str = Field("", max_length=2000)


class VisitCodeOut(Answer):
    code: str
    expires_at: datetime
    join_url: str
    starts_at: datetime


@api.route(
    "POST",
    r"/portal/cases/{case_id:\d+}/visit-requests",
    summary="Ask for a video visit about one's case",
    tag=TAG,
    roles=None,
    guard=portal_principal,
    body=VisitRequestIn,
    answer=RequestOut,
    status=201,
    errors=(409,),
)
async def ask_visit(ctx: Context) -> RequestOut:
    """At the basic court that registered the case (its reception room); the court's
    operators see it and confirm it by booking a slot."""
    me = await portal_principal(ctx)
    b: VisitRequestIn = ctx.body
    row = await portal.request_visit(
        ctx.db, me, ctx.path_id("case_id"), preferred=b.preferred, note=b.note
    )
    views = [v for v in await portal.my_requests(ctx.db, me) if v.request.id == row.id]
    return _request(views[0])


@api.route(
    "GET",
    "/portal/visit-requests",
    summary="The petitioner's visit requests and the booked times",
    tag=TAG,
    roles=None,
    answer=list[RequestOut],
)
async def my_visit_requests(ctx: Context) -> list[RequestOut]:
    me = await portal_principal(ctx)
    return [_request(v) for v in await portal.my_requests(ctx.db, me)]


@api.route(
    "POST",
    r"/portal/visit-requests/{request_id:\d+}/code",
    summary="The petitioner's one-time visit code, on the day of the visit",
    tag=TAG,
    roles=None,
    answer=VisitCodeOut,
    status=201,
    errors=(409,),
)
async def portal_visit_code(ctx: Context) -> VisitCodeOut:
    """Shown once; a new one revokes the earlier unused ones of the visit."""
    me = await portal_principal(ctx)
    issued, visit = await portal.visit_code(
        ctx.db, ctx.settings, ctx.request.app[SECRET], me, ctx.path_id("request_id")
    )
    record_audit(
        ctx.db,
        action="visit.code_issued",
        actor_type="petitioner",
        actor_name="网上申诉",
        target_type="visit",
        target_id=visit.id,
        address=ctx.address,
        court_id=visit.court_id,
        detail={"role": "petitioner", "channel": "portal"},
    )
    assert visit.starts_at is not None
    return VisitCodeOut(
        code=issued.code,
        expires_at=issued.record.expires_at,
        join_url=f"/j/{issued.code}",
        starts_at=visit.starts_at,
    )


# ---------------------------------------------------------------- the court's side


class CourtRequestOut(RequestOut):
    petition_id: int


@api.route(
    "GET",
    "/visit-requests",
    summary="Pending online requests for a video visit at the operator's court",
    tag=TAG,
    roles=OUTBOX_ROLES,
    answer=list[CourtRequestOut],
)
async def court_visit_requests(ctx: Context) -> list[CourtRequestOut]:
    rows = await portal.court_requests(ctx.db, ctx.me.actor())
    return [
        CourtRequestOut(**_request(v).model_dump(), petition_id=v.request.petition_id) for v in rows
    ]


@api.route(
    "POST",
    r"/visit-requests/{request_id:\d+}/book",
    summary="Confirm an online request by booking its visit",
    tag=TAG,
    roles=OUTBOX_ROLES,
    body=VisitIn,
    answer=RequestOut,
    errors=(409,),
    split=True,
)
async def book_visit_request(ctx: Context) -> RequestOut:
    """The booking flow's checks and locks (409 ``double_booking``), for the request's case;
    the petitioner then sees the time on the portal and gets an SMS."""
    b: VisitIn = ctx.body
    actor = ctx.me.actor()
    request_id = ctx.path_id("request_id")
    await portal.pending_request(ctx.db, actor, request_id)
    plan = await plan_visit(ctx, b)
    async with ctx.write() as db:
        _, message = await portal.book_request(db, actor, ctx.settings, request_id, plan)
        message_id = message.id if message else None
    await ctx.fresh()
    if message_id is not None:
        app, settings = ctx.request.app, ctx.settings

        async def send() -> None:
            await sms.deliver(app[DB], sms.gateway_for(settings), [message_id])

        ctx.after_commit(send)
    row = await ctx.db.get(VisitRequestRow, request_id)
    assert row is not None
    views = await portal.request_views(ctx.db, [row])
    return _request(views[0])
