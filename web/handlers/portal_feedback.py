"""Questions, mediation, ratings and complaints: the petitioner's side on the portal
(``/api/v1/portal/…``, portal session) and the staff side (``/api/v1/inbox/…``, the
网上咨询与投诉 page)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from config.privacy import mask_text
from scheduler.portal import feedback
from scheduler.portal.feedback_models import (
    Complaint,
    ComplaintKind,
    ComplaintState,
    MessageThread,
    Rating,
    RatingReason,
    RatingSubject,
    ThreadState,
)
from scheduler.portal.sms import deliver, gateway_for
from web.keys import DB
from web.portal_auth import portal_principal
from web.routes import Context, api
from web.schemas import Answer, Body, Id

TAG = "portal"
# generous transport bounds; the service gives the clear message for what is too long
_BIG = 20000


class AskBody(Body):
    court_id: Id | None = None
    case_id: Id | None = None
    subject: str = Field(max_length=_BIG)
    text: str = Field(max_length=_BIG)


class TextBody(Body):
    text: str = Field(max_length=_BIG)


class MessageOut(Answer):
    id: int
    from_staff: bool
    staff_name: str
    text: str
    created_at: datetime


class ThreadOut(Answer):
    id: int
    court_id: int
    court_name: str
    case_id: int | None
    subject: str
    state: ThreadState
    due_at: datetime | None
    overdue: bool
    created_at: datetime
    updated_at: datetime
    messages: list[MessageOut]


async def _thread_out(
    ctx: Context, thread: MessageThread, names: dict[int, str], petitioner: bool
) -> ThreadOut:
    """``petitioner``: for the portal, where the court answers, never a named member of
    its staff (their account names are not shown to the public)."""
    messages = [MessageOut.model_validate(m) for m in await feedback.messages(ctx.db, thread.id)]
    if petitioner:
        messages = [m.model_copy(update={"staff_name": ""}) for m in messages]
    return ThreadOut(
        id=thread.id,
        court_id=thread.court_id,
        court_name=names.get(thread.court_id, ""),
        case_id=thread.petition_id,
        subject=thread.subject,
        state=thread.state,
        due_at=thread.due_at,
        overdue=thread.overdue_at is not None and thread.state is ThreadState.waiting,
        created_at=thread.created_at,
        updated_at=thread.updated_at,
        messages=messages,
    )


async def _threads_out(
    ctx: Context, threads: list[MessageThread], petitioner: bool = False
) -> list[ThreadOut]:
    names = await feedback.court_names(ctx.db, {t.court_id for t in threads})
    return [await _thread_out(ctx, t, names, petitioner) for t in threads]


def _send_sms(ctx: Context, message_id: int) -> None:
    """Hand the queued SMS to the gateway once this request's change is committed."""
    app, settings = ctx.request.app, ctx.settings

    async def send() -> None:
        await deliver(app[DB], gateway_for(settings), [message_id])

    ctx.after_commit(send)


# ---------------------------------------------------------------- petitioner: questions


@api.route(
    "GET",
    "/portal/threads",
    summary="The petitioner's questions and their answers",
    tag=TAG,
    roles=None,
    answer=list[ThreadOut],
)
async def my_threads(ctx: Context) -> list[ThreadOut]:
    me = await portal_principal(ctx)
    return await _threads_out(ctx, list(await feedback.my_threads(ctx.db, me)), True)


@api.route(
    "POST",
    "/portal/threads",
    summary="Ask a court a legal question (有信必复)",
    tag=TAG,
    roles=None,
    guard=portal_principal,
    body=AskBody,
    answer=ThreadOut,
    status=201,
    errors=(404, 422),
)
async def ask(ctx: Context) -> ThreadOut:
    """About one of the petitioner's cases (``case_id``: its handling court answers) or to a
    chosen court. The court must answer within ``message_reply_days`` days."""
    me = await portal_principal(ctx)
    b: AskBody = ctx.body
    thread = await feedback.ask(
        ctx.db,
        ctx.settings,
        me,
        court_id=b.court_id,
        petition_id=b.case_id,
        subject=b.subject,
        text=b.text,
        address=ctx.address,
    )
    return (await _threads_out(ctx, [thread], True))[0]


@api.route(
    "POST",
    r"/portal/threads/{thread_id:\d+}/messages",
    summary="Add a message to one's own question thread",
    tag=TAG,
    roles=None,
    guard=portal_principal,
    body=TextBody,
    answer=ThreadOut,
    status=201,
    errors=(404, 422),
)
async def follow_up(ctx: Context) -> ThreadOut:
    me = await portal_principal(ctx)
    thread = await feedback.follow_up(
        ctx.db,
        ctx.settings,
        me,
        ctx.path_id("thread_id"),
        ctx.body.text,
        address=ctx.address,
    )
    return (await _threads_out(ctx, [thread], True))[0]


# ---------------------------------------------------------------- petitioner: mediation


class MediationBody(Body):
    case_id: Id
    note: str = Field("", max_length=_BIG)


class MediationOut(Answer):
    id: int
    case_id: int
    mediator: str
    firm: str
    created_at: datetime


@api.route(
    "POST",
    "/portal/mediation",
    summary="Ask for third-party mediation of one's case (a lawyer or mediator on duty)",
    tag=TAG,
    roles=None,
    guard=portal_principal,
    body=MediationBody,
    answer=MediationOut,
    status=201,
    errors=(404, 409, 422),
)
async def mediation(ctx: Context) -> MediationOut:
    """Given to the member of the handling court's duty roster on duty now (else the next
    one on duty); 409 ``no_mediator`` when the roster has nobody."""
    me = await portal_principal(ctx)
    b: MediationBody = ctx.body
    row, lawyer = await feedback.request_mediation(
        ctx.db, me, b.case_id, b.note, address=ctx.address
    )
    return MediationOut(
        id=row.id,
        case_id=row.petition_id,
        mediator=lawyer.name,
        firm=lawyer.firm,
        created_at=row.created_at,
    )


# ---------------------------------------------------------------- petitioner: ratings


class RatingBody(Body):
    score: int
    reasons: list[RatingReason] = Field(default_factory=list, max_length=len(RatingReason))
    text: str = Field("", max_length=_BIG)


class RatingOut(Answer):
    id: int
    subject: RatingSubject
    case_id: int
    visit_id: str | None
    score: int
    reasons: list[str]
    text: str
    created_at: datetime


def _rating_out(row: Rating) -> RatingOut:
    return RatingOut(
        id=row.id,
        subject=row.subject,
        case_id=row.petition_id,
        visit_id=row.visit_id,
        score=row.score,
        reasons=row.reasons,
        text=row.text,
        created_at=row.created_at,
    )


def _rating_in(b: RatingBody) -> feedback.RatingIn:
    return feedback.RatingIn(score=b.score, reasons=list(b.reasons), text=b.text)


@api.route(
    "POST",
    r"/portal/visits/{visit_id:[0-9a-f]{32}}/rating",
    summary="Rate a finished visit of one's case (满意度评价), once",
    tag=TAG,
    roles=None,
    guard=portal_principal,
    body=RatingBody,
    answer=RatingOut,
    status=201,
    errors=(404, 409, 422),
)
async def rate_visit(ctx: Context) -> RatingOut:
    """Score 1–5 with reasons from the fixed list (``rating_reason``) and a text; linked to
    the case, the visit and its judge. A second rating of the same visit is refused (409)."""
    me = await portal_principal(ctx)
    row = await feedback.rate_visit(
        ctx.db, me, ctx.request.match_info["visit_id"], _rating_in(ctx.body), address=ctx.address
    )
    return _rating_out(row)


@api.route(
    "POST",
    r"/portal/cases/{case_id:\d+}/rating",
    summary="Rate how one's case was handled (满意度评价), once",
    tag=TAG,
    roles=None,
    guard=portal_principal,
    body=RatingBody,
    answer=RatingOut,
    status=201,
    errors=(404, 409, 422),
)
async def rate_case(ctx: Context) -> RatingOut:
    me = await portal_principal(ctx)
    row = await feedback.rate_case(
        ctx.db, me, ctx.path_id("case_id"), _rating_in(ctx.body), address=ctx.address
    )
    return _rating_out(row)


class RateableVisit(Answer):
    id: str
    starts_at: datetime | None
    rated: bool


class RatingsOut(Answer):
    ratings: list[RatingOut]
    visits: list[RateableVisit]


@api.route(
    "GET",
    r"/portal/cases/{case_id:\d+}/ratings",
    summary="One's ratings of a case and the finished visits one may rate",
    tag=TAG,
    roles=None,
    answer=RatingsOut,
    errors=(404,),
)
async def case_ratings(ctx: Context) -> RatingsOut:
    me = await portal_principal(ctx)
    case_id = ctx.path_id("case_id")
    visits = await feedback.rateable_visits(ctx.db, me, case_id)
    mine = [r for r in await feedback.my_ratings(ctx.db, me) if r.petition_id == case_id]
    rated = {r.visit_id for r in mine}
    return RatingsOut(
        ratings=[_rating_out(r) for r in mine],
        visits=[RateableVisit(id=v.id, starts_at=v.starts_at, rated=v.id in rated) for v in visits],
    )


# ---------------------------------------------------------------- petitioner: complaints


class ComplaintBody(Body):
    kind: ComplaintKind
    court_id: Id | None = None
    case_id: Id | None = None
    text: str = Field(max_length=_BIG)


class ComplaintOut(Answer):
    id: int
    kind: ComplaintKind
    court_id: int
    court_name: str
    routed_court_id: int
    routed_court_name: str
    case_id: int | None
    text: str
    state: ComplaintState
    reply: str
    handled_at: datetime | None
    created_at: datetime


async def _complaints_out(ctx: Context, rows: list[Complaint]) -> list[ComplaintOut]:
    names = await feedback.court_names(
        ctx.db, {r.court_id for r in rows} | {r.routed_court_id for r in rows}
    )
    return [
        ComplaintOut(
            id=r.id,
            kind=r.kind,
            court_id=r.court_id,
            court_name=names.get(r.court_id, ""),
            routed_court_id=r.routed_court_id,
            routed_court_name=names.get(r.routed_court_id, ""),
            case_id=r.petition_id,
            text=r.text,
            state=r.state,
            reply=r.reply,
            handled_at=r.handled_at,
            created_at=r.created_at,
        )
        for r in rows
    ]


@api.route(
    "POST",
    "/portal/complaints",
    summary="Make a complaint or suggestion (投诉建议) about a court",
    tag=TAG,
    roles=None,
    guard=portal_principal,
    body=ComplaintBody,
    answer=ComplaintOut,
    status=201,
    errors=(404, 422),
)
async def complain(ctx: Context) -> ComplaintOut:
    """Routed to the court above the one complained about (its supervisor)."""
    me = await portal_principal(ctx)
    b: ComplaintBody = ctx.body
    row = await feedback.complain(
        ctx.db,
        me,
        kind=b.kind,
        court_id=b.court_id,
        petition_id=b.case_id,
        text=b.text,
        address=ctx.address,
    )
    return (await _complaints_out(ctx, [row]))[0]


@api.route(
    "GET",
    "/portal/complaints",
    summary="One's complaints and suggestions and how they were handled",
    tag=TAG,
    roles=None,
    answer=list[ComplaintOut],
)
async def my_complaints(ctx: Context) -> list[ComplaintOut]:
    me = await portal_principal(ctx)
    return await _complaints_out(ctx, list(await feedback.my_complaints(ctx.db, me)))


# ---------------------------------------------------------------- staff: the inbox


class MediationRow(Answer):
    id: int
    case_id: int
    case_number: str
    mediator: str
    firm: str
    mediator_phone: str
    note: str
    created_at: datetime


class InboxOut(Answer):
    threads: list[ThreadOut]
    complaints: list[ComplaintOut]
    mediations: list[MediationRow]


@api.route(
    "GET",
    "/inbox",
    summary="Questions to answer and complaints routed to the caller's court",
    tag=TAG,
    roles=feedback.INBOX_ROLES,
    answer=InboxOut,
)
async def inbox(ctx: Context) -> InboxOut:
    """Waiting questions first, the nearest deadline first (``overdue`` once past it);
    complaints routed here, open ones first; the newest mediation requests to this court.
    Petitioners' ID numbers and phones in texts are masked."""
    actor = ctx.me.actor()
    threads = await _threads_out(ctx, list(await feedback.court_threads(ctx.db, actor)))
    complaints = await _complaints_out(ctx, list(await feedback.court_complaints(ctx.db, actor)))
    for t in threads:
        for m in t.messages:
            m.text = mask_text(m.text)
    for c in complaints:
        c.text = mask_text(c.text)
    mediations = [
        MediationRow(
            id=m.id,
            case_id=case.id,
            case_number=case.number,
            mediator=lawyer.name,
            firm=lawyer.firm,
            mediator_phone=lawyer.phone,
            note=mask_text(m.note),
            created_at=m.created_at,
        )
        for m, lawyer, case in await feedback.court_mediations(ctx.db, actor)
    ]
    return InboxOut(threads=threads, complaints=complaints, mediations=mediations)


@api.route(
    "POST",
    r"/inbox/threads/{thread_id:\d+}/answer",
    summary="Answer a petitioner's question; the petitioner is told by SMS",
    tag=TAG,
    roles=feedback.INBOX_ROLES,
    body=TextBody,
    answer=ThreadOut,
    errors=(404, 422),
)
async def answer(ctx: Context) -> ThreadOut:
    thread, sms_id = await feedback.answer(
        ctx.db, ctx.me.actor(), ctx.path_id("thread_id"), ctx.body.text
    )
    _send_sms(ctx, sms_id)
    return (await _threads_out(ctx, [thread]))[0]


@api.route(
    "POST",
    r"/inbox/complaints/{complaint_id:\d+}/handled",
    summary="Record how a complaint or suggestion was handled; the petitioner is told by SMS",
    tag=TAG,
    roles=feedback.INBOX_ROLES,
    body=TextBody,
    answer=ComplaintOut,
    errors=(404, 409, 422),
)
async def handled(ctx: Context) -> ComplaintOut:
    row, sms_id = await feedback.handle_complaint(
        ctx.db, ctx.me.actor(), ctx.path_id("complaint_id"), ctx.body.text
    )
    _send_sms(ctx, sms_id)
    return (await _complaints_out(ctx, [row]))[0]
