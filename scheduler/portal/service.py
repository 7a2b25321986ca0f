"""What a petitioner does on the portal: submit a petition online, follow their cases and
see the results, and ask for a video visit; and what the court's operator does with such a
request (book it through the booking flow).

A petitioner sees exactly the cases where a petitioner record (lead or further) carries
their resident ID number, their name and their proved phone, and the cases they submitted
online themselves (their portal identity, under their ID number and name, whatever phone
the court has on file); every call checks it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from config.db import utcnow
from config.errors import ConflictError, InvalidError, NotFoundError, PermissionDeniedError
from config.privacy import mask_text
from config.settings import Settings
from config.vocabulary import label, label_of
from scheduler.booking import BookingPlan, commit_booking
from scheduler.cases import service as cases
from scheduler.cases.models import CaseEvent, CasePetitioner, Material
from scheduler.cases.rules import CLOSED
from scheduler.cases.words import CaseCategory, EventKind
from scheduler.codes import IssuedCode, issue_visit_code
from scheduler.lifecycle import OPEN as OPEN_VISITS
from scheduler.models import (
    CodeRole,
    Court,
    CourtLevel,
    IdType,
    Petition,
    Petitioner,
    ReceptionRoom,
    Role,
    User,
    Visit,
    VisitCode,
)
from scheduler.notify import notify
from scheduler.portal.identity import PortalPrincipal
from scheduler.portal.models import SmsMessage, VisitRequest, VisitRequestState
from scheduler.portal.sms import queue_sms
from scheduler.scope import Actor
from scheduler.visits import local_text

# ---------------------------------------------------------------- whose cases


def phone_spellings(phone: str) -> list[str]:
    """The ways a mobile number may be stored: as the portal proves it (11 digits, as
    registration stores it now), and as clerks typed it before numbers were normalized
    (138-1234-5678, with +86)."""
    dashed = f"{phone[:3]}-{phone[3:7]}-{phone[7:]}"
    spaced = f"{phone[:3]} {phone[3:7]} {phone[7:]}"
    local = [phone, dashed, spaced]
    return [*local, *(f"{cc}{n}" for cc in ("+86", "+86-", "+86 ", "0086", "86") for n in local)]


def _named(me: PortalPrincipal) -> Any:
    return select(Petitioner.id).where(
        Petitioner.id_type == IdType.resident_id,
        Petitioner.id_number == me.id_number,
        Petitioner.name == me.name,
    )


def _my_people(me: PortalPrincipal) -> Any:
    return _named(me).where(Petitioner.phone.in_(phone_spellings(me.phone)))


def _mine(me: PortalPrincipal) -> Any:
    people = _my_people(me)
    further = select(CasePetitioner.petition_id).where(CasePetitioner.petitioner_id.in_(people))
    # submitted online by this identity: the court may have another phone on file (the
    # petitioner's earlier number), which registration keeps
    theirs = aliased(Petition)
    submitted = select(CaseEvent.petition_id).where(
        CaseEvent.petition_id.in_(select(theirs.id).where(theirs.petitioner_id.in_(_named(me)))),
        cases.submitted_by(me.identity_id),
    )
    return or_(
        Petition.petitioner_id.in_(people), Petition.id.in_(further), Petition.id.in_(submitted)
    )


async def my_cases(db: AsyncSession, me: PortalPrincipal) -> Sequence[Petition]:
    return (await db.scalars(select(Petition).where(_mine(me)).order_by(Petition.id.desc()))).all()


async def my_case(db: AsyncSession, me: PortalPrincipal, case_id: int) -> Petition:
    """The case if ``me`` is one of its petitioners; 404 otherwise (as if it did not exist)."""
    case = await db.scalar(select(Petition).where(Petition.id == case_id, _mine(me)))
    if case is None:
        raise NotFoundError("没有找到该信访件")
    return case


async def basic_courts(db: AsyncSession) -> Sequence[Court]:
    return (
        await db.scalars(select(Court).where(Court.level == CourtLevel.basic).order_by(Court.code))
    ).all()


# ---------------------------------------------------------------- submitting online


@dataclass
class MaterialIn:
    """A material the web layer has streamed, sniffed and hashed (not yet kept)."""

    filename: str
    content_type: str
    size: int
    sha256: str
    path: str


MAX_MATERIALS = 10


async def submit(
    db: AsyncSession,
    me: PortalPrincipal,
    *,
    court_id: int,
    category: CaseCategory | None,
    summary: str,
    original_numbers: list[str],
    original_court: str,
    materials: Sequence[MaterialIn],
    settings: Settings,
    address: str | None = None,
) -> cases.Registered:
    """An online petition (网上申诉): a case contact registered at the chosen basic court,
    with its materials. Refuses as registration does (有录必全, lengths); all or nothing."""
    if len(materials) > MAX_MATERIALS:
        raise InvalidError(f"一次最多上传 {MAX_MATERIALS} 份材料", code="too_many_materials")
    reg = cases.Registration(
        channel=None,
        petitioners=[
            cases.PersonIn(
                name=me.name, id_type=IdType.resident_id, id_number=me.id_number, phone=me.phone
            )
        ],
        category=category,
        summary=summary,
        original_numbers=original_numbers,
        original_court=original_court,
        identity_id=me.identity_id,
    )
    done, actor = await cases.register_online(db, court_id, reg, settings=settings, address=address)
    for m in materials:
        await cases.add_material(
            db,
            actor,
            done.case.id,
            filename=m.filename,
            content_type=m.content_type,
            size=m.size,
            sha256=m.sha256,
            path=m.path,
            contact_id=done.contact.id,
        )
    return done


# ---------------------------------------------------------------- following a case

# The timeline entries a petitioner sees; the others (reminders, overdue warnings,
# supervision, leaders, reviews, corrections, the courts' internal feedback) stay inside.
HIDDEN = frozenset(
    {
        EventKind.reminder,
        EventKind.overdue,
        EventKind.escalated,
        EventKind.flagged,
        EventKind.unflagged,
        EventKind.leader,
        EventKind.correction,
        EventKind.review,
        EventKind.meeting_scheduled,
        EventKind.meeting,
        EventKind.reported,
        EventKind.accepted,
        EventKind.returned,
    }
)


@dataclass
class Step:
    """One timeline entry in plain words."""

    at: datetime
    kind: str
    title: str
    text: str
    court: str


@dataclass
class Result:
    """How the case ended, with its grounds."""

    title: str
    ground: str
    text: str


@dataclass
class CaseView:
    case: Petition
    court: str
    handler_court: str
    steps: list[Step]
    materials: Sequence[Material]
    result: Result | None
    requests: list[RequestView] = field(default_factory=list)


def _remark(event: CaseEvent) -> str:
    """The explanation given with a resolution (化解情况说明), written for the petitioner."""
    return str((event.detail or {}).get("remark", ""))


def _plain(event: CaseEvent) -> str:
    """The sentence a petitioner reads for an entry: from its facts, not the staff text
    (which may name staff), except the parts written for the petitioner."""
    kind, d = EventKind(event.kind), event.detail or {}
    if kind is EventKind.registered:
        return f"登记为信访件 {d.get('number', '')}".strip()
    if kind is EventKind.contact:
        return label_of("case_channel", str(d.get("channel", ""))) + (
            "（同一事项再次反映）" if d.get("repeat") else ""
        )
    if kind is EventKind.material:
        return "收到材料"
    if kind is EventKind.triaged:
        if d.get("track") == "litigation":
            guidance = str(d.get("guidance", ""))
            return (
                f"属于诉讼事项，引导至「{label_of('case_procedure', str(d.get('procedure')))}」"
                + (f"：{guidance}" if guidance else "")
            )
        return f"作为信访事项办理（{label_of('handling_mode', str(d.get('mode')))}）"
    if kind is EventKind.assigned:
        return "交由下级法院办理"
    if kind is EventKind.outcome and d.get("outcome"):
        return label_of("visit_outcome", str(d["outcome"]))
    if kind is EventKind.resolved:
        return f"{label_of('resolution_ground', str(d.get('ground')))}：{_remark(event)}"
    if kind is EventKind.terminated:
        return label_of("termination_ground", str(d.get("ground")))
    if kind is EventKind.followup and d.get("result"):
        return label_of("followup_result", str(d["result"]))
    return ""


async def case_view(db: AsyncSession, me: PortalPrincipal, case_id: int) -> CaseView:
    """A case as its petitioner follows it: state, node, the public steps, their own
    materials and the result."""
    case = await my_case(db, me, case_id)
    court_ids = {case.court_id, case.handler_court_id or case.court_id}
    events = (
        await db.scalars(
            select(CaseEvent).where(CaseEvent.petition_id == case.id).order_by(CaseEvent.id)
        )
    ).all()
    court_ids |= {e.court_id for e in events if e.court_id}
    names = dict(
        (await db.execute(select(Court.id, Court.name).where(Court.id.in_(court_ids)))).all()
    )
    steps: list[Step] = []
    result: Result | None = None
    for e in events:
        try:
            kind = EventKind(e.kind)
        except ValueError:
            continue
        if kind in HIDDEN or (e.detail or {}).get("meeting"):  # a 约谈's outcome: internal
            continue
        text = mask_text(_plain(e))
        steps.append(Step(e.at, kind.value, label(kind), text, names.get(e.court_id or 0, "")))
        d = e.detail or {}
        if kind is EventKind.resolved:
            ground = label_of("resolution_ground", str(d.get("ground")))
            result = Result("已化解", ground, mask_text(_remark(e)))
        elif kind is EventKind.terminated:
            ground = label_of("termination_ground", str(d.get("ground")))
            result = Result("信访终结", ground, "")
        elif kind is EventKind.triaged and d.get("track") == "litigation":
            procedure = label_of("case_procedure", str(d.get("procedure")))
            result = Result("已导入诉讼程序", procedure, mask_text(str(d.get("guidance", ""))))
        elif kind is EventKind.reopened:
            result = None
    if case.state not in CLOSED:
        result = None
    materials = (  # what the petitioner sent online, not the court's own scans
        await db.scalars(
            select(Material)
            .where(Material.petition_id == case.id, Material.uploaded_by.is_(None))
            .order_by(Material.id)
        )
    ).all()
    return CaseView(
        case=case,
        court=names.get(case.court_id, ""),
        handler_court=names.get(case.handler_court_id or case.court_id, ""),
        steps=steps,
        materials=materials,
        result=result,
        requests=[r for r in await my_requests(db, me) if r.request.petition_id == case.id],
    )


# ---------------------------------------------------------------- video visits


@dataclass
class RequestView:
    request: VisitRequest
    court: str
    case_number: str
    visit: Visit | None
    room: str


async def request_visit(
    db: AsyncSession, me: PortalPrincipal, case_id: int, *, preferred: str, note: str
) -> VisitRequest:
    """Ask for a video visit about one's case at the basic court that registered it (where
    the reception room is); its operators are told."""
    case = await my_case(db, me, case_id)
    if case.state in CLOSED:
        raise ConflictError("该信访件已办结，如有新情况请重新提交申诉", code="case_closed")
    pending = await db.scalar(
        select(VisitRequest.id).where(
            VisitRequest.petition_id == case.id, VisitRequest.state == VisitRequestState.pending
        )
    )
    if pending is not None:
        raise ConflictError("该信访件已有待法院确认的预约申请", code="request_pending")
    preferred = (preferred or "").strip()
    note = (note or "").strip()
    if len(preferred) > 200:
        raise InvalidError("希望的时间过长（最多 200 字）", code="too_long")
    if len(note) > 2000:
        raise InvalidError("补充说明过长（最多 2000 字）", code="too_long")
    row = VisitRequest(
        identity_id=me.identity_id,
        petition_id=case.id,
        court_id=case.court_id,
        preferred=preferred,
        note=note,
    )
    db.add(row)
    await db.flush()
    operators = (
        await db.scalars(
            select(User.id).where(
                User.court_id == case.court_id, User.role == Role.operator, User.active
            )
        )
    ).all()
    await notify(
        db,
        operators,
        kind="visit_request",
        title=f"网上预约申请：{case.number}",
        body=preferred or "信访人未注明希望的时间",
    )
    return row


async def request_views(db: AsyncSession, rows: Sequence[VisitRequest]) -> list[RequestView]:
    out: list[RequestView] = []
    for r in rows:
        court = await db.get(Court, r.court_id)
        case = await db.get(Petition, r.petition_id)
        visit = await db.get(Visit, r.visit_id) if r.visit_id else None
        room = await db.get(ReceptionRoom, visit.room_id) if visit else None
        out.append(
            RequestView(
                request=r,
                court=court.name if court else "",
                case_number=case.number if case else "",
                visit=visit,
                room=room.name if room else "",
            )
        )
    return out


async def my_requests(db: AsyncSession, me: PortalPrincipal) -> list[RequestView]:
    """The petitioner's visit requests on cases that are still theirs."""
    rows = (
        await db.scalars(
            select(VisitRequest)
            .join(Petition, Petition.id == VisitRequest.petition_id)
            .where(VisitRequest.identity_id == me.identity_id, _mine(me))
            .order_by(VisitRequest.id.desc())
        )
    ).all()
    return await request_views(db, rows)


async def visit_code(
    db: AsyncSession,
    settings: Settings,
    secret: bytes,
    me: PortalPrincipal,
    request_id: int,
    now: datetime | None = None,
) -> tuple[IssuedCode, Visit]:
    """On the day of the booked visit, a fresh one-time code for the petitioner (earlier
    unused ones of this visit are revoked); valid until the visit's end plus the grace."""
    now = now or utcnow()
    view = next((v for v in await my_requests(db, me) if v.request.id == request_id), None)
    if view is None:
        raise NotFoundError("没有找到该预约申请")
    visit = view.visit
    if visit is None or view.request.state is not VisitRequestState.booked:
        raise ConflictError("法院尚未确认接访时间", code="not_booked")
    if visit.state not in OPEN_VISITS:
        raise ConflictError("该次接访已结束或已取消", code="visit_closed")
    if visit.starts_at is None or visit.ends_at is None:
        raise ConflictError("法院尚未确认接访时间", code="not_booked")
    if visit.starts_at.astimezone(settings.tz).date() != now.astimezone(settings.tz).date():
        raise ConflictError(
            f"接访码在接访当天（{local_text(visit.starts_at, settings)[:10]}）提供",
            code="not_today",
        )
    await db.execute(
        update(VisitCode)
        .where(
            VisitCode.visit_id == visit.id,
            VisitCode.role == CodeRole.petitioner,
            VisitCode.used_at.is_(None),
            VisitCode.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    ttl = max(
        visit.ends_at + timedelta(minutes=settings.no_show_grace_minutes) - now,
        timedelta(minutes=30),
    )
    issued = await issue_visit_code(
        db,
        secret=secret,
        visit_id=visit.id,
        role=CodeRole.petitioner,
        ttl=ttl,
        length=settings.visit_code_length,
        label="网上申诉",
        now=now,
    )
    return issued, visit


# ---------------------------------------------------------------- the court's side


async def court_requests(db: AsyncSession, actor: Actor) -> list[RequestView]:
    """The pending requests of the operator's court (an admin: every court's)."""
    query = select(VisitRequest).where(VisitRequest.state == VisitRequestState.pending)
    if not actor.is_admin:
        if actor.role is not Role.operator:
            raise PermissionDeniedError("只有操作员可以处理网上预约申请")
        query = query.where(VisitRequest.court_id == actor.court_id)
    return await request_views(db, (await db.scalars(query.order_by(VisitRequest.id))).all())


async def pending_request(db: AsyncSession, actor: Actor, request_id: int) -> VisitRequest:
    row = await db.get(VisitRequest, request_id)
    if row is None or not (actor.is_admin or row.court_id == actor.court_id):
        raise NotFoundError("预约申请不存在")
    if row.state is not VisitRequestState.pending:
        raise ConflictError("该预约申请已处理", code="request_done")
    return row


async def book_request(
    db: AsyncSession, actor: Actor, settings: Settings, request_id: int, plan: BookingPlan
) -> tuple[Visit, SmsMessage | None]:
    """Confirm a request by booking its visit (the booking flow's plan, already checked);
    the petitioner is told the time by SMS."""
    row = await pending_request(db, actor, request_id)
    if plan.petition.id != row.petition_id:
        raise InvalidError("预约的信访件与申请不一致", code="wrong_case")
    visit = await commit_booking(db, actor, settings, plan)
    assert visit.starts_at is not None
    done = await db.execute(
        update(VisitRequest)
        .where(VisitRequest.id == row.id, VisitRequest.state == VisitRequestState.pending)
        .values(
            state=VisitRequestState.booked,
            visit_id=visit.id,
            booked_at=utcnow(),
            booked_by=actor.user_id,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(done, "rowcount", 1) != 1:
        raise ConflictError("该预约申请刚被他人处理", code="request_done")
    message = None
    person = await db.scalar(
        select(Petitioner)
        .join(Petition, Petition.petitioner_id == Petitioner.id)
        .where(Petition.id == row.petition_id)
    )
    court = await db.get(Court, row.court_id)
    if person is not None and person.phone:
        message = queue_sms(
            db,
            person.phone,
            f"【人民法院网上信访】您申请的视频接访已确认：{local_text(visit.starts_at, settings)}，"
            f"{court.name if court else ''}。当天可在网上信访页面获取接访码。",
            purpose="visit_booked",
            court_id=row.court_id,
        )
        await db.flush()
    return visit, message
