"""Petition cases (信访件): the list, registration, a case's page, its actions, materials,
the supervising court's board and the deadline rules. Every rule is in
scheduler/cases (rules.py says who may do what; service.py does it)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import BodyPartReader, web
from pydantic import BaseModel

from config.audit import record_audit
from config.db import utcnow
from config.errors import AppError, InvalidError, NotFoundError
from scheduler.booking import hosting_court
from scheduler.cases import service as cases
from scheduler.cases.rules import HANDLERS, NO_VISITS, CaseAction
from scheduler.cases.words import Node
from scheduler.models import Role
from scheduler.scope import Actor
from web.case_schemas import (
    AssignIn,
    BoardCourt,
    BoardOut,
    BoardQuery,
    CaseDetail,
    CaseQuery,
    CaseRow,
    ContactIn,
    ContactOut,
    CorrectIn,
    CourtBrief,
    DuplicateOut,
    DuplicateQuery,
    EmptyIn,
    FollowUpIn,
    JudicialAidIn,
    MaterialOut,
    Named,
    ProgressIn,
    Registered,
    RegisterIn,
    RemarkIn,
    ReopenIn,
    ReportIn,
    ResolveIn,
    ReturnIn,
    ReviewIn,
    RuleIn,
    RuleOut,
    ScheduleFollowUpIn,
    SetOwnerIn,
    StaffBrief,
    StaffQuery,
    TerminateIn,
    TriageIn,
)
from web.keys import DB
from web.routes import ALL_STAFF, Context, api, json_response
from web.schemas import Page, page_of

TAG = "cases"
CASE_ID = r"{case_id:\d+}"


async def _detail(ctx: Context, case_id: int) -> CaseDetail:
    actor = ctx.me.actor()
    t = await cases.timeline(ctx.db, actor, case_id)
    bookable = t.case.state not in NO_VISITS and hosting_court(actor, t.case) is not None
    return CaseDetail.of(
        t,
        t.shown,
        cases.actions_for(actor, t.case, t.standing),
        utcnow(),
        ctx.settings.tz,
        may_book=bookable,
    )


# ---------------------------------------------------------------- list, register, detail


@api.route(
    "GET",
    "/cases",
    summary="Cases the caller's court may see (its own, assigned or supervised)",
    tag=TAG,
    roles=ALL_STAFF,
    query=CaseQuery,
    answer=Page[CaseRow],
)
async def list_cases(ctx: Context) -> Page[CaseRow]:
    """Filters: channel (of any contact), category, node, state, overdue, responsible person,
    挂牌督办, ``mine`` (cases the caller leads), ``q`` (registration or original number; the
    latter also typed without its year or 号)."""
    q: CaseQuery = ctx.query
    page = await cases.list_cases(
        ctx.db,
        ctx.me.actor(),
        cases.CaseFilter(
            channel=q.channel,
            category=q.category,
            node=q.node,
            state=q.state,
            overdue=q.overdue,
            responsible_id=q.responsible_id,
            flagged=q.flagged,
            query=q.q,
            led_by_me=q.mine,
        ),
        limit=q.limit,
        offset=q.offset,
    )
    names = await cases.names_for(ctx.db, page.items)
    now = utcnow()
    return page_of(Page[CaseRow], page.items, page.total, q, lambda c: CaseRow.of(c, names, now))


@api.route(
    "POST",
    "/cases",
    summary="Register a contact: a new case (201), or a repeat on the case already registered "
    "for the same petitioner and original case number (200, linked)",
    tag=TAG,
    roles=HANDLERS,
    body=RegisterIn,
    answer=Registered,
    status=201,
    errors=(409,),
)
async def register_case(ctx: Context) -> Registered | web.Response:
    """An incomplete record is refused (422 ``incomplete_record``, ``details.fields`` names
    the missing fields); two clerks registering the same matter at once: one case, the other
    answer is linked to it or 409 ``duplicate_case``. A contact linked to a case the caller's
    court may not see (another branch's) answers only the contact and ``other_court``: its
    materials go to ``POST /case-contacts/{contact_id}/materials``."""
    b: RegisterIn = ctx.body
    actor = ctx.me.actor()
    done = await cases.register(
        ctx.db,
        actor,
        cases.Registration(
            channel=b.channel,
            petitioners=[
                cases.PersonIn(p.name, p.id_type, p.id_number, p.phone) for p in b.petitioners
            ],
            category=b.category,
            summary=b.summary,
            original_numbers=list(b.original_numbers),
            original_court=b.original_court,
            people_count=b.people_count,
            occurred_at=b.occurred_at,
            contact_summary=b.contact_summary,
        ),
        settings=ctx.settings,
    )
    if done.linked:
        try:
            await cases.get_case(ctx.db, actor, done.case.id)
        except NotFoundError:  # another branch's case: as /cases/duplicates, nothing of it
            return json_response(
                Registered(case=None, contact_id=done.contact.id, linked=True, other_court=True)
            )
    names = await cases.names_for(ctx.db, [done.case])
    out = Registered(
        case=CaseRow.of(done.case, names, utcnow()),
        contact_id=done.contact.id,
        linked=done.linked,
    )
    if done.linked:
        return json_response(out)
    return out


@api.route(
    "GET",
    "/cases/duplicates",
    summary="The case already registered for this petitioner and original case number",
    tag=TAG,
    roles=HANDLERS,
    query=DuplicateQuery,
    answer=DuplicateOut,
)
async def find_duplicate(ctx: Context) -> DuplicateOut:
    """``numbers``: original case numbers separated by commas. A case the caller's court may
    not see is not shown (registering still links to it)."""
    q: DuplicateQuery = ctx.query
    numbers = [n for n in q.numbers.replace("，", ",").split(",") if n.strip()]
    found = await cases.find_duplicate(ctx.db, q.id_type, q.id_number, numbers)
    if found is None:
        return DuplicateOut(case=None)
    try:
        await cases.get_case(ctx.db, ctx.me.actor(), found.id)
    except NotFoundError:
        return DuplicateOut(case=None)
    names = await cases.names_for(ctx.db, [found])
    return DuplicateOut(case=CaseRow.of(found, names, utcnow()))


@api.route(
    "GET",
    "/cases/board",
    summary="The supervising court's board: open cases handed below it, by court",
    tag=TAG,
    roles=ALL_STAFF,
    query=BoardQuery,
    answer=BoardOut,
)
async def case_board(ctx: Context) -> BoardOut:
    """Every court's totals and the cases due first (``court_id``: that court's cases, all
    of them); each court's cases come overdue first (most days first)."""
    q: BoardQuery = ctx.query
    rows = await cases.board(ctx.db, ctx.me.actor(), q.court_id)
    names = rows.names
    now = utcnow()
    courts = {
        t.court_id: BoardCourt(
            court=Named(id=t.court_id, name=t.name), total=t.cases, overdue=t.overdue, cases=[]
        )
        for t in rows.totals
    }
    for r in rows:
        court_id = r.case.handler_court_id or r.case.court_id
        if court_id in courts:
            courts[court_id].cases.append(CaseRow.of(r.case, names, now))
    return BoardOut(
        courts=list(courts.values()),
        total=sum(t.cases for t in rows.totals),
        overdue=sum(t.overdue for t in rows.totals),
    )


@api.route(
    "GET",
    "/cases/courts-below",
    summary="Courts below the caller's court (targets of 交办)",
    tag=TAG,
    roles=ALL_STAFF,
    answer=list[CourtBrief],
)
async def courts_below(ctx: Context) -> list[CourtBrief]:
    return [CourtBrief.of(c) for c in await cases.courts_below(ctx.db, ctx.me.actor())]


@api.route(
    "GET",
    "/cases/staff",
    summary="Case handling staff of the caller's court or a court below it",
    tag=TAG,
    roles=ALL_STAFF,
    query=StaffQuery,
    answer=list[StaffBrief],
)
async def case_staff(ctx: Context) -> list[StaffBrief]:
    """Responsible persons (首办责任人) and meeting invitees; another branch's court: 404."""
    q: StaffQuery = ctx.query
    return [StaffBrief.of(u) for u in await cases.staff_of(ctx.db, ctx.me.actor(), q.court_id)]


@api.route(
    "GET",
    f"/cases/{CASE_ID}",
    summary="One case: its record, what the caller may do now, and its whole timeline",
    tag=TAG,
    roles=ALL_STAFF,
    answer=CaseDetail,
)
async def get_case(ctx: Context) -> CaseDetail:
    """A case the caller's court may not see answers 404, as if it did not exist."""
    return await _detail(ctx, ctx.path_id("case_id"))


@api.route(
    "POST",
    f"/cases/{CASE_ID}/contacts",
    summary="A further contact (letter, visit, call) on the case",
    tag=TAG,
    roles=HANDLERS,
    body=ContactIn,
    answer=ContactOut,
    status=201,
    errors=(409,),
)
async def add_contact(ctx: Context) -> ContactOut:
    b: ContactIn = ctx.body
    case_id = ctx.path_id("case_id")
    contact = await cases.add_contact(
        ctx.db,
        ctx.me.actor(),
        case_id,
        channel=b.channel,
        occurred_at=b.occurred_at,
        summary=b.summary,
        people_count=b.people_count,
    )
    t = await cases.timeline(ctx.db, ctx.me.actor(), case_id)
    return ContactOut.of(contact, t.names)


# ---------------------------------------------------------------- actions

ActionFn = Callable[[Context, Actor, int, Any], Awaitable[object]]


def _action(name: str, body: type[BaseModel], summary: str) -> Callable[[ActionFn], ActionFn]:
    """Register ``POST /cases/{id}/actions/<name>``: run the action, answer the case."""

    def register(act: ActionFn) -> ActionFn:
        async def handler(ctx: Context) -> CaseDetail:
            case_id = ctx.path_id("case_id")
            await act(ctx, ctx.me.actor(), case_id, ctx.body)
            return await _detail(ctx, case_id)

        handler.__name__ = f"case_action_{name}"
        handler.__doc__ = act.__doc__
        api.route(
            "POST",
            f"/cases/{CASE_ID}/actions/{name}",
            summary=summary,
            tag=TAG,
            roles=HANDLERS,
            body=body,
            answer=CaseDetail,
            errors=(409,),
        )(handler)
        return act

    return register


@_action("triage", TriageIn, "分流: a litigation or a petition matter")
async def _triage(ctx: Context, actor: Actor, case_id: int, b: TriageIn) -> object:
    """A litigation matter names its procedure and the guidance given; a petition matter its
    handling mode and responsible person (首办责任)."""
    return await cases.triage(
        ctx.db,
        actor,
        case_id,
        track=b.track,
        procedure=b.procedure,
        guidance=b.guidance,
        mode=b.mode,
        responsible_id=b.responsible_id,
        settings=ctx.settings,
    )


@_action("set_owner", SetOwnerIn, "Name the responsible person (首办责任人)")
async def _set_owner(ctx: Context, actor: Actor, case_id: int, b: SetOwnerIn) -> object:
    """A case has one responsible person: replacing them needs a reason (409 ``second_owner``)."""
    return await cases.set_owner(
        ctx.db, actor, case_id, responsible_id=b.responsible_id, reason=b.reason
    )


@_action("assign", AssignIn, "交办: hand the case to a court below with a feedback deadline")
async def _assign(ctx: Context, actor: Actor, case_id: int, b: AssignIn) -> object:
    """Only to a court below the caller's (422 ``not_below``); a deadline in the past is
    refused (422 ``past_deadline``)."""
    return await cases.assign(
        ctx.db,
        actor,
        case_id,
        to_court_id=b.to_court_id,
        deadline=b.deadline,
        settings=ctx.settings,
        instructions=b.instructions,
    )


@_action("progress", ProgressIn, "Report progress (进展)")
async def _progress(ctx: Context, actor: Actor, case_id: int, b: ProgressIn) -> object:
    return await cases.progress(ctx.db, actor, case_id, text=b.text)


@_action("report", ReportIn, "Report the result to the assigning court (反馈)")
async def _report(ctx: Context, actor: Actor, case_id: int, b: ReportIn) -> object:
    return await cases.report(ctx.db, actor, case_id, result=b.result, settings=ctx.settings)


@_action("accept", RemarkIn, "The assigning court accepts the feedback")
async def _accept(ctx: Context, actor: Actor, case_id: int, b: RemarkIn) -> object:
    return await cases.review_feedback(
        ctx.db, actor, case_id, accept=True, settings=ctx.settings, remark=b.remark
    )


@_action("return", ReturnIn, "The assigning court returns the feedback (退回重办)")
async def _return(ctx: Context, actor: Actor, case_id: int, b: ReturnIn) -> object:
    """With a reason and a new deadline (by default the feedback rule's)."""
    return await cases.review_feedback(
        ctx.db,
        actor,
        case_id,
        accept=False,
        settings=ctx.settings,
        remark=b.remark,
        deadline=b.deadline,
    )


@_action("flag", RemarkIn, "挂牌督办 (a court above the handling court)")
async def _flag(ctx: Context, actor: Actor, case_id: int, b: RemarkIn) -> object:
    return await cases.flag(ctx.db, actor, case_id, on=True, remark=b.remark)


@_action("unflag", RemarkIn, "Lift 挂牌督办")
async def _unflag(ctx: Context, actor: Actor, case_id: int, b: RemarkIn) -> object:
    return await cases.flag(ctx.db, actor, case_id, on=False, remark=b.remark)


@_action("take_lead", EmptyIn, "领导包案: a court leader takes the case")
async def _take_lead(ctx: Context, actor: Actor, case_id: int, b: EmptyIn) -> object:
    return await cases.take_lead(ctx.db, actor, case_id)


@_action("judicial_aid", JudicialAidIn, "司法救助: the application and its result")
async def _judicial_aid(ctx: Context, actor: Actor, case_id: int, b: JudicialAidIn) -> object:
    return await cases.judicial_aid(
        ctx.db, actor, case_id, stage=b.stage, amount_yuan=b.amount_yuan, remark=b.remark
    )


@_action("resolve", ResolveIn, "化解 with its grounds (a 回访 is scheduled)")
async def _resolve(ctx: Context, actor: Actor, case_id: int, b: ResolveIn) -> object:
    """Without grounds: 422 ``missing_grounds``."""
    return await cases.resolve(
        ctx.db, actor, case_id, ground=b.ground, settings=ctx.settings, remark=b.remark
    )


@_action("terminate", TerminateIn, "信访终结 (a high or the supreme court only)")
async def _terminate(ctx: Context, actor: Actor, case_id: int, b: TerminateIn) -> object:
    """With its grounds and approval; a court below high level: 403."""
    return await cases.terminate(
        ctx.db,
        actor,
        case_id,
        ground=b.ground,
        approval=b.approval,
        remark=b.remark,
        settings=ctx.settings,
    )


@_action("schedule_followup", ScheduleFollowUpIn, "安排回访: a (further) 回访 of a closed case")
async def _schedule_followup(
    ctx: Context, actor: Actor, case_id: int, b: ScheduleFollowUpIn
) -> object:
    """By ``due_at`` (default: the follow-up rule's); 409 ``followup_pending`` while one is
    still to be recorded, 422 ``past_deadline`` for a time in the past."""
    return await cases.schedule_followup(
        ctx.db, actor, case_id, due_at=b.due_at, settings=ctx.settings, remark=b.remark
    )


@_action("record_followup", FollowUpIn, "The 回访 after closing and its result")
async def _followup(ctx: Context, actor: Actor, case_id: int, b: FollowUpIn) -> object:
    return await cases.record_followup(ctx.db, actor, case_id, result=b.result, remark=b.remark)


@_action("review", ReviewIn, "评查: a review of a closed case")
async def _review(ctx: Context, actor: Actor, case_id: int, b: ReviewIn) -> object:
    """``rating``: good, pass or fail."""
    return await cases.review(ctx.db, actor, case_id, findings=b.findings, rating=b.rating)


@_action("reopen", ReopenIn, "Reopen a closed case with a reason")
async def _reopen(ctx: Context, actor: Actor, case_id: int, b: ReopenIn) -> object:
    return await cases.reopen(ctx.db, actor, case_id, reason=b.reason, settings=ctx.settings)


@_action("correct", CorrectIn, "Correct a timeline entry (a new entry; nothing is changed)")
async def _correct(ctx: Context, actor: Actor, case_id: int, b: CorrectIn) -> object:
    return await cases.correct(
        ctx.db, actor, case_id, event_id=b.event_id, text=b.text, settings=ctx.settings
    )


# ---------------------------------------------------------------- materials

CHUNK = 64 * 1024


class MaterialTooLargeError(AppError):
    status = 413
    code = "material_too_large"


class UnsupportedMaterialError(AppError):
    status = 415
    code = "unsupported_material"


def _filename(raw: str | None, ext: str) -> str:
    """The uploaded file's own name, without folders or control characters (some clients
    send a non-ASCII name percent-encoded)."""
    name = unquote(raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()[:200]
    return name or f"材料{ext}"


@dataclass
class Upload:
    """A material streamed to a temporary file in the materials folder, hashed on the way.

    :meth:`keep` makes it durable under its content's name; :meth:`discard` removes what
    this upload put on disk. A material is stored whole or not at all.
    """

    folder: Path
    temp: Path
    filename: str = ""
    content_type: str = ""
    size: int = 0
    sha256: str = ""
    contact_id: int | None = None
    kept: Path | None = None  # the file :meth:`keep` created (None: it existed already)

    @property
    def name(self) -> str:
        return self.sha256 + cases.MATERIAL_TYPES[self.content_type]

    def _keep(self) -> None:
        with self.temp.open("rb+") as f:
            os.fsync(f.fileno())
        target = self.folder / self.name
        if target.exists():  # the same content is stored already
            self.temp.unlink()
            return
        self.temp.rename(target)
        self.kept = target
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    async def keep(self) -> None:
        await asyncio.to_thread(self._keep)

    def discard(self) -> None:
        self.temp.unlink(missing_ok=True)
        if self.kept is not None:
            self.kept.unlink(missing_ok=True)
            self.kept = None


async def _receive(request: web.Request, folder: Path, limit: int) -> Upload:
    """Stream the multipart ``file`` (and ``contact_id``) to a temporary file, refusing
    content that is not PDF, JPEG or PNG and anything over ``limit`` bytes."""
    mb = limit // (1024 * 1024)
    if not request.content_type.startswith("multipart/form-data"):
        raise UnsupportedMaterialError(
            "上传材料须以 multipart/form-data 表单提交", code="not_multipart"
        )
    if request.content_length is not None and request.content_length > limit + CHUNK:
        raise MaterialTooLargeError(f"材料文件过大，单个文件不能超过 {mb} MB")
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    upload = Upload(folder=folder, temp=folder / f".upload-{uuid.uuid4().hex}.part")
    got_file = False
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "contact_id":
                raw = (await part.text()).strip()
                if raw:
                    if not raw.isdigit() or not 0 < int(raw) < 2**31:
                        raise InvalidError("来访来信记录编号无效", code="invalid_contact")
                    upload.contact_id = int(raw)
            elif part.name == "file" and not got_file:
                got_file = True
                await stream_material(part, upload, limit)
            else:
                await part.release()
        if not got_file:
            raise InvalidError("没有收到文件，请选择要上传的材料", code="missing_file")
    except BaseException:
        upload.discard()
        raise
    return upload


async def stream_material(part: BodyPartReader, upload: Upload, limit: int) -> None:
    """Stream one multipart file into ``upload``'s temporary file, hashing it and checking
    its content type (PDF, JPEG, PNG) and size; the staff upload and the petitioner portal
    store materials by this one rule."""
    mb = limit // (1024 * 1024)
    digest = hashlib.sha256()
    head = b""
    with upload.temp.open("wb") as out:
        while chunk := await part.read_chunk(CHUNK):
            if not upload.content_type:
                head += chunk
                if len(head) < 8:
                    continue
                sniffed = cases.sniff_material(head)
                if sniffed is None:
                    raise UnsupportedMaterialError(
                        "只能上传 PDF、JPEG 或 PNG 格式的材料（按文件内容识别）"
                    )
                upload.content_type = sniffed
                chunk, head = head, b""
            upload.size += len(chunk)
            if upload.size > limit:
                raise MaterialTooLargeError(f"材料文件过大，单个文件不能超过 {mb} MB")
            digest.update(chunk)
            out.write(chunk)
    if upload.size == 0 and not head:
        raise InvalidError("上传的文件是空的", code="empty_file")
    if not upload.content_type:
        raise UnsupportedMaterialError("只能上传 PDF、JPEG 或 PNG 格式的材料（按文件内容识别）")
    upload.sha256 = digest.hexdigest()
    upload.filename = _filename(part.filename, cases.MATERIAL_TYPES[upload.content_type])


@api.route(
    "POST",
    f"/cases/{CASE_ID}/materials",
    summary="Upload a scanned material (multipart ``file``, optional ``contact_id``)",
    tag=TAG,
    roles=HANDLERS,
    answer=MaterialOut,
    status=201,
    errors=(409, 413, 415, 422),
    split=True,
)
async def upload_material(ctx: Context) -> MaterialOut:
    """PDF, JPEG or PNG by content (415 otherwise), up to ``case_material_max_mb`` (413).
    Streamed to a temporary file and hashed (SHA-256) on the way; made durable under its
    hash only once its record is accepted, removed otherwise: stored whole or not at all."""
    actor = ctx.me.actor()
    case_id = ctx.path_id("case_id")
    await cases.get_case(ctx.db, actor, case_id, CaseAction.upload)  # refuse before reading
    return await _store_upload(ctx, actor, case_id)


async def _store_upload(
    ctx: Context, actor: Actor, case_id: int, contact_id: int | None = None
) -> MaterialOut:
    """Receive the multipart upload and record it (a ``contact_id`` in the path is the
    one the material belongs to; the form's own ``contact_id`` is then ignored)."""
    upload = await _receive(
        ctx.request,
        cases.materials_dir(ctx.settings),
        ctx.settings.case_material_max_mb * 1024 * 1024,
    )
    if contact_id is not None:
        upload.contact_id = contact_id
    try:
        async with ctx.write() as db:
            material = await cases.add_material(
                db,
                actor,
                case_id,
                filename=upload.filename,
                content_type=upload.content_type,
                size=upload.size,
                sha256=upload.sha256,
                path=upload.name,
                contact_id=upload.contact_id,
            )
            await upload.keep()
            out = MaterialOut.of(material)
    except BaseException:
        upload.discard()
        raise
    return out


@api.route(
    "POST",
    r"/case-contacts/{contact_id:\d+}/materials",
    summary="Upload a scanned material of a contact the caller's court registered",
    tag=TAG,
    roles=HANDLERS,
    answer=MaterialOut,
    status=201,
    errors=(409, 413, 415, 422),
    split=True,
)
async def upload_contact_material(ctx: Context) -> MaterialOut:
    """The scans of a contact just registered, also when it was linked (重复访) to a case
    another court handles that the caller's court may not see; otherwise as
    ``POST /cases/{case_id}/materials`` (the case's own rule). 404 for a contact of
    another court's case the caller may not add to."""
    actor = ctx.me.actor()
    contact = await cases.contact_for_upload(ctx.db, actor, ctx.path_id("contact_id"))
    return await _store_upload(ctx, actor, contact.petition_id, contact.id)


@api.route(
    "GET",
    r"/case-materials/{material_id:\d+}",
    summary="A case material, inline (every view is audited)",
    tag=TAG,
    roles=ALL_STAFF,
)
async def view_material(ctx: Context) -> web.StreamResponse:
    """Served with its sniffed type; the view is recorded in the audit trail first."""
    material = await cases.get_material(ctx.db, ctx.me.actor(), ctx.path_id("material_id"))
    folder = cases.materials_dir(ctx.settings).resolve()
    path = (folder / material.path).resolve()
    if path.parent != folder or not path.is_file():
        raise NotFoundError("材料文件不存在")
    async with ctx.request.app[DB].writer() as db:
        record_audit(
            db,
            action="case.material_view",
            actor_id=ctx.me.user_id,
            actor_name=ctx.me.username,
            target_type="case",
            target_id=material.petition_id,
            address=ctx.address,
            court_id=ctx.me.court_id,
            detail={
                "material_id": material.id,
                "filename": material.filename,
                "sha256": material.sha256,
            },
        )
    return web.FileResponse(
        path,
        headers={
            "Content-Type": material.content_type,
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(material.filename)}",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )


# ---------------------------------------------------------------- deadline rules


@api.route(
    "GET",
    "/case-rules",
    summary="How many days each node may take, and when to remind",
    tag=TAG,
    roles=ALL_STAFF,
    answer=list[RuleOut],
)
async def list_rules(ctx: Context) -> list[RuleOut]:
    return [RuleOut.of(r) for r in await cases.list_rules(ctx.db)]


@api.route(
    "PUT",
    r"/case-rules/{node:\w+}",
    summary="Change a node's deadline rule (running deadlines keep theirs)",
    tag=TAG,
    roles={Role.admin},
    body=RuleIn,
    answer=RuleOut,
)
async def set_rule(ctx: Context) -> RuleOut:
    try:
        node = Node(ctx.request.match_info["node"])
    except ValueError:
        raise NotFoundError("没有这个办理节点") from None
    b: RuleIn = ctx.body
    rule = await cases.set_rule(
        ctx.db, ctx.me.actor(), node, days=b.days, remind_days_before=b.remind_days_before
    )
    return RuleOut.of(rule)
