"""What petitioners say on the portal and how the court answers: legal questions as a thread
(有信必复: an unanswered message becomes overdue after ``message_reply_days``), requests for
third-party mediation (a lawyer or mediator on the court's duty roster), satisfaction
ratings of a visit and of a case (满意度评价), and complaints and suggestions (投诉建议)
routed to the court above the one complained about.

Every entry that concerns a case is also an entry of the case's timeline. Nothing is
deleted; texts are stored as typed (pages render them as text, never as HTML).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from config.db import utcnow
from config.errors import ConflictError, InvalidError, NotFoundError, PermissionDeniedError
from config.settings import Settings
from config.vocabulary import label
from scheduler.cases.service import court_staff
from scheduler.cases.timeline import add_event
from scheduler.cases.words import EventKind
from scheduler.models import (
    Court,
    DutyLawyer,
    DutyPeriod,
    Petition,
    Role,
    Visit,
    VisitState,
)
from scheduler.notify import notify
from scheduler.portal.feedback_models import (
    Complaint,
    ComplaintKind,
    ComplaintState,
    MediationRequest,
    MessageThread,
    Rating,
    RatingReason,
    RatingSubject,
    ThreadMessage,
    ThreadState,
)
from scheduler.portal.identity import PortalPrincipal
from scheduler.portal.models import PortalIdentity
from scheduler.portal.service import my_case
from scheduler.portal.sms import queue_sms
from scheduler.scope import Actor

SUBJECT_LIMIT = 100
TEXT_LIMIT = 2000
RATING_TEXT_LIMIT = 500

# Who answers questions and handles complaints on the staff page (网上咨询与投诉).
INBOX_ROLES = frozenset({Role.operator, Role.petition_officer, Role.leader, Role.admin})


def petitioner_actor(court_id: int, address: str | None = None) -> Actor:
    """The actor timeline entries written by a petitioner carry (no staff account)."""
    return Actor(
        user_id=None,
        username="信访人（网上）",
        role=Role.operator,
        court_id=court_id,
        address=address,
    )


def _text(value: str, what: str, limit: int = TEXT_LIMIT, *, required: bool = True) -> str:
    text = (value or "").strip()
    if required and not text:
        raise InvalidError(f"请填写{what}", code="missing_field", details={"fields": [what]})
    if len(text) > limit:
        raise InvalidError(
            f"{what}过长：最多 {limit} 个字，当前 {len(text)} 个字", code="text_too_long"
        )
    return text


def _excerpt(text: str, size: int = 40) -> str:
    return text if len(text) <= size else text[:size] + "…"


async def _court(db: AsyncSession, court_id: int) -> Court:
    court = await db.get(Court, court_id)
    if court is None:
        raise InvalidError("请选择法院", code="invalid_court")
    return court


# ---------------------------------------------------------------- questions (有信必复)


def reply_due(settings: Settings, at: datetime) -> datetime:
    """When a petitioner's message must be answered by (the one rule)."""
    return at + timedelta(days=settings.message_reply_days)


async def ask(
    db: AsyncSession,
    settings: Settings,
    me: PortalPrincipal,
    *,
    court_id: int | None,
    petition_id: int | None,
    subject: str,
    text: str,
    address: str | None = None,
    now: datetime | None = None,
) -> MessageThread:
    """A new question to a court (or to the court of one of the petitioner's cases)."""
    now = now or utcnow()
    subject = _text(subject, "咨询主题", SUBJECT_LIMIT)
    body = _text(text, "咨询内容")
    case = await my_case(db, me, petition_id) if petition_id is not None else None
    if case is not None:
        court_id = case.handler_court_id or case.court_id
    if court_id is None:
        raise InvalidError("请选择法院", code="invalid_court")
    await _court(db, court_id)
    thread = MessageThread(
        identity_id=me.identity_id,
        court_id=court_id,
        petition_id=case.id if case else None,
        subject=subject,
        state=ThreadState.waiting,
        due_at=reply_due(settings, now),
        created_at=now,
        updated_at=now,
    )
    db.add(thread)
    await db.flush()
    db.add(ThreadMessage(thread_id=thread.id, text=body, created_at=now))
    await _after_petitioner_message(db, thread, body, case, address, new=True)
    return thread


async def follow_up(
    db: AsyncSession,
    settings: Settings,
    me: PortalPrincipal,
    thread_id: int,
    text: str,
    *,
    address: str | None = None,
    now: datetime | None = None,
) -> MessageThread:
    """A further message of the petitioner on their thread: it waits for an answer again."""
    now = now or utcnow()
    thread = await my_thread(db, me, thread_id)
    body = _text(text, "留言内容")
    db.add(ThreadMessage(thread_id=thread.id, text=body, created_at=now))
    if thread.state is not ThreadState.waiting:
        thread.state = ThreadState.waiting
        thread.due_at = reply_due(settings, now)
        thread.overdue_at = None
    thread.updated_at = now
    case = await db.get(Petition, thread.petition_id) if thread.petition_id else None
    await _after_petitioner_message(db, thread, body, case, address, new=False)
    return thread


async def _after_petitioner_message(
    db: AsyncSession,
    thread: MessageThread,
    body: str,
    case: Petition | None,
    address: str | None,
    *,
    new: bool,
) -> None:
    if case is not None:
        add_event(
            db,
            case.id,
            EventKind.question,
            petitioner_actor(thread.court_id, address),
            f"信访人网上咨询「{thread.subject}」：{_excerpt(body)}",
            court_id=thread.court_id,
            detail={"thread_id": thread.id},
        )
    await notify(
        db,
        await court_staff(db, thread.court_id),
        kind="portal_question",
        title=("新的网上咨询：" if new else "网上咨询有新留言：") + thread.subject,
        body=_excerpt(body, 100),
    )


async def my_threads(db: AsyncSession, me: PortalPrincipal) -> Sequence[MessageThread]:
    return (
        await db.scalars(
            select(MessageThread)
            .where(MessageThread.identity_id == me.identity_id)
            .order_by(MessageThread.updated_at.desc(), MessageThread.id.desc())
        )
    ).all()


async def my_thread(db: AsyncSession, me: PortalPrincipal, thread_id: int) -> MessageThread:
    """The petitioner's own thread; 404 for anyone else's (as if it did not exist)."""
    thread = await db.get(MessageThread, thread_id)
    if thread is None or thread.identity_id != me.identity_id:
        raise NotFoundError("没有找到该咨询")
    return thread


async def messages(db: AsyncSession, thread_id: int) -> Sequence[ThreadMessage]:
    return (
        await db.scalars(
            select(ThreadMessage)
            .where(ThreadMessage.thread_id == thread_id)
            .order_by(ThreadMessage.id)
        )
    ).all()


def _check_inbox(actor: Actor) -> None:
    if actor.role not in INBOX_ROLES:
        raise PermissionDeniedError("只有操作员、信访专员、院领导可以处理网上咨询与投诉")


async def court_threads(db: AsyncSession, actor: Actor) -> Sequence[MessageThread]:
    """The questions to the actor's court: waiting ones first, the oldest deadline first."""
    _check_inbox(actor)
    query = select(MessageThread)
    if not actor.is_admin:
        query = query.where(MessageThread.court_id == actor.court_id)
    query = query.order_by(
        (MessageThread.state == ThreadState.answered),
        MessageThread.due_at,
        MessageThread.id.desc(),
    ).limit(200)
    return (await db.scalars(query)).all()


async def staff_thread(db: AsyncSession, actor: Actor, thread_id: int) -> MessageThread:
    _check_inbox(actor)
    thread = await db.get(MessageThread, thread_id)
    if thread is None or not (actor.is_admin or thread.court_id == actor.court_id):
        raise NotFoundError("没有找到该咨询")
    return thread


async def answer(
    db: AsyncSession,
    actor: Actor,
    thread_id: int,
    text: str,
    *,
    now: datetime | None = None,
) -> tuple[MessageThread, int]:
    """A staff answer: the thread is answered (its deadline cleared) and the petitioner is
    told by SMS (queued in the outbox with this change). Returns the thread and the SMS id."""
    now = now or utcnow()
    thread = await staff_thread(db, actor, thread_id)
    body = _text(text, "答复内容")
    db.add(
        ThreadMessage(
            thread_id=thread.id,
            from_staff=True,
            staff_id=actor.user_id,
            staff_name=actor.username,
            text=body,
            created_at=now,
        )
    )
    thread.state = ThreadState.answered
    thread.due_at = None
    thread.updated_at = now
    if thread.petition_id is not None:
        add_event(
            db,
            thread.petition_id,
            EventKind.answer,
            actor,
            f"答复网上咨询「{thread.subject}」：{_excerpt(body)}",
            court_id=thread.court_id,
            detail={"thread_id": thread.id},
        )
    identity = await db.get(PortalIdentity, thread.identity_id)
    assert identity is not None
    sms = queue_sms(
        db,
        identity.phone,
        f"您在网上提交的咨询「{_excerpt(thread.subject, 20)}」已有答复，请登录网上信访平台查看。",
        purpose="portal_answer",
        court_id=thread.court_id,
    )
    await db.flush()
    return thread, sms.id


async def mark_overdue(db: AsyncSession, now: datetime, *, batch: int = 500) -> int:
    """Housekeeping: stamp questions past their reply deadline once, note it on the case's
    timeline and tell the court's staff. Safe to run on every node: one conditional UPDATE
    picks and stamps them, its conditions checked again on each row it changes, so a
    question another node stamped (or staff answered) meanwhile is left alone."""
    pending = and_(
        MessageThread.state == ThreadState.waiting,
        MessageThread.due_at <= now,
        MessageThread.overdue_at.is_(None),
    )
    picked = select(MessageThread.id).where(pending).order_by(MessageThread.due_at).limit(batch)
    stamped = await db.execute(
        update(MessageThread)
        .where(MessageThread.id.in_(picked), pending)
        .values(overdue_at=now)
        .returning(
            MessageThread.id,
            MessageThread.petition_id,
            MessageThread.court_id,
            MessageThread.subject,
        )
        .execution_options(synchronize_session=False)
    )
    rows = sorted(stamped.all(), key=lambda row: row.id)
    system = Actor(user_id=None, username="系统", role=Role.admin, court_id=None)
    for thread in rows:
        if thread.petition_id is not None:
            add_event(
                db,
                thread.petition_id,
                EventKind.overdue,
                system,
                f"网上咨询「{thread.subject}」超期未答复",
                court_id=thread.court_id,
                detail={"thread_id": thread.id},
            )
        await notify(
            db,
            await court_staff(db, thread.court_id),
            kind="portal_question_overdue",
            title="网上咨询超期未答复：" + thread.subject,
            body="有信必复：请尽快答复",
        )
    return len(rows)


# ---------------------------------------------------------------- third-party mediation


async def duty_member(db: AsyncSession, court_id: int, now: datetime) -> DutyLawyer | None:
    """The roster member to give a mediation request to: the one on duty now, else the one
    whose next duty period starts first."""
    row = await db.scalar(
        select(DutyLawyer)
        .join(DutyPeriod, DutyPeriod.lawyer_id == DutyLawyer.id)
        .where(DutyLawyer.court_id == court_id, DutyLawyer.active, DutyPeriod.ends_at > now)
        .order_by(DutyPeriod.starts_at)
        .limit(1)
    )
    return row


async def request_mediation(
    db: AsyncSession,
    me: PortalPrincipal,
    petition_id: int,
    note: str,
    *,
    address: str | None = None,
    now: datetime | None = None,
) -> tuple[MediationRequest, DutyLawyer]:
    now = now or utcnow()
    case = await my_case(db, me, petition_id)
    text = _text(note, "化解诉求说明", required=False)
    court_id = case.handler_court_id or case.court_id
    lawyer = await duty_member(db, court_id, now)
    if lawyer is None:
        raise ConflictError(
            "该法院值班名册上暂无可安排的律师或调解员，请稍后再申请或向法院留言咨询",
            code="no_mediator",
        )
    row = MediationRequest(
        identity_id=me.identity_id,
        petition_id=case.id,
        court_id=court_id,
        lawyer_id=lawyer.id,
        note=text,
        created_at=now,
    )
    db.add(row)
    await db.flush()
    who = lawyer.name + (f"（{lawyer.firm}）" if lawyer.firm else "")
    add_event(
        db,
        case.id,
        EventKind.mediation,
        petitioner_actor(court_id, address),
        f"信访人申请第三方化解，安排值班人员 {who}" + (f"：{_excerpt(text)}" if text else ""),
        court_id=court_id,
        detail={"mediation_id": row.id, "lawyer_id": lawyer.id},
    )
    await notify(
        db,
        await court_staff(db, court_id),
        kind="portal_mediation",
        title=f"信访件 {case.number} 申请第三方化解",
        body=f"已安排值班人员 {who}",
    )
    return row, lawyer


async def court_mediations(
    db: AsyncSession, actor: Actor, limit: int = 100
) -> Sequence[tuple[MediationRequest, DutyLawyer, Petition]]:
    """The newest mediation requests to the actor's court, with the roster member and case."""
    _check_inbox(actor)
    query = (
        select(MediationRequest, DutyLawyer, Petition)
        .join(DutyLawyer, DutyLawyer.id == MediationRequest.lawyer_id)
        .join(Petition, Petition.id == MediationRequest.petition_id)
    )
    if not actor.is_admin:
        query = query.where(MediationRequest.court_id == actor.court_id)
    rows = await db.execute(query.order_by(MediationRequest.id.desc()).limit(limit))
    return [(m, lawyer, case) for m, lawyer, case in rows]


# ---------------------------------------------------------------- ratings (满意度评价)

RATED_VISIT_STATES = frozenset({VisitState.ended, VisitState.archived})


@dataclass
class RatingIn:
    score: int
    reasons: list[RatingReason]
    text: str


def _check_rating(data: RatingIn) -> None:
    if not isinstance(data.score, int) or not 1 <= data.score <= 5:
        raise InvalidError("评分应为 1 到 5 分", code="invalid_score")
    data.text = _text(data.text, "评价内容", RATING_TEXT_LIMIT, required=False)
    if len(set(data.reasons)) != len(data.reasons):
        raise InvalidError("评价理由重复", code="invalid_reasons")


async def rate_visit(
    db: AsyncSession,
    me: PortalPrincipal,
    visit_id: str,
    data: RatingIn,
    *,
    address: str | None = None,
) -> Rating:
    """Rate a completed visit of one of the petitioner's cases, once."""
    _check_rating(data)
    visit = await db.get(Visit, visit_id)
    if visit is None:
        raise NotFoundError("没有找到该次接访")
    case = await my_case(db, me, visit.petition_id)  # 404 if not theirs
    if visit.state not in RATED_VISIT_STATES:
        raise ConflictError("接访结束后才能评价", code="visit_not_finished")
    return await _store(
        db,
        me,
        case,
        RatingSubject.visit,
        f"visit:{visit.id}",
        data,
        visit_id=visit.id,
        judge_id=visit.judge_id,
        court_id=visit.receiving_court_id,
        address=address,
    )


async def rate_case(
    db: AsyncSession,
    me: PortalPrincipal,
    petition_id: int,
    data: RatingIn,
    *,
    address: str | None = None,
) -> Rating:
    """Rate how a case was handled, once."""
    _check_rating(data)
    case = await my_case(db, me, petition_id)
    return await _store(
        db,
        me,
        case,
        RatingSubject.case,
        f"case:{case.id}",
        data,
        visit_id=None,
        judge_id=case.responsible_id,
        court_id=case.handler_court_id or case.court_id,
        address=address,
    )


async def _store(
    db: AsyncSession,
    me: PortalPrincipal,
    case: Petition,
    subject: RatingSubject,
    key: str,
    data: RatingIn,
    *,
    visit_id: str | None,
    judge_id: int | None,
    court_id: int,
    address: str | None,
) -> Rating:
    taken = await db.scalar(
        select(Rating.id).where(Rating.identity_id == me.identity_id, Rating.subject_key == key)
    )
    if taken is not None:
        raise _already_rated(subject)
    row = Rating(
        identity_id=me.identity_id,
        subject=subject,
        subject_key=key,
        petition_id=case.id,
        visit_id=visit_id,
        judge_id=judge_id,
        court_id=court_id,
        score=data.score,
        reasons=[r.value for r in data.reasons],
        text=data.text,
    )
    try:
        async with db.begin_nested():
            db.add(row)
            await db.flush()
    except IntegrityError:  # rated at the same moment from another page
        raise _already_rated(subject) from None
    reasons = "、".join(label(r) for r in data.reasons)
    add_event(
        db,
        case.id,
        EventKind.rated,
        petitioner_actor(court_id, address),
        f"{label(subject)}：{data.score} 分" + (f"（{reasons}）" if reasons else ""),
        court_id=court_id,
        detail={"rating_id": row.id, "score": data.score, "visit_id": visit_id},
    )
    return row


def _already_rated(subject: RatingSubject) -> ConflictError:
    what = "这次接访" if subject is RatingSubject.visit else "这件信访件"
    return ConflictError(f"您已经评价过{what}，每次只能评价一次", code="already_rated")


async def rateable_visits(db: AsyncSession, me: PortalPrincipal, petition_id: int) -> list[Visit]:
    case = await my_case(db, me, petition_id)
    return list(
        (
            await db.scalars(
                select(Visit)
                .where(Visit.petition_id == case.id, Visit.state.in_(RATED_VISIT_STATES))
                .order_by(Visit.starts_at.desc())
            )
        ).all()
    )


async def my_ratings(db: AsyncSession, me: PortalPrincipal) -> Sequence[Rating]:
    return (
        await db.scalars(
            select(Rating).where(Rating.identity_id == me.identity_id).order_by(Rating.id.desc())
        )
    ).all()


# ---------------------------------------------------------------- complaints (投诉建议)


async def route_complaint(db: AsyncSession, court_id: int) -> int:
    """Where a complaint about ``court_id`` goes: the court above it (its supervisor), whose
    petition officers and leaders handle it; a complaint about the supreme court stays there."""
    court = await _court(db, court_id)
    return court.parent_id if court.parent_id is not None else court.id


async def complain(
    db: AsyncSession,
    me: PortalPrincipal,
    *,
    kind: ComplaintKind,
    court_id: int | None,
    petition_id: int | None,
    text: str,
    address: str | None = None,
) -> Complaint:
    body = _text(text, "投诉建议内容")
    case = await my_case(db, me, petition_id) if petition_id is not None else None
    if case is not None:
        court_id = case.handler_court_id or case.court_id
    if court_id is None:
        raise InvalidError("请选择法院", code="invalid_court")
    routed = await route_complaint(db, court_id)
    row = Complaint(
        identity_id=me.identity_id,
        kind=kind,
        court_id=court_id,
        routed_court_id=routed,
        petition_id=case.id if case else None,
        text=body,
    )
    db.add(row)
    await db.flush()
    if case is not None:
        add_event(
            db,
            case.id,
            EventKind.complaint,
            petitioner_actor(court_id, address),
            # no text: the case's handling court (the one complained about) reads its
            # timeline; the text is the supervising court's, on its inbox
            f"信访人提出{label(kind)}（由上级法院处理）",
            court_id=routed,
            detail={"complaint_id": row.id, "routed_court_id": routed},
        )
    await notify(
        db,
        await court_staff(db, routed),
        kind="portal_complaint",
        title=f"收到网上{label(kind)}",
        body=_excerpt(body, 100),
    )
    return row


async def my_complaints(db: AsyncSession, me: PortalPrincipal) -> Sequence[Complaint]:
    return (
        await db.scalars(
            select(Complaint)
            .where(Complaint.identity_id == me.identity_id)
            .order_by(Complaint.id.desc())
        )
    ).all()


async def court_complaints(db: AsyncSession, actor: Actor) -> Sequence[Complaint]:
    """Complaints routed to the actor's court: open ones first."""
    _check_inbox(actor)
    query = select(Complaint)
    if not actor.is_admin:
        query = query.where(Complaint.routed_court_id == actor.court_id)
    query = query.order_by(Complaint.state == ComplaintState.handled, Complaint.id.desc())
    return (await db.scalars(query.limit(200))).all()


async def handle_complaint(
    db: AsyncSession, actor: Actor, complaint_id: int, reply: str, *, now: datetime | None = None
) -> tuple[Complaint, int]:
    """Record how a complaint was handled; the petitioner is told by SMS."""
    _check_inbox(actor)
    row = await db.get(Complaint, complaint_id)
    if row is None or not (actor.is_admin or row.routed_court_id == actor.court_id):
        raise NotFoundError("没有找到该投诉建议")
    if row.state is ComplaintState.handled:
        raise ConflictError("该投诉建议已处理", code="complaint_handled")
    row.reply = _text(reply, "处理意见")
    row.state = ComplaintState.handled
    row.handled_by = actor.user_id
    row.handled_at = now or utcnow()
    if row.petition_id is not None:
        add_event(
            db,
            row.petition_id,
            EventKind.complaint,
            actor,
            f"{label(row.kind)}已由上级法院处理",
            court_id=row.routed_court_id,
            detail={"complaint_id": row.id},
        )
    identity = await db.get(PortalIdentity, row.identity_id)
    assert identity is not None
    sms = queue_sms(
        db,
        identity.phone,
        f"您提交的{label(row.kind)}已处理，请登录网上信访平台查看处理意见。",
        purpose="portal_complaint",
        court_id=row.routed_court_id,
    )
    await db.flush()
    return row, sms.id


async def court_names(db: AsyncSession, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return {c.id: c.name for c in (await db.scalars(select(Court).where(Court.id.in_(ids))))}
