"""Petition case handling: registration (有录必全, 重复访), triage (诉访分离), assignment and
supervision (交办督办), closing (化解, 信访终结, 回访, 评查), the lists, the board and the
timeline, and the deadline scan of the housekeeping job.

Every change goes through :func:`_act`, which asks :mod:`scheduler.cases.rules`, moves the
state with a guarded UPDATE (two clerks acting at once: one wins, the other gets a 409) and
writes a timeline entry with its audit event.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BindParameter,
    Integer,
    Select,
    and_,
    bindparam,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import case as sql_case
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value

from config.audit import record_audit
from config.db import ThreadRead, add_row, prepared, table_of, utcnow
from config.errors import ConflictError, InvalidError, NotFoundError, PermissionDeniedError
from config.privacy import mask_id_number, mask_phone, mask_text
from config.settings import Settings
from config.vocabulary import label, label_of
from scheduler.cases.models import (
    Assignment,
    CaseEvent,
    CasePetitioner,
    CaseRef,
    Contact,
    DeadlineRule,
    FollowUp,
    Material,
)
from scheduler.cases.rules import (
    CLOSED,
    HANDLERS,
    NODE_OF,
    OPEN,
    CaseAction,
    Standing,
    may,
    next_state,
    refusal,
)
from scheduler.cases.timeline import Entry, add_event, add_events
from scheduler.cases.visits import count_contact
from scheduler.cases.words import (
    CHANNEL_BITS,
    AidStage,
    AssignmentState,
    CaseCategory,
    CaseState,
    CaseTrack,
    Channel,
    EventKind,
    FollowUpResult,
    HandlingMode,
    Node,
    Procedure,
    ResolutionGround,
    ReviewRating,
    TerminationGround,
    resolution_grounds,
)
from scheduler.models import Court, CourtLevel, IdType, Petition, Petitioner, Role, User
from scheduler.notify import Notice, notify, notify_many
from scheduler.portal.identity import check_phone
from scheduler.scope import Actor, ancestor_court_ids, descendant_court_ids
from scheduler.service import Page, check_id_number
from scheduler.visits import local_text

# ---------------------------------------------------------------- reading a case


async def standing(db: AsyncSession, actor: Actor, case: Petition) -> Standing:
    """How the actor's court stands to ``case`` (one query up the court tree)."""
    if actor.court_id is None:
        return Standing()
    court = await db.get(Court, actor.court_id)
    handler = case.handler_court_id or case.court_id
    above = await ancestor_court_ids(db, handler)
    return Standing(
        handler=handler == actor.court_id,
        registrar=case.court_id == actor.court_id,
        supervisor=actor.court_id in above,
        assigner=case.state in (CaseState.assigned, CaseState.reported)
        and case.supervising_court_id == actor.court_id,
        level=court.level if court is not None else None,
    )


async def get_case(
    db: AsyncSession, actor: Actor, case_id: int, action: CaseAction = CaseAction.view
) -> tuple[Petition, Standing]:
    """The case if ``actor`` may see it (404 otherwise) and may take ``action`` (403/409)."""
    case = await db.get(Petition, case_id)
    if case is None:
        raise NotFoundError(f"信访件 {case_id} 不存在")
    where = await standing(db, actor, case)
    if not may(actor, CaseAction.view, case.state, where):
        raise NotFoundError(f"信访件 {case_id} 不存在")
    if action is not CaseAction.view and not may(actor, action, case.state, where):
        message = refusal(actor, action, case.state, where)
        if next_state(case.state, action) is None:
            raise ConflictError(message, code="case_state")
        raise PermissionDeniedError(message)
    return case, where


# The registration desk's statements, built once of table columns (no statement building or
# ORM loading per call; see docs/architecture.md, "Performance of the booking desk").
_RULE_DAYS = prepared(
    select(table_of(DeadlineRule).c.days).where(table_of(DeadlineRule).c.node == bindparam("node"))
)
_DUPLICATE = prepared(
    select(table_of(CaseRef).c.petition_id)
    .where(
        table_of(CaseRef).c.identity_key == bindparam("key"),
        table_of(CaseRef).c.number.in_(bindparam("numbers", expanding=True)),
    )
    .order_by(table_of(CaseRef).c.petition_id)
    .limit(1)
)
_PETITIONER_AT = select(Petitioner).where(
    Petitioner.court_id == bindparam("court_id"),
    Petitioner.id_type == bindparam("id_type"),
    Petitioner.id_number == bindparam("id_number"),
)
_COURT_NAMES = prepared(
    select(table_of(Court).c.id, table_of(Court).c.name).where(
        table_of(Court).c.id.in_(bindparam("ids", expanding=True))
    )
)
_USER_NAMES = prepared(
    select(table_of(User).c.id, table_of(User).c.display_name).where(
        table_of(User).c.id.in_(bindparam("ids", expanding=True))
    )
)
_PETITIONER_NAMES = prepared(
    select(table_of(Petitioner).c.id, table_of(Petitioner).c.name).where(
        table_of(Petitioner).c.id.in_(bindparam("ids", expanding=True))
    )
)


def day_end(instant: datetime, settings: Settings) -> datetime:
    """The end of ``instant``'s day in court time (23:59:59): a deadline counted in days is
    due then, as one typed as a day on the case page is."""
    local = instant.astimezone(settings.tz)
    return datetime.combine(local.date(), clock_time(23, 59, 59), tzinfo=settings.tz)


async def deadline_for(
    db: AsyncSession, node: Node, start: datetime, settings: Settings
) -> datetime | None:
    """When ``node`` entered at ``start`` is due by the configured rule: the end of the
    court's day ``days`` later (None: no deadline)."""
    days = (await db.execute(_RULE_DAYS, {"node": node})).scalar()
    return None if days is None else day_end(start + timedelta(days=days), settings)


async def _act(
    db: AsyncSession,
    actor: Actor,
    case_id: int,
    action: CaseAction,
    kind: EventKind,
    text: str,
    *,
    detail: dict[str, Any] | None = None,
    due_at: datetime | bool | None = True,
    values: dict[str, Any] | None = None,
    settings: Settings | None = None,
    chained: bool = False,
) -> Petition:
    """Take ``action`` on the case: check the rule, move its state (guarded against a
    concurrent change), set its node and deadline, and add the timeline entry. The UPDATE
    holds only if the state and every column in ``values`` are still as read (two clerks
    naming an owner at once on PostgreSQL: one wins, the other gets 409). ``chained``: the
    case is under a hand-over from above that stays open (``rules.CHAINED``).

    ``due_at``: True computes the new node's deadline from the rules when the node changes
    (the action passes ``settings`` then: the day ends in court time); a datetime or None
    sets it; False leaves it. A closing action keeps the deadline it replaces in
    ``closed_due_at`` (按期办结率); reopening clears that.
    """
    case, _ = await get_case(db, actor, case_id, action)
    old = case.state
    new = next_state(old, action, chained=chained)
    assert new is not None
    changes: dict[str, Any] = dict(values or {})
    guards = [Petition.id == case.id, Petition.state == old]
    for name in values or {}:
        column, seen = getattr(Petition, name), getattr(case, name)
        guards.append(column.is_(None) if seen is None else column == seen)
    now = utcnow()
    if new is not old:
        changes["state"] = new
        changes["node"] = NODE_OF[new]
        changes["reminded_at"] = None
        changes["overdue_at"] = None
        changes["closed_at"] = now if new in CLOSED else None
        # the deadline running as the case closes, for 按期办结率: closing replaces due_at
        # below (化解: the 回访 deadline; 信访终结, 导入诉讼: none). The column, not the value
        # read above: SET reads the row as it was before this UPDATE. Reopening clears it.
        changes["closed_due_at"] = Petition.due_at if new in CLOSED else None
        if due_at is True:
            if settings is None:
                raise TypeError(f"{action.value}: a deadline from the rules needs settings")
            changes["due_at"] = await deadline_for(db, NODE_OF[new], now, settings)
    if due_at is not True and due_at is not False:
        changes["due_at"] = due_at
        changes["reminded_at"] = None
        changes["overdue_at"] = None
    if changes:
        changes["updated_at"] = now
        done = await db.execute(
            update(Petition)
            .where(*guards)
            .values(**changes)
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise ConflictError("信访件刚被他人修改，请刷新后重试", code="case_changed")
        await db.refresh(case)
    add_event(
        db,
        case.id,
        kind,
        actor,
        text,
        detail={"state": case.state.value, **(detail or {})},
    )
    return case


def _clause(text: str, limit: int = 400) -> str:
    """Free text quoted inside a sentence: cut to ``limit``, its closing punctuation dropped
    (the sentence goes on: no "。；")."""
    return text[:limit].rstrip().rstrip("。；;，,、.！!？?")


def _text(value: str, name: str, *, required: bool = True, limit: int = 4000) -> str:
    value = (value or "").strip()
    if required and not value:
        raise InvalidError(f"请填写{name}", code="missing_field", details={"fields": [name]})
    if len(value) > limit:
        raise InvalidError(f"{name}过长（最多 {limit} 字）", code="too_long")
    return value


# ---------------------------------------------------------------- registration

_CASE_NO_SPACES = re.compile(r"\s+")


def normalize_case_number(value: str) -> str:
    """An original case number as compared: half-width brackets, no spaces."""
    return _CASE_NO_SPACES.sub("", value.replace("（", "(").replace("）", ")")).strip()


FIRST_CASE_YEAR = 1990  # the earliest year an original case number is looked up under
# The earliest contact a clerk may record (a letter of 1900 would be overdue at once).
EARLIEST_CONTACT = datetime(FIRST_CASE_YEAR, 1, 1, tzinfo=UTC)


def contact_time(value: datetime | None, now: datetime) -> datetime:
    """When a contact happened, as typed (``now`` when not given): not after now (five
    minutes of clock drift allowed), not before 1990, and a real instant (0001-01-01 at
    +14:00 lies before the calendar in UTC)."""
    if value is None:
        return now
    try:
        at = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidError("来访来信时间无效", code="invalid_time") from None
    if at > now + timedelta(minutes=5):
        raise InvalidError("来访来信时间不能晚于现在", code="future_contact")
    if at < EARLIEST_CONTACT:
        raise InvalidError(
            f"来访来信时间不能早于 {FIRST_CASE_YEAR} 年 1 月 1 日", code="too_early_contact"
        )
    return value


def normalize_phone(value: str) -> str:
    """A phone number as stored and compared: a mainland mobile number as its 11 digits
    (spaces, dashes and +86 dropped, as the portal's ``check_phone`` proves it), any other
    number as typed. The portal finds a petitioner's cases by the stored number."""
    value = (value or "").strip()
    try:
        return check_phone(value)
    except InvalidError:
        return value[:20]


def number_spellings(typed: str, now: datetime) -> list[str]:
    """The stored (normalized) original numbers a search for ``typed`` finds: the number
    itself, with 号 if it was left out, and, typed without its year (京0108执567), under each
    year since FIRST_CASE_YEAR. Each is looked up in the index: no scan of every number."""
    n = normalize_case_number(typed)
    if not n:
        return []
    bare = [n, n + "号"] if not n.endswith("号") else [n]
    if n.startswith("("):
        return bare
    years = range(FIRST_CASE_YEAR, now.year + 2)
    return [*bare, *(f"({y}){b}" for y in years for b in bare)]


def identity_key(id_type: IdType, id_number: str) -> str:
    """A petitioner's identity as the duplicate check keys it (never the number itself)."""
    return hashlib.sha256(f"{id_type.value}|{id_number}".encode()).hexdigest()


@dataclass
class PersonIn:
    """A petitioner as the registration form gives them."""

    name: str
    id_type: IdType
    id_number: str
    phone: str = ""


@dataclass
class Registration:
    """One registration: the first contact of a matter, or a further one (重复访)."""

    channel: Channel | None
    petitioners: list[PersonIn]
    category: CaseCategory | None
    summary: str
    original_numbers: list[str]
    original_court: str
    people_count: int = 1
    occurred_at: datetime | None = None
    contact_summary: str = ""
    number: str = ""
    visit_id: str | None = None
    # online (网上申诉): the portal identity (an ID number with the phone its SMS code proved)
    # that submitted it, kept in the contact's timeline entry (``PORTAL_IDENTITY``)
    identity_id: int | None = None


@dataclass
class Registered:
    case: Petition
    contact: Contact
    linked: bool  # True: a further contact on a case already registered (重复访)
    missing: list[str] = field(default_factory=list)


# 有录必全: the fields a court must fill to register a contact, as the error names them.
REQUIRED_FIELDS = (
    "来源渠道",
    "信访人姓名",
    "证件号码",
    "案件类别",
    "信访诉求",
    "原案号",
    "原审法院",
)


def _missing(reg: Registration) -> list[str]:
    missing: list[str] = []
    if reg.channel is None:
        missing.append("来源渠道")
    if not reg.petitioners or not all(p.name.strip() for p in reg.petitioners):
        missing.append("信访人姓名")
    if not reg.petitioners or not all(p.id_number.strip() for p in reg.petitioners):
        missing.append("证件号码")
    if reg.category is None:
        missing.append("案件类别")
    if not reg.summary.strip():
        missing.append("信访诉求")
    if not [n for n in reg.original_numbers if normalize_case_number(n)]:
        missing.append("原案号")
    if not reg.original_court.strip():
        missing.append("原审法院")
    return missing


def online_refusal() -> InvalidError:
    """The one answer an online petition gets when what was proved does not match the record
    on file (another name for the ID number, or a matter registered under another name or
    phone): it names nothing on file, so an ID number alone reveals nobody's name."""
    return InvalidError(
        "提交未成功：填写的身份信息与法院已登记的信息不一致。请核对姓名和证件号码；"
        "如更换了手机号码或信息有误，请携带身份证件到法院信访窗口办理",
        code="identity_mismatch",
    )


async def _petitioner_at(db: AsyncSession, actor: Actor, court_id: int, p: PersonIn) -> Petitioner:
    """The court's petitioner of this ID number, registered now if new. One already on file
    under another name is refused (a mistyped number would otherwise file the matter under
    somebody else; online the refusal names nobody); a phone number is filled in where none
    is on file, and a clerk typing another is told the one on file (nothing stored is
    overwritten; left empty, it is kept). Online (no clerk) the number on file is kept.
    Phone numbers are stored normalized (``normalize_phone``)."""
    number = check_id_number(p.id_type, p.id_number)
    found = await db.scalar(
        _PETITIONER_AT, {"court_id": court_id, "id_type": p.id_type, "id_number": number}
    )
    if found is not None:
        name, phone = p.name.strip(), normalize_phone(p.phone)
        if name and name != found.name:
            if actor.user_id is None:
                raise online_refusal()
            raise InvalidError(
                f"证件号码 {mask_id_number(number)} 已登记为信访人「{found.name}」，"
                f"与填写的姓名「{name}」不一致，请核对证件号码和姓名",
                code="name_mismatch",
            )
        if phone and not found.phone:
            found.phone = phone
        elif phone and phone == normalize_phone(found.phone):
            found.phone = phone  # the same number, as stored now (138-1234-5678 before)
        elif phone and actor.user_id is not None:
            raise InvalidError(
                f"信访人「{found.name}」登记的电话为 {mask_phone(found.phone)}，与填写的不一致；"
                "请核对，或将电话留空沿用已登记的号码",
                code="phone_mismatch",
            )
        return found
    person = Petitioner(
        court_id=court_id,
        name=_text(p.name, "信访人姓名", limit=64),
        id_type=p.id_type,
        id_number=number,
        phone=normalize_phone(p.phone),
        created_by=actor.user_id,
    )
    await add_row(db, person)
    return person


async def find_duplicate(
    db: AsyncSession, id_type: IdType, id_number: str, numbers: Sequence[str]
) -> Petition | None:
    """The case already registered for this petitioner and one of these original numbers."""
    keys = [normalize_case_number(n) for n in numbers if normalize_case_number(n)]
    if not keys:
        return None
    key = identity_key(id_type, check_id_number(id_type, id_number))
    pid = (await db.execute(_DUPLICATE, {"key": key, "numbers": keys})).scalar()
    return None if pid is None else await db.get(Petition, pid)


def _group(people: int) -> str:
    return f"等{people}人" if people > 1 else ""


def _registration_number(court: Court, now: datetime, settings: Settings) -> str:
    """A new case's number: court, the court's local year, date and time, and a random
    tail, so two clerks of one court registering in the same instant never collide."""
    tail = secrets.token_hex(2).upper()
    local = now.astimezone(settings.tz)
    return f"（{local.year}）{court.code}信{local.strftime('%m%d%H%M%S')}{tail}"


async def register(
    db: AsyncSession, actor: Actor, reg: Registration, *, settings: Settings
) -> Registered:
    """Register a contact: a new case, or a further contact linked to the case already
    registered for the same petitioner and original case number (重复访).

    Refuses an incomplete record, naming every missing field (有录必全).
    """
    if actor.role not in (
        Role.operator,
        Role.judge,
        Role.petition_officer,
        Role.leader,
        Role.admin,
    ):
        raise PermissionDeniedError("无权登记信访件")
    if actor.court_id is None:
        raise InvalidError("管理员请以法院工作人员账号登记", code="court_required")
    missing = _missing(reg)
    if missing:
        raise InvalidError(
            "登记信息不完整，请填写：" + "、".join(missing),
            code="incomplete_record",
            details={"fields": missing},
        )
    assert reg.channel is not None and reg.category is not None
    if reg.people_count < len(reg.petitioners) or reg.people_count > 10000:
        raise InvalidError("来访人数不能少于登记的信访人数", code="invalid_people_count")
    now = utcnow()
    occurred = contact_time(reg.occurred_at, now)
    lead = reg.petitioners[0]
    numbers = list(dict.fromkeys(normalize_case_number(n) for n in reg.original_numbers))
    numbers = [n for n in numbers if n]
    if any(len(n) > 64 for n in numbers):
        raise InvalidError("原案号过长", code="too_long")
    summary = _text(reg.summary, "信访诉求")
    original_court = _text(reg.original_court, "原审法院", limit=128)
    existing = await find_duplicate(db, lead.id_type, lead.id_number, numbers)
    if existing is not None:
        # online nobody checked a document: only the petitioner on file (their name and the
        # phone proved by SMS), or the portal identity that submitted the case, adds to it
        if actor.user_id is None and not await _online_may_link(db, existing, lead, reg):
            raise online_refusal()
        contact = await _contact(
            db,
            actor,
            existing,
            reg.channel,
            occurred,
            reg.contact_summary or summary,
            reg.people_count,
            repeat=True,
            visit_id=reg.visit_id,
            identity_id=reg.identity_id,
        )
        return Registered(existing, contact, linked=True)
    court = await db.get(Court, actor.court_id)
    assert court is not None
    people = [await _petitioner_at(db, actor, court.id, p) for p in reg.petitioners]
    if len({p.id for p in people}) != len(people):
        raise InvalidError("同一信访人登记了两次", code="duplicate_petitioner")
    case = Petition(
        court_id=court.id,
        handler_court_id=court.id,
        petitioner_id=people[0].id,
        number=_text(reg.number, "登记编号", required=False, limit=64)
        or _registration_number(court, now, settings),
        category=reg.category.value,
        summary=summary,
        judgment_ref=numbers[0],
        original_court=original_court,
        channel=reg.channel,
        people_count=reg.people_count,
        state=CaseState.registered,
        node=Node.triage,
        # counted from when the letter came or the visit was (a clerk may register it later)
        due_at=await deadline_for(db, Node.triage, occurred, settings),
        contact_count=0,
        created_by=actor.user_id,
    )
    # the case, its original numbers and further petitioners are written as statements
    try:
        async with db.begin_nested():
            await add_row(db, case)
            key = identity_key(lead.id_type, people[0].id_number)
            await db.execute(
                _INSERT_REFS,
                [{"petition_id": case.id, "number": n, "identity_key": key} for n in numbers],
            )
            if len(people) > 1:
                await db.execute(
                    _INSERT_CO_PETITIONERS,
                    [{"petition_id": case.id, "petitioner_id": p.id} for p in people[1:]],
                )
    except IntegrityError as exc:
        if case in db:
            db.expunge(case)
        raise ConflictError(
            "同一事项刚刚已被登记，请重新提交以作为重复访关联到该信访件",
            code="duplicate_case",
        ) from exc
    registered = Entry(
        case.id,
        EventKind.registered,
        f"登记信访件 {case.number}（{label(reg.channel)}，{label(reg.category)}，"
        f"信访人 {people[0].name}{_group(reg.people_count)}）",
        detail={
            "number": case.number,
            "original_numbers": numbers,
            "id_number": mask_id_number(people[0].id_number),
        },
    )
    contact = await _contact(
        db,
        actor,
        case,
        reg.channel,
        occurred,
        reg.contact_summary or summary,
        reg.people_count,
        repeat=False,
        visit_id=reg.visit_id,
        before=[registered],
        identity_id=reg.identity_id,
    )
    return Registered(case, contact, linked=False)


# The key of an online contact's timeline entry naming the portal identity that submitted it.
PORTAL_IDENTITY = "portal_identity_id"


def submitted_by(identity_id: int) -> Any:
    """The timeline entries of the contacts the portal identity ``identity_id`` submitted
    (a condition on ``case_events``)."""
    detail = table_of(CaseEvent).c.detail
    return and_(
        CaseEvent.kind == EventKind.contact.value,
        detail[PORTAL_IDENTITY].as_integer() == identity_id,
    )


async def _online_may_link(
    db: AsyncSession, case: Petition, lead: PersonIn, reg: Registration
) -> bool:
    """Whether an online petition may be added to ``case`` (重复访): its lead petitioner has
    the name given and the phone proved, or this portal identity submitted the case (the
    same person, whose phone on file is another)."""
    person = await db.get(Petitioner, case.petitioner_id)
    if person is None or person.name != lead.name.strip():
        return False
    phone = normalize_phone(lead.phone)
    if phone and normalize_phone(person.phone) == phone:
        return True
    if reg.identity_id is None:
        return False
    found = await db.scalar(
        select(CaseEvent.id)
        .where(CaseEvent.petition_id == case.id, submitted_by(reg.identity_id))
        .limit(1)
    )
    return found is not None


ONLINE_ACTOR_NAME = "网上申诉"


def online_actor(court_id: int, address: str | None = None) -> Actor:
    """The system actor a court registers online petitions (网上申诉) with: no staff account,
    the court's own standing (it registers the case, so it may add the petition's materials)."""
    return Actor(
        user_id=None,
        username=ONLINE_ACTOR_NAME,
        role=Role.operator,
        court_id=court_id,
        address=address,
    )


async def register_online(
    db: AsyncSession,
    court_id: int,
    reg: Registration,
    *,
    settings: Settings,
    address: str | None = None,
) -> tuple[Registered, Actor]:
    """An online petition becomes a contact of channel 网上申诉 at the basic court the
    petitioner chose; returns it and the actor that may add its materials (the registering
    court's, also when the contact was linked to a case registered elsewhere: 重复访).

    ``reg``'s lead petitioner is the one the portal proved (name, ID number, the phone of
    the SMS code) and ``reg.identity_id`` their portal identity: a matter already registered
    is linked only when it is theirs (``_online_may_link``), otherwise refused without
    naming anything on file (``online_refusal``)."""
    court = await db.get(Court, court_id)
    if court is None or court.level is not CourtLevel.basic:
        raise InvalidError("请选择一个基层人民法院", code="invalid_court")
    reg.channel = Channel.online
    done = await register(db, online_actor(court_id, address), reg, settings=settings)
    return done, online_actor(done.case.court_id, address)


_INSERT_REFS = prepared(insert(table_of(CaseRef)))
_INSERT_CO_PETITIONERS = prepared(insert(table_of(CasePetitioner)))


async def _contact(
    db: AsyncSession,
    actor: Actor,
    case: Petition,
    channel: Channel,
    occurred: datetime,
    summary: str,
    people: int,
    *,
    repeat: bool,
    visit_id: str | None = None,
    before: Sequence[Entry] = (),
    identity_id: int | None = None,
) -> Contact:
    """Write the contact, count it on its case, and add its timeline entry after the
    entries ``before`` (all as statements, no unit of work)."""
    assert actor.court_id is not None
    contact = Contact(
        petition_id=case.id,
        court_id=actor.court_id,
        channel=channel,
        occurred_at=occurred,
        summary=summary[:4000],
        people_count=max(1, people),
        repeat=repeat,
        visit_id=visit_id,
        registered_by=actor.user_id,
    )
    await add_row(db, contact)
    count, at = await count_contact(db, case.id, channel)
    # the case as stored now, without reading it again (the answer shows its count)
    set_committed_value(case, "contact_count", count)
    set_committed_value(case, "updated_at", at)
    entry = Entry(
        case.id,
        EventKind.contact,
        f"{'重复访：' if repeat else ''}{label(channel)}"
        + (f"，{summary[:60]}" if summary else ""),
        detail={"contact_id": contact.id, "channel": channel.value, "repeat": repeat}
        | ({"visit_id": visit_id} if visit_id else {})
        | ({PORTAL_IDENTITY: identity_id} if identity_id is not None else {}),
    )
    await add_events(db, actor, [*before, entry])
    return contact


async def add_contact(
    db: AsyncSession,
    actor: Actor,
    case_id: int,
    *,
    channel: Channel,
    occurred_at: datetime | None,
    summary: str,
    people_count: int = 1,
    visit_id: str | None = None,
) -> Contact:
    """A further contact (a letter, a visit, a call) on a registered case (重复访)."""
    case, _ = await get_case(db, actor, case_id, CaseAction.add_contact)
    occurred = contact_time(occurred_at, utcnow())
    if people_count < 1:
        raise InvalidError("来访人数至少为 1", code="invalid_people_count")
    return await _contact(
        db,
        actor,
        case,
        channel,
        occurred,
        _text(summary, "内容摘要"),
        people_count,
        repeat=True,
        visit_id=visit_id,
    )


# ---------------------------------------------------------------- materials

MATERIAL_TYPES = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png"}


def sniff_material(head: bytes) -> str | None:
    """The content type of an upload by its first bytes (PDF, JPEG or PNG), else None."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    return None


def materials_dir(settings: Settings) -> Path:
    return settings.data_dir / "materials"


async def add_material(
    db: AsyncSession,
    actor: Actor,
    case_id: int,
    *,
    filename: str,
    content_type: str,
    size: int,
    sha256: str,
    path: str,
    contact_id: int | None = None,
) -> Material:
    """Record a material already stored whole (the web layer streams, hashes and renames it
    into place before calling this; it removes the file again if this refuses). A court
    adds the materials of a contact it registered itself also to a case it may not see (a
    重复访 linked to another branch's case: :func:`contact_for_upload`)."""
    contact = await db.get(Contact, contact_id) if contact_id is not None else None
    own = await db.get(Petition, case_id) if _registered_here(actor, contact) else None
    if own is not None and contact is not None and contact.petition_id == own.id:
        case = own
    else:
        case, _ = await get_case(db, actor, case_id, CaseAction.upload)
        if contact_id is not None and (contact is None or contact.petition_id != case.id):
            raise InvalidError("该来访来信记录不属于本信访件", code="invalid_contact")
    material = Material(
        petition_id=case.id,
        contact_id=contact_id,
        filename=filename[:255],
        content_type=content_type,
        size=size,
        sha256=sha256,
        path=path,
        uploaded_by=actor.user_id,
    )
    db.add(material)
    await db.flush()
    add_event(
        db,
        case.id,
        EventKind.material,
        actor,
        f"上传材料《{filename[:80]}》（{size // 1024 or 1} KB）",
        detail={"material_id": material.id, "sha256": sha256},
    )
    return material


def _registered_here(actor: Actor, contact: Contact | None) -> bool:
    """Whether ``contact`` was registered by the actor's own court (and the actor handles
    cases): its materials are the court's to add, whoever handles the case."""
    return (
        contact is not None
        and actor.role in HANDLERS
        and actor.court_id is not None
        and contact.court_id == actor.court_id
    )


async def contact_for_upload(db: AsyncSession, actor: Actor, contact_id: int) -> Contact:
    """The contact whose materials the actor is about to upload: one their court registered
    (also on a case another court handles and the actor may not see), or one of a case they
    may add materials to; 404 otherwise, as if it did not exist."""
    contact = await db.get(Contact, contact_id)
    if contact is None:
        raise NotFoundError("来访来信记录不存在")
    if not _registered_here(actor, contact):
        try:
            await get_case(db, actor, contact.petition_id, CaseAction.upload)
        except NotFoundError:
            raise NotFoundError("来访来信记录不存在") from None
    return contact


async def get_material(db: AsyncSession, actor: Actor, material_id: int) -> Material:
    material = await db.get(Material, material_id)
    if material is None:
        raise NotFoundError("材料不存在")
    await get_case(db, actor, material.petition_id)
    return material


# ---------------------------------------------------------------- triage and ownership


async def _court_user(db: AsyncSession, user_id: int, court_id: int) -> User:
    user = await db.get(User, user_id)
    if user is None or not user.active or user.court_id != court_id:
        raise InvalidError("责任人须为承办法院的在职工作人员", code="invalid_owner")
    return user


async def triage(
    db: AsyncSession,
    actor: Actor,
    case_id: int,
    *,
    track: CaseTrack,
    procedure: Procedure | None = None,
    guidance: str = "",
    mode: HandlingMode | None = None,
    responsible_id: int | None = None,
    settings: Settings,
) -> Petition:
    """分流: a litigation matter is guided to a legal procedure (recorded with the guidance
    given); a petition matter gets a handling mode and a responsible person (首办责任)."""
    if track is CaseTrack.litigation:
        if procedure is None:
            raise InvalidError("请选择导入的诉讼程序", code="missing_field")
        text = _text(guidance, "释明引导内容")
        return await _act(
            db,
            actor,
            case_id,
            CaseAction.triage_litigation,
            EventKind.triaged,
            f"分流为诉讼事项，引导至「{label(procedure)}」：{text[:200]}",
            detail={"track": track.value, "procedure": procedure.value, "guidance": text},
            values={"track": track, "procedure": procedure.value},
            settings=settings,
        )
    if track is not CaseTrack.petition:
        raise InvalidError("请选择诉讼事项或信访事项", code="missing_field")
    if mode is None:
        raise InvalidError("请选择办理方式", code="missing_field")
    if responsible_id is None:
        raise InvalidError("请指定首办责任人", code="missing_field")
    assert actor.court_id is not None or actor.is_admin
    case, _ = await get_case(db, actor, case_id, CaseAction.triage_petition)
    owner = await _court_user(db, responsible_id, case.handler_court_id or case.court_id)
    return await _act(
        db,
        actor,
        case_id,
        CaseAction.triage_petition,
        EventKind.triaged,
        f"分流为信访事项，{label(mode)}，首办责任人 {owner.display_name}",
        detail={"track": track.value, "mode": mode.value, "responsible_id": owner.id},
        values={"track": track, "mode": mode, "responsible_id": owner.id},
        settings=settings,
    )


async def set_owner(
    db: AsyncSession, actor: Actor, case_id: int, *, responsible_id: int, reason: str = ""
) -> Petition:
    """Name the responsible person; a case has one, so a change names why (no second owner)."""
    case, _ = await get_case(db, actor, case_id, CaseAction.set_owner)
    owner = await _court_user(db, responsible_id, case.handler_court_id or case.court_id)
    if case.responsible_id == owner.id:
        raise ConflictError(f"{owner.display_name} 已是本件首办责任人", code="same_owner")
    if case.responsible_id is not None and not reason.strip():
        raise ConflictError("本件已有首办责任人；更换责任人须说明理由", code="second_owner")
    return await _act(
        db,
        actor,
        case_id,
        CaseAction.set_owner,
        EventKind.owner,
        f"首办责任人：{owner.display_name}"
        + (f"（更换理由：{reason.strip()[:200]}）" if reason.strip() else ""),
        detail={"responsible_id": owner.id},
        due_at=False,
        values={"responsible_id": owner.id},
    )


# ---------------------------------------------------------------- assignment and supervision


async def assign(
    db: AsyncSession,
    actor: Actor,
    case_id: int,
    *,
    to_court_id: int,
    deadline: datetime | None,
    settings: Settings,
    instructions: str = "",
) -> Assignment:
    """交办: hand the case to a court below the assigning court with a feedback deadline
    (by default the feedback node's rule).

    A court that was itself handed the case hands it further down (交办 further down): the
    hand-over from above stays open, and the new deadline is not later than the one the
    court above set (by default the earlier of the two). What the acting court or a court
    below it handed down before is withdrawn (改派); a court above redirecting the case
    withdraws the whole chain below it. A court between the handling court and a court
    above that handed the case directly to it may not step in (409 ``assigned_above``)."""
    case, _ = await get_case(db, actor, case_id, CaseAction.assign)
    if actor.court_id is None:
        raise InvalidError("管理员请以上级法院工作人员账号交办", code="court_required")
    mine = await descendant_court_ids(db, actor.court_id)  # the acting court and below
    below = mine - {actor.court_id}
    if to_court_id not in below:
        raise InvalidError("只能交办给本院的下级法院", code="not_below")
    chain = await assignment_chain(db, case)
    withdrawn = [a for a in chain if a.from_court_id in mine]
    upper = next((a for a in chain if a.from_court_id not in mine), None)
    if upper is not None and upper.to_court_id != actor.court_id:
        names = await _court_names(db, {upper.from_court_id, upper.to_court_id})
        raise ConflictError(
            f"本件由{names[upper.from_court_id]}交办{names[upper.to_court_id]}办理，"
            "正在等待其反馈，本院不能另行交办",
            code="assigned_above",
        )
    now = utcnow()
    due = await _feedback_deadline(db, deadline, now, upper, settings)
    if due > now + timedelta(days=366):
        raise InvalidError("反馈期限不能超过一年", code="deadline_too_far")
    target = await db.get(Court, to_court_id)
    assert target is not None
    for a in withdrawn:
        a.state = AssignmentState.withdrawn
    before = await _court_names(db, {a.to_court_id for a in withdrawn})
    pending = list(dict.fromkeys(a.to_court_id for a in reversed(withdrawn)))  # outermost first
    row = Assignment(
        petition_id=case.id,
        from_court_id=actor.court_id,
        to_court_id=to_court_id,
        deadline=due,
        instructions=instructions.strip()[:4000],
        assigned_by=actor.user_id,
        assigned_at=now,
    )
    db.add(row)
    await db.flush()
    await _act(
        db,
        actor,
        case_id,
        CaseAction.assign,
        EventKind.assigned,
        (f"改派（原承办：{'、'.join(before[c] for c in pending)}）：" if pending else "")
        + f"交办 {target.name}，限 {local_text(due, settings)} 前反馈"
        + (f"：{_clause(row.instructions, 200)}" if row.instructions else "")
        + ("；首办责任人由承办法院重新确定" if case.responsible_id is not None else ""),
        detail={"assignment_id": row.id, "to_court_id": to_court_id, "deadline": due.isoformat()},
        due_at=due,
        values={
            "handler_court_id": to_court_id,
            "supervising_court_id": actor.court_id,
            "responsible_id": None,
        },
        settings=settings,
    )
    await notify(
        db,
        await court_staff(db, to_court_id),
        kind="case_assigned",
        title=f"新交办信访件 {case.number}",
        body=f"{label_of('case_category', case.category)}，请于 {local_text(due, settings)} 前反馈",
    )
    return row


async def _court_names(db: AsyncSession, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return {cid: name for cid, name in await db.execute(_COURT_NAMES, {"ids": sorted(ids)})}


async def _feedback_deadline(
    db: AsyncSession,
    deadline: datetime | None,
    now: datetime,
    upper: Assignment | None,
    settings: Settings,
) -> datetime:
    """A hand-over's feedback deadline: the one given, or the feedback rule's; under a
    hand-over from above (``upper``) not later than the deadline the court above set."""
    due = deadline or await deadline_for(db, Node.feedback, now, settings)
    assert due is not None
    if upper is not None and upper.deadline <= now:
        raise ConflictError(
            f"上级法院要求本院反馈的期限（{local_text(upper.deadline, settings)}）已过，"
            "不能再给下级法院新的反馈期限",
            code="upper_deadline_passed",
        )
    if upper is not None and due > upper.deadline:
        if deadline is not None:
            limit = local_text(upper.deadline, settings)
            raise InvalidError(
                f"反馈期限不能晚于上级法院要求本院反馈的期限（{limit}）",
                code="deadline_after_upper",
            )
        due = upper.deadline
    if due <= now:
        raise InvalidError("反馈期限必须晚于现在", code="past_deadline")
    return due


_LIVE = (AssignmentState.open, AssignmentState.reported)


def _walk_chain(
    rows: Sequence[Assignment], state: CaseState, handler: int, supervising: int | None
) -> list[Assignment]:
    """The chain of hand-overs among ``rows`` (a case's open and reported ones, any order):
    see :func:`assignment_chain`."""
    if state not in (CaseState.assigned, CaseState.reported) or supervising is None:
        return []
    newest = sorted(rows, key=lambda a: a.id, reverse=True)
    first = AssignmentState.reported if state is CaseState.reported else AssignmentState.open
    inner = next(
        (
            a
            for a in newest
            if a.state is first and a.to_court_id == handler and a.from_court_id == supervising
        ),
        None,
    )
    if inner is None:
        return []
    chain = [inner]
    while True:
        up = next(
            (
                a
                for a in newest
                if a.state is AssignmentState.open
                and a.id < chain[-1].id
                and a.to_court_id == chain[-1].from_court_id
            ),
            None,
        )
        if up is None:
            return chain
        chain.append(up)


async def assignment_chain(db: AsyncSession, case: Petition) -> list[Assignment]:
    """The hand-overs (交办) a case is under now, innermost first: the one to the handling
    court (reported once it has fed back), then the one to the court that handed it down,
    and so on up, each still open (交办 further down keeps the upper ones open). Empty
    unless the case is assigned or reported."""
    if case.state not in (CaseState.assigned, CaseState.reported):
        return []
    rows = (
        await db.scalars(
            select(Assignment).where(Assignment.petition_id == case.id, Assignment.state.in_(_LIVE))
        )
    ).all()
    return _walk_chain(
        rows, case.state, case.handler_court_id or case.court_id, case.supervising_court_id
    )


def _close_chain(chain: Sequence[Assignment], actor: Actor, result: str, now: datetime) -> None:
    """A case under hand-overs is closed (化解, 信访终结): the hand-over the acting court made
    itself is decided by it (accepted); every other one has the closing as its feedback
    (reported), not accepted by a court that never reviewed it."""
    for a in chain:
        if actor.court_id is not None and a.from_court_id == actor.court_id:
            a.state = AssignmentState.accepted
        else:
            a.state = AssignmentState.reported
        a.result = a.result or result
        a.reported_at = a.reported_at or now


async def progress(db: AsyncSession, actor: Actor, case_id: int, *, text: str) -> Petition:
    """The handling court reports progress (进展); the deadline stays."""
    body = _text(text, "进展情况")
    return await _act(
        db, actor, case_id, CaseAction.progress, EventKind.progress, body, due_at=False
    )


async def report(
    db: AsyncSession, actor: Actor, case_id: int, *, result: str, settings: Settings
) -> Petition:
    """The lower court reports its result to the assigning court (反馈)."""
    body = _text(result, "办理结果")
    case, _ = await get_case(db, actor, case_id, CaseAction.report)
    chain = await assignment_chain(db, case)
    if chain:
        chain[0].state = AssignmentState.reported
        chain[0].result = body
        chain[0].reported_at = utcnow()
    case = await _act(
        db,
        actor,
        case_id,
        CaseAction.report,
        EventKind.reported,
        f"反馈办理结果：{body[:400]}",
        settings=settings,
    )
    if case.supervising_court_id is not None:
        await notify(
            db,
            await court_staff(db, case.supervising_court_id),
            kind="case_reported",
            title=f"信访件 {case.number} 已反馈",
            body=mask_text(body)[:200],  # a notice is no place for ID or phone numbers
        )
    return case


async def review_feedback(
    db: AsyncSession,
    actor: Actor,
    case_id: int,
    *,
    accept: bool,
    settings: Settings,
    remark: str = "",
    deadline: datetime | None = None,
) -> Petition:
    """The assigning court accepts the feedback, or returns it with a new deadline. A court
    that was itself handed the case by a court above (交办 further down), accepting, takes the
    case back, owing its own feedback upwards by the deadline set there (``rules.CHAINED``);
    returning, it may not give more time than it has itself."""
    case, _ = await get_case(
        db, actor, case_id, CaseAction.accept if accept else CaseAction.return_
    )
    chain = await assignment_chain(db, case)
    row = chain[0] if chain else None
    upper = chain[1] if len(chain) > 1 else None
    said = f"：{remark.strip()[:400]}" if remark.strip() else ""
    if accept:
        if row is not None:
            row.state = AssignmentState.accepted
        if upper is None:
            return await _act(
                db,
                actor,
                case_id,
                CaseAction.accept,
                EventKind.accepted,
                "审核通过反馈" + said,
                settings=settings,
            )
        names = await _court_names(db, {upper.from_court_id, upper.to_court_id})
        return await _act(
            db,
            actor,
            case_id,
            CaseAction.accept,
            EventKind.accepted,
            f"审核通过反馈{said}；本件由{names[upper.to_court_id]}继续办理，"
            f"限 {local_text(upper.deadline, settings)} 前向{names[upper.from_court_id]}反馈"
            + ("；首办责任人由承办法院重新确定" if case.responsible_id is not None else ""),
            detail={"assignment_id": upper.id},
            due_at=upper.deadline,
            values={
                "handler_court_id": upper.to_court_id,
                "supervising_court_id": upper.from_court_id,
                "responsible_id": None,
            },
            chained=True,
        )
    why = _text(remark, "退回理由")
    now = utcnow()
    due = await _feedback_deadline(db, deadline, now, upper, settings)
    if row is not None:
        row.state = AssignmentState.open
        row.deadline = due
    return await _act(
        db,
        actor,
        case_id,
        CaseAction.return_,
        EventKind.returned,
        f"退回重办，限 {local_text(due, settings)} 前反馈：{why[:400]}",
        due_at=due,
        settings=settings,
    )


async def flag(
    db: AsyncSession, actor: Actor, case_id: int, *, on: bool, remark: str = ""
) -> Petition:
    """挂牌督办 (or lift it): a court above the handling court marks the case; a case already
    as asked is refused (409), not marked twice."""
    case, _ = await get_case(db, actor, case_id, CaseAction.flag if on else CaseAction.unflag)
    if case.flagged == on:
        raise ConflictError(
            "本件已挂牌督办" if on else "本件未挂牌督办，无需撤销",
            code="already_flagged" if on else "not_flagged",
        )
    return await _act(
        db,
        actor,
        case_id,
        CaseAction.flag if on else CaseAction.unflag,
        EventKind.flagged if on else EventKind.unflagged,
        ("挂牌督办" if on else "撤销挂牌督办")
        + (f"：{remark.strip()[:400]}" if remark.strip() else ""),
        due_at=False,
        values={"flagged": on},
    )


async def take_lead(db: AsyncSession, actor: Actor, case_id: int) -> Petition:
    """领导包案: a court leader takes the case; it shows on their page."""
    assert actor.user_id is not None
    case, _ = await get_case(db, actor, case_id, CaseAction.take_lead)
    if case.leader_id is not None:
        raise ConflictError("本件已由院领导包案", code="already_led")
    return await _act(
        db,
        actor,
        case_id,
        CaseAction.take_lead,
        EventKind.leader,
        "院领导包案",  # the entry names who (their name and court), as every entry does
        due_at=False,
        values={"leader_id": actor.user_id},
    )


async def judicial_aid(
    db: AsyncSession,
    actor: Actor,
    case_id: int,
    *,
    stage: str,
    amount_yuan: int | None = None,
    remark: str = "",
) -> Petition:
    """司法救助: the application, and its result (granted with an amount, or refused)."""
    names = {s.value: label(s) for s in AidStage}
    if stage not in names:
        raise InvalidError("司法救助阶段无效", code="invalid_stage")
    if stage == "granted" and (amount_yuan is None or amount_yuan <= 0):
        raise InvalidError("请填写救助金额", code="missing_field")
    text = names[stage] + (f"，金额 {amount_yuan} 元" if stage == "granted" else "")
    return await _act(
        db,
        actor,
        case_id,
        CaseAction.judicial_aid,
        EventKind.judicial_aid,
        text + (f"：{remark.strip()[:400]}" if remark.strip() else ""),
        detail={"stage": stage, "amount_yuan": amount_yuan},
        due_at=False,
    )


# ---------------------------------------------------------------- closing


async def resolve(
    db: AsyncSession,
    actor: Actor,
    case_id: int,
    *,
    ground: ResolutionGround | None,
    settings: Settings,
    remark: str = "",
) -> Petition:
    """化解 with its grounds; a follow-up (回访) is scheduled by the follow-up rule, in the
    same timeline entry (one action, one entry)."""
    if ground is None:
        raise InvalidError("化解须选择化解依据", code="missing_grounds")
    why = _text(remark, "化解情况说明")
    case, _ = await get_case(db, actor, case_id, CaseAction.resolve)
    if ground not in resolution_grounds(case.category):
        raise InvalidError(
            f"「{label(ground)}」不是{label(CaseCategory(case.category))}类信访件的化解依据",
            code="ground_not_for_category",
        )
    now = utcnow()
    due = await deadline_for(db, Node.followup, now, settings)
    assert due is not None
    _close_chain(await assignment_chain(db, case), actor, f"化解（{label(ground)}）：{why}", now)
    case = await _act(
        db,
        actor,
        case_id,
        CaseAction.resolve,
        EventKind.resolved,
        f"化解（{label(ground)}）：{_clause(why)}；安排回访，{local_text(due, settings)} 前完成",
        detail={"ground": ground.value, "remark": why, "followup_due_at": due.isoformat()},
        due_at=due,
        settings=settings,
    )
    db.add(FollowUp(petition_id=case.id, due_at=due))
    return case


async def terminate(
    db: AsyncSession,
    actor: Actor,
    case_id: int,
    *,
    ground: TerminationGround | None,
    approval: str,
    remark: str = "",
    settings: Settings,
) -> Petition:
    """信访终结: only a high or the supreme court, with its grounds and the approval."""
    if ground is None:
        raise InvalidError("信访终结须选择终结依据", code="missing_grounds")
    approved = _text(approval, "审批情况（审批人及文号）", limit=400)
    case, _ = await get_case(db, actor, case_id, CaseAction.terminate)
    _close_chain(await assignment_chain(db, case), actor, f"信访终结（{label(ground)}）", utcnow())
    case = await _act(
        db,
        actor,
        case_id,
        CaseAction.terminate,
        EventKind.terminated,
        f"信访终结（{label(ground)}），审批：{approved}"
        + (f"；{remark.strip()[:400]}" if remark.strip() else ""),
        detail={"ground": ground.value, "approval": approved},
        settings=settings,
    )
    return case


async def schedule_followup(
    db: AsyncSession,
    actor: Actor,
    case_id: int,
    *,
    due_at: datetime | None,
    settings: Settings,
    remark: str = "",
) -> Petition:
    """安排回访: a (further) follow-up of a closed case — after 信访终结, or again after a 回访
    that found the petitioner unsatisfied — due by ``due_at`` (by default the follow-up
    rule's); the case's node is the follow-up's until it is recorded. 化解 schedules its
    first one itself."""
    case, _ = await get_case(db, actor, case_id, CaseAction.schedule_followup)
    now = utcnow()
    due = due_at or await deadline_for(db, Node.followup, now, settings)
    assert due is not None
    if due <= now:
        raise InvalidError("回访期限必须晚于现在", code="past_deadline")
    if due > now + timedelta(days=366):
        raise InvalidError("回访期限不能超过一年", code="deadline_too_far")
    # one pending 回访 at a time: the case is at the follow-up node while one is (two clerks
    # at once: the guarded UPDATE lets one through)
    claimed = await db.execute(
        update(Petition)
        .where(Petition.id == case.id, Petition.node != Node.followup)
        .values(node=Node.followup)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        pending = await db.scalar(
            select(func.min(FollowUp.due_at)).where(
                FollowUp.petition_id == case.id, FollowUp.done_at.is_(None)
            )
        )
        when = f"（{local_text(pending, settings)} 前完成）" if pending is not None else ""
        raise ConflictError(f"已安排回访{when}，请先记录回访结果", code="followup_pending")
    await db.refresh(case)  # as claimed: what _act's guarded UPDATE compares with
    case = await _act(
        db,
        actor,
        case_id,
        CaseAction.schedule_followup,
        EventKind.followup_scheduled,
        f"安排回访，{local_text(due, settings)} 前完成"
        + (f"：{remark.strip()[:400]}" if remark.strip() else ""),
        detail={"due_at": due.isoformat()},
        due_at=due,
        values={"node": Node.followup},
        settings=settings,
    )
    db.add(FollowUp(petition_id=case.id, due_at=due))
    return case


async def record_followup(
    db: AsyncSession, actor: Actor, case_id: int, *, result: FollowUpResult, remark: str = ""
) -> Petition:
    """The follow-up contact after closing (回访) and what it found: recorded on the 回访
    scheduled last (reopening cancels the earlier ones)."""
    case, _ = await get_case(db, actor, case_id, CaseAction.record_followup)
    due = await db.scalar(
        select(FollowUp)
        .where(FollowUp.petition_id == case.id, FollowUp.done_at.is_(None))
        .order_by(FollowUp.id.desc())
        .limit(1)
    )
    now = utcnow()
    if due is None:
        due = FollowUp(petition_id=case.id, due_at=now)
        db.add(due)
    due.done_at = now
    due.result = result.value
    due.remark = remark.strip()[:4000]
    due.done_by = actor.user_id
    return await _act(
        db,
        actor,
        case_id,
        CaseAction.record_followup,
        EventKind.followup,
        f"回访：{label(result)}" + (f"，{remark.strip()[:400]}" if remark.strip() else ""),
        detail={"result": result.value},
        due_at=None,
        values={"node": Node.done},
    )


async def review(
    db: AsyncSession, actor: Actor, case_id: int, *, findings: str, rating: str
) -> Petition:
    """评查: a review of a closed case with its findings."""
    ratings = {r.value: label(r) for r in ReviewRating}
    if rating not in ratings:
        raise InvalidError("评查结论无效", code="invalid_rating")
    body = _text(findings, "评查意见")
    return await _act(
        db,
        actor,
        case_id,
        CaseAction.review,
        EventKind.review,
        f"评查：{ratings[rating]}，{body[:400]}",
        detail={"rating": rating},
        due_at=False,
    )


async def reopen(
    db: AsyncSession, actor: Actor, case_id: int, *, reason: str, settings: Settings
) -> Petition:
    """A closed case is reopened with a reason; its handling node starts again. A 回访 still
    pending is cancelled (closing it again schedules its own), so no result is recorded on
    one of the earlier closing."""
    why = _text(reason, "重新启动理由")
    case = await _act(
        db,
        actor,
        case_id,
        CaseAction.reopen,
        EventKind.reopened,
        f"重新启动办理：{why[:400]}",
        values={"track": CaseTrack.petition},
        settings=settings,
    )
    pending = await db.scalars(
        select(FollowUp).where(FollowUp.petition_id == case.id, FollowUp.done_at.is_(None))
    )
    for due in pending.all():
        due.done_at = utcnow()
        due.remark = FOLLOWUP_CANCELLED
        due.done_by = actor.user_id
    return case


FOLLOWUP_CANCELLED = "信访件重新启动，本次回访取消"


async def correct(
    db: AsyncSession, actor: Actor, case_id: int, *, event_id: int, text: str, settings: Settings
) -> CaseEvent:
    """A correction is a new timeline entry naming the one it corrects (by its time and
    kind, as the page shows it); nothing is changed."""
    await get_case(db, actor, case_id, CaseAction.correct)
    target = await db.get(CaseEvent, event_id)
    if target is None or target.petition_id != case_id:
        raise InvalidError("要更正的记录不属于本信访件", code="invalid_event")
    body = _text(text, "更正内容")
    return add_event(
        db,
        case_id,
        EventKind.correction,
        actor,
        f"更正 {local_text(target.at, settings)}「{label_of('case_event', target.kind)}」记录："
        f"{body[:400]}",
        detail={"corrects": event_id},
    )


# ---------------------------------------------------------------- lists, board, timeline


async def court_staff(db: AsyncSession, court_id: int) -> list[int]:
    """Who a court's case notices go to: its petition officers and leaders, else operators."""
    return (await courts_staff(db, {court_id})).get(court_id, [])


async def courts_staff(db: AsyncSession, court_ids: set[int]) -> dict[int, list[int]]:
    """:func:`court_staff` of several courts in one query."""
    rows = (
        await db.execute(
            select(User.court_id, User.id, User.role).where(
                User.court_id.in_(court_ids),
                User.active,
                User.role.in_((Role.petition_officer, Role.leader, Role.operator)),
            )
        )
    ).all()
    officers: dict[int, list[int]] = {}
    others: dict[int, list[int]] = {}
    for court_id, user_id, role in rows:
        to = officers if role in (Role.petition_officer, Role.leader) else others
        if court_id is not None:  # (the query asked for these courts)
            to.setdefault(court_id, []).append(user_id)
    return {c: officers.get(c) or others.get(c, []) for c in court_ids}


@dataclass
class CaseFilter:
    """The case list's filters (all optional)."""

    channel: Channel | None = None
    category: CaseCategory | None = None
    node: Node | None = None
    state: CaseState | None = None
    overdue: bool = False
    responsible_id: int | None = None
    flagged: bool = False
    query: str = ""
    led_by_me: bool = False


async def _visible(db: AsyncSession, actor: Actor) -> Any:
    """Cases the actor's court may see: its own, registered, assigned or supervised."""
    if actor.is_admin:
        return None
    if actor.court_id is None:
        return false()
    below = await descendant_court_ids(db, actor.court_id)
    return or_(
        Petition.handler_court_id.in_(below),
        Petition.court_id == actor.court_id,
        Petition.supervising_court_id == actor.court_id,
    )


async def list_cases(
    db: AsyncSession, actor: Actor, f: CaseFilter, *, limit: int, offset: int
) -> Page[Petition]:
    stmt: Select[Any] = select(Petition).order_by(Petition.id.desc())
    visible = await _visible(db, actor)
    if visible is not None:
        stmt = stmt.where(visible)
    now = utcnow()
    if f.channel is not None:  # of any contact: the channels kept on the case
        seen = Petition.channels.op("&")(CHANNEL_BITS[f.channel]) != 0
        stmt = stmt.where(or_(Petition.channel == f.channel, seen))
    if f.category is not None:
        stmt = stmt.where(Petition.category == f.category.value)
    if f.node is not None:
        stmt = stmt.where(Petition.node == f.node)
    if f.state is not None:
        stmt = stmt.where(Petition.state == f.state)
    if f.overdue:
        stmt = stmt.where(Petition.state.in_(OPEN), Petition.due_at < now)
    if f.responsible_id is not None:
        stmt = stmt.where(Petition.responsible_id == f.responsible_id)
    if f.flagged:
        stmt = stmt.where(Petition.flagged.is_(True))
    if f.led_by_me:
        stmt = stmt.where(Petition.leader_id == actor.user_id)
    if f.query.strip():
        q = f.query.strip()
        ref = select(CaseRef.petition_id).where(CaseRef.number.in_(number_spellings(q, now)))
        stmt = stmt.where(or_(Petition.number == q, Petition.id.in_(ref)))
    total = await db.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    items = (await db.scalars(stmt.limit(limit).offset(offset))).all()
    return Page(items=items, total=int(total or 0))


@dataclass(slots=True)
class CaseFactsRow:
    """What the lists and the board show of a case, read as plain columns: the board reads
    thousands of cases, and ORM objects would cost it most of its time."""

    id: int
    number: str
    category: str
    channel: Channel
    state: CaseState
    node: Node
    track: CaseTrack
    due_at: datetime | None
    people_count: int
    contact_count: int
    court_id: int
    handler_court_id: int | None
    supervising_court_id: int | None
    responsible_id: int | None
    leader_id: int | None
    petitioner_id: int
    flagged: bool
    judgment_ref: str
    created_at: datetime


CaseFacts = Petition | CaseFactsRow
# CaseFactsRow's columns, in its order
CASE_FACTS = tuple(getattr(Petition, f.name) for f in fields(CaseFactsRow))


def is_overdue(case: CaseFacts, now: datetime) -> bool:
    """Whether an open case's current node is past its deadline (the list's 超期 filter)."""
    return case.state in OPEN and case.due_at is not None and case.due_at < now


def overdue_days(case: CaseFacts, now: datetime) -> int:
    """Days past the deadline, a started day counting as one; 0 when not overdue."""
    if not is_overdue(case, now):
        return 0
    assert case.due_at is not None
    return (now - case.due_at).days + 1


@dataclass
class Names:
    """The names a list of cases shows: courts, staff and lead petitioners, by id."""

    courts: dict[int, str] = field(default_factory=dict)
    users: dict[int, str] = field(default_factory=dict)
    petitioners: dict[int, str] = field(default_factory=dict)


async def names_for(db: AsyncSession, cases: Sequence[CaseFacts]) -> Names:
    """One query each for the courts, staff and petitioners named by ``cases``."""
    court_ids = {
        c
        for p in cases
        for c in (p.court_id, p.handler_court_id, p.supervising_court_id)
        if c is not None
    }
    user_ids = {u for p in cases for u in (p.responsible_id, p.leader_id) if u is not None}
    person_ids = {p.petitioner_id for p in cases}
    names = Names()
    if court_ids:
        rows = await db.execute(_COURT_NAMES, {"ids": sorted(court_ids)})
        names.courts = {cid: name for cid, name in rows}
    if user_ids:
        rows = await db.execute(_USER_NAMES, {"ids": sorted(user_ids)})
        names.users = {uid: name for uid, name in rows}
    if person_ids:
        rows = await db.execute(_PETITIONER_NAMES, {"ids": sorted(person_ids)})
        names.petitioners = {pid: name for pid, name in rows}
    return names


@dataclass
class BoardRow:
    case: CaseFacts
    court_name: str
    days_overdue: int


BOARD_PAGE = 200  # the board's first view: the cases due first, across all its courts
BOARD_LIMIT = 2000  # one court's cases, when the board is asked for that court alone


@dataclass
class BoardTotal:
    """One court's line on the board: all its supervised open cases, and how many are late."""

    court_id: int
    name: str
    cases: int
    overdue: int


class Board(list[BoardRow]):
    """The board's rows, the names they show (read with them: no query per kind), and every
    court's totals (the rows may be only the first of them)."""

    def __init__(
        self,
        rows: Sequence[BoardRow] = (),
        names: Names | None = None,
        totals: Sequence[BoardTotal] = (),
    ) -> None:
        super().__init__(rows)
        self.names = names or Names()
        self.totals = list(totals)


def _board_rows() -> Select[Any]:
    supervising = aliased(Court)
    responsible = aliased(User)
    leader = aliased(User)
    return (
        select(
            *CASE_FACTS,
            Court.name,
            supervising.name,
            Petitioner.name,
            responsible.display_name,
            leader.display_name,
        )
        .join(Court, Court.id == Petition.handler_court_id)
        .join(Petitioner, Petitioner.id == Petition.petitioner_id)
        .outerjoin(supervising, supervising.id == Petition.supervising_court_id)
        .outerjoin(responsible, responsible.id == Petition.responsible_id)
        .outerjoin(leader, leader.id == Petition.leader_id)
        .order_by(Petition.due_at)
    )


_BOARD_OPEN = (CaseState.assigned, CaseState.reported, CaseState.handling)


class _BoardReads:
    """The board's reads, built once, of supervised open cases (``within``: of the courts
    ``ids`` alone): every court's totals (``counted``), and the rows of the cases due first
    (``limit``; ``rows``), both found from ix_petitions_board alone (handling court, state,
    deadline), the rows then read by primary key. On SQLite each runs whole on the
    connection's thread (:class:`ThreadRead`): the event loop serves other requests while
    SQLite counts."""

    def __init__(self, within: bool) -> None:
        petitions = table_of(Petition)
        where: list[Any] = [
            petitions.c.supervising_court_id.is_not(None),
            petitions.c.state.in_(_BOARD_OPEN),
        ]
        if within:
            where.append(petitions.c.handler_court_id.in_(bindparam("ids", expanding=True)))
        late = func.sum(sql_case((petitions.c.due_at < bindparam("now"), 1), else_=0))
        self.counted = ThreadRead(
            select(petitions.c.handler_court_id, func.count(), late)
            .where(*where)
            .group_by(petitions.c.handler_court_id)
        )
        picked = (
            select(petitions.c.id)
            .where(*where)
            .order_by(petitions.c.due_at)
            .limit(bindparam("limit", type_=Integer))
        )
        self.rows = ThreadRead(_board_rows().where(Petition.id.in_(picked.scalar_subquery())))


# Built once: building them (the aliases, the filters) cost more than SQLite answering them.
_BOARD_WITHIN = _BoardReads(within=True)
_BOARD_ALL = _BoardReads(within=False)


async def board(db: AsyncSession, actor: Actor, court_id: int | None = None) -> Board:
    """The supervising court's board: every open case handed below it, by handling court,
    with node, deadline and days overdue (overdue first). Every court's totals, and the
    ``BOARD_PAGE`` cases due first; with ``court_id`` (a court below) that court alone and up
    to ``BOARD_LIMIT`` of its cases."""
    if actor.court_id is None and not actor.is_admin:
        return Board()
    now = utcnow()
    courts: list[int] | None = None  # None: every court (an admin's board)
    if court_id is not None:
        courts = [court_id]
    if not actor.is_admin:
        assert actor.court_id is not None
        below = await descendant_court_ids(db, actor.court_id)
        below.discard(actor.court_id)
        if court_id is not None and court_id not in below:
            raise NotFoundError("该法院不在本院督办范围内")
        if court_id is None:
            courts = sorted(below)
    reads = _BOARD_ALL if courts is None else _BOARD_WITHIN
    within: dict[str, Any] = {"now": now} if courts is None else {"now": now, "ids": courts}
    counts = {int(c): (int(n), int(o or 0)) for c, n, o in await reads.counted.rows(db, within)}
    court_names: dict[int, str] = {}
    if counts:
        rows_named = await db.execute(_COURT_NAMES, {"ids": sorted(counts)})
        court_names = {cid: name for cid, name in rows_named}
    totals = [
        BoardTotal(court_id=c, name=court_names.get(c, ""), cases=n, overdue=o)
        for c, (n, o) in counts.items()
    ]
    totals.sort(key=lambda t: t.name)
    limit = BOARD_LIMIT if court_id is not None else BOARD_PAGE
    found = Board(totals=totals)
    names = found.names
    rows = await reads.rows.rows(db, {**within, "limit": limit})
    for *facts, court, above, person, owner, lead in rows:
        case = CaseFactsRow(*facts)
        found.append(BoardRow(case=case, court_name=court, days_overdue=overdue_days(case, now)))
        assert case.handler_court_id is not None  # (joined on it)
        names.courts[case.handler_court_id] = court
        names.petitioners[case.petitioner_id] = person
        if case.supervising_court_id is not None:
            names.courts[case.supervising_court_id] = above
        if case.responsible_id is not None:
            names.users[case.responsible_id] = owner
        if case.leader_id is not None:
            names.users[case.leader_id] = lead
    found.sort(key=lambda r: (r.court_name, -r.days_overdue))
    return found


@dataclass
class Timeline:
    case: Petition
    standing: Standing
    events: Sequence[CaseEvent]
    contacts: Sequence[Contact]
    materials: Sequence[Material]
    assignments: Sequence[Assignment]
    followups: Sequence[FollowUp]
    petitioners: Sequence[Petitioner]
    numbers: Sequence[str]
    names: dict[int, str]
    shown: Names  # the names the case's row shows (as names_for gives them)
    actors: dict[int, str]  # the display names of the staff who acted on the case


def _timeline_statements() -> dict[str, Select[Any]]:
    case_id: BindParameter[int] = bindparam("case_id")

    def rows(model: Any, order: Any) -> Select[Any]:
        return select(model).where(model.petition_id == case_id).order_by(order)

    others = select(CasePetitioner.petitioner_id).where(CasePetitioner.petition_id == case_id)
    return {
        "people": select(Petitioner).where(
            or_(Petitioner.id == bindparam("lead_id"), Petitioner.id.in_(others))
        ),
        "assignments": rows(Assignment, Assignment.id),
        "events": rows(CaseEvent, CaseEvent.id),
        "contacts": rows(Contact, Contact.occurred_at),
        "materials": rows(Material, Material.id),
        "followups": rows(FollowUp, FollowUp.id),
        "numbers": select(CaseRef.number)
        .where(CaseRef.petition_id == case_id)
        .order_by(CaseRef.id),
        "courts": select(Court.id, Court.name).where(
            Court.id.in_(bindparam("ids", expanding=True))
        ),
        "users": select(User.id, User.display_name).where(
            User.id.in_(bindparam("ids", expanding=True))
        ),
    }


# Built once: a case page runs all of them, and building them cost more than SQLite answering.
# The columns-only ones take the prepared path (config.db.prepared); entities stay ORM.
_TIMELINE = {
    k: prepared(v) if k in ("numbers", "courts", "users") else v
    for k, v in _timeline_statements().items()
}


async def staff_names(db: AsyncSession, user_ids: set[int | None]) -> dict[int, str]:
    """The display names of these staff (what pages show for who acted), by id."""
    ids = [u for u in user_ids if u is not None]
    if not ids:
        return {}
    return {uid: name for uid, name in await db.execute(_TIMELINE["users"], {"ids": ids})}


async def timeline(db: AsyncSession, actor: Actor, case_id: int) -> Timeline:
    """Everything about one case, in order."""
    case, where = await get_case(db, actor, case_id)
    at = {"case_id": case.id}

    async def rows(name: str) -> Sequence[Any]:
        return (await db.scalars(_TIMELINE[name], at)).all()

    people = sorted(
        (await db.scalars(_TIMELINE["people"], {**at, "lead_id": case.petitioner_id})).all(),
        key=lambda p: (p.id != case.petitioner_id, p.id),  # the lead petitioner first
    )
    court_ids = {c for c in (case.court_id, case.handler_court_id, case.supervising_court_id) if c}
    assignments = await rows("assignments")
    for a in assignments:
        court_ids |= {a.from_court_id, a.to_court_id}
    events = await rows("events")
    contacts = await rows("contacts")
    court_ids |= {e.court_id for e in events if e.court_id is not None}
    court_ids |= {c.court_id for c in contacts}
    names: dict[int, str] = {
        cid: name for cid, name in (await db.execute(_TIMELINE["courts"], {"ids": list(court_ids)}))
    }
    staff = [u for u in (case.responsible_id, case.leader_id) if u is not None]
    # the staff the row names and everyone who acted on the case: one statement
    acted = await staff_names(db, set(staff) | {e.actor_id for e in events})
    shown = Names(
        courts=names,
        users={uid: acted[uid] for uid in staff if uid in acted},
        petitioners={p.id: p.name for p in people},
    )
    return Timeline(
        case=case,
        standing=where,
        events=events,
        contacts=contacts,
        materials=await rows("materials"),
        assignments=assignments,
        followups=await rows("followups"),
        petitioners=people,
        numbers=await rows("numbers"),
        names=names,
        shown=shown,
        actors=acted,
    )


def actions_for(actor: Actor, case: Petition, where: Standing) -> list[str]:
    """The actions the pages offer this actor on this case (the same rule that checks them),
    less those the case's own facts make pointless: a second leader (take_lead refuses it),
    flagging a flagged case or lifting a flag that is not there, a second pending 回访
    (schedule_followup refuses it), 交办 at a basic court (no court is below it)."""
    moot = {CaseAction.view, CaseAction.flag if case.flagged else CaseAction.unflag}
    if where.level is CourtLevel.basic:
        moot.add(CaseAction.assign)
    if case.leader_id is not None:
        moot.add(CaseAction.take_lead)
    if case.node is Node.followup:
        moot.add(CaseAction.schedule_followup)
    return [a.value for a in CaseAction if a not in moot and may(actor, a, case.state, where)]


async def courts_below(db: AsyncSession, actor: Actor) -> Sequence[Court]:
    """The courts the actor's court may hand a case to (交办): every court below it."""
    if actor.court_id is None:
        return []
    below = await descendant_court_ids(db, actor.court_id)
    below.discard(actor.court_id)
    if not below:
        return []
    return (await db.scalars(select(Court).where(Court.id.in_(below)).order_by(Court.name))).all()


async def staff_of(db: AsyncSession, actor: Actor, court_id: int) -> Sequence[User]:
    """Active staff of the actor's court or a court below it who handle cases (owners,
    meeting invitees); another branch's court is unknown (404)."""
    if not actor.is_admin and (
        actor.court_id is None or court_id not in await descendant_court_ids(db, actor.court_id)
    ):
        raise NotFoundError(f"法院 {court_id} 不存在")
    return (
        await db.scalars(
            select(User)
            .where(User.court_id == court_id, User.active, User.role.in_(HANDLERS))
            .order_by(User.display_name)
        )
    ).all()


# ---------------------------------------------------------------- deadlines (housekeeping)


@dataclass
class ScanResult:
    reminded: int = 0
    overdue: int = 0
    escalated: int = 0


SYSTEM = Actor(user_id=None, username="系统", role=Role.admin, court_id=None)


async def _claim(db: AsyncSession, column: Any, due: Any, now: datetime, batch: int) -> list[int]:
    """Mark up to ``batch`` cases due for a notice reminded (or alerted) and return them.

    One statement picks and marks them, and the outer conditions are checked again on the
    row it updates: each deadline notice goes out once even when every node runs the
    housekeeping job at once.
    """
    # a closed case is at node done, unless a 回访 is scheduled on it (安排回访)
    watched = tuple(s for s in CaseState if s is not CaseState.guided)
    pending = and_(
        # overdue_at IS NULL: the partial index ix_petitions_alert holds only the cases not
        # yet alerted at their current node; ix_petitions_remind (reminded_at IS NULL too)
        # only those not yet reminded either, so a reminded case leaves the reminders' range
        Petition.overdue_at.is_(None),
        column.is_(None),
        Petition.state.in_(watched),
        Petition.node != Node.done,
        due,
    )
    picked = select(Petition.id).where(pending).order_by(Petition.due_at).limit(batch)
    done = await db.execute(
        update(Petition)
        .where(Petition.id.in_(picked), pending)
        .values({column.key: now})
        .returning(Petition.id)
        .execution_options(synchronize_session=False)
    )
    return [int(r[0]) for r in done.all()]


async def _upper_courts(db: AsyncSession, found: Sequence[Petition]) -> dict[int, set[int]]:
    """For each case handed further down (交办 further down), the courts above its
    supervising court whose own hand-overs still await feedback (one query for all)."""
    chained = [c for c in found if c.state in (CaseState.assigned, CaseState.reported)]
    if not chained:
        return {}
    rows = (
        await db.scalars(
            select(Assignment).where(
                Assignment.petition_id.in_([c.id for c in chained]),
                Assignment.state.in_(_LIVE),
            )
        )
    ).all()
    if not rows:
        return {}
    by_case: dict[int, list[Assignment]] = {}
    for a in rows:
        by_case.setdefault(a.petition_id, []).append(a)
    out: dict[int, set[int]] = {}
    for c in chained:
        chain = _walk_chain(
            by_case.get(c.id, []),
            c.state,
            c.handler_court_id or c.court_id,
            c.supervising_court_id,
        )
        courts = {a.from_court_id for a in chain[1:]} - {c.supervising_court_id}
        if courts:
            out[c.id] = courts
    return out


async def scan_deadlines(
    db: AsyncSession, settings: Settings, now: datetime, *, batch: int = 500
) -> ScanResult:
    """Remind before a node's deadline, alert once it has passed (in-app, to the handling
    court and its supervising court) and escalate to the handling court's parent court.

    Each case is reminded once and alerted once per node (``reminded_at``/``overdue_at``
    are cleared when the node changes). Up to ``batch`` alerts and ``batch`` reminders a
    call (the housekeeping job calls again); ``now`` is injected.
    """
    result = ScanResult()
    rules = (await db.scalars(select(DeadlineRule))).all()
    # each node's own reminder window is in the query: cases not yet in their window are not
    # read (read and skipped, they would fill the batch and hold back the others)
    in_window = or_(
        *(
            and_(
                Petition.node == rule.node,
                Petition.due_at <= now + timedelta(days=rule.remind_days_before),
            )
            for rule in rules
        ),
        false(),
    )
    overdue_ids = await _claim(db, Petition.overdue_at, Petition.due_at <= now, now, batch)
    # the furthest window bounds the index range (ix_petitions_remind): the scan reads the
    # cases in a window and stops there, not every later deadline
    horizon = now + timedelta(days=max((r.remind_days_before for r in rules), default=0))
    remind_ids = await _claim(
        db,
        Petition.reminded_at,
        and_(Petition.due_at > now, Petition.due_at <= horizon, in_window),
        now,
        batch,
    )
    ids = overdue_ids + remind_ids
    if not ids:
        return result
    found = (
        await db.scalars(
            select(Petition)
            .where(Petition.id.in_(ids))
            .order_by(Petition.due_at)
            .execution_options(populate_existing=True)
        )
    ).all()
    handlers = {c.handler_court_id or c.court_id for c in found}
    parent_of: dict[int, int | None] = {
        cid: parent
        for cid, parent in (
            await db.execute(select(Court.id, Court.parent_id).where(Court.id.in_(handlers)))
        ).all()
    }
    supervisors = {c.supervising_court_id for c in found if c.supervising_court_id is not None}
    parents = {p for p in parent_of.values() if p is not None}
    alerted = set(overdue_ids)
    uppers = await _upper_courts(db, [c for c in found if c.id in alerted])
    above = {court for courts in uppers.values() for court in courts}
    staff = await courts_staff(db, handlers | supervisors | parents | above)
    entries: list[Entry] = []
    notices: list[Notice] = []
    for case in found:
        assert case.due_at is not None
        handler = case.handler_court_id or case.court_id
        if case.id not in alerted:
            entries.append(
                Entry(
                    case.id,
                    EventKind.reminder,
                    f"「{label(case.node)}」将于 {local_text(case.due_at, settings)} 到期",
                    court_id=handler,
                )
            )
            notices.append(
                Notice(
                    [case.responsible_id, *staff[handler]],
                    kind="case_reminder",
                    title=f"信访件 {case.number} 即将到期",
                    body=f"「{label(case.node)}」节点即将到期",
                )
            )
            result.reminded += 1
            continue
        entries.append(
            Entry(
                case.id,
                EventKind.overdue,
                f"「{label(case.node)}」已超期（期限 {local_text(case.due_at, settings)}）",
                court_id=handler,
            )
        )
        recipients = [case.responsible_id, *staff[handler]]
        if case.supervising_court_id is not None:
            recipients += staff[case.supervising_court_id]
        for court in sorted(uppers.get(case.id, ())):  # 交办 further down: the courts above
            recipients += staff[court]
        notices.append(
            Notice(
                recipients,
                kind="case_overdue",
                title=f"信访件 {case.number} 已超期",
                body=f"「{label(case.node)}」节点已超期",
            )
        )
        result.overdue += 1
        parent = parent_of.get(handler)
        if parent is not None and parent != case.supervising_court_id:
            entries.append(
                Entry(
                    case.id,
                    EventKind.escalated,
                    "超期情况已上报上级法院",
                    court_id=parent,
                    detail={"to_court_id": parent},
                )
            )
            notices.append(
                Notice(
                    staff[parent],
                    kind="case_escalated",
                    title=f"下级法院信访件 {case.number} 超期",
                    body=f"「{label(case.node)}」节点已超期",
                )
            )
            result.escalated += 1
    # thousands of entries and notices: a few multi-row INSERTs, not one round trip each
    await add_events(db, SYSTEM, entries)
    await notify_many(db, notices)
    return result


# ---------------------------------------------------------------- deadline rules


async def list_rules(db: AsyncSession) -> Sequence[DeadlineRule]:
    """Each node's rule, in the workflow's order (分流 first)."""
    rules = (await db.scalars(select(DeadlineRule))).all()
    order = {node: i for i, node in enumerate(Node)}
    return sorted(rules, key=lambda r: order.get(Node(r.node), len(order)))


async def set_rule(
    db: AsyncSession, actor: Actor, node: Node, *, days: int, remind_days_before: int
) -> DeadlineRule:
    """Change how long a node may take (admins only); running deadlines keep theirs."""
    if not actor.is_admin:
        raise PermissionDeniedError("只有系统管理员可以修改办理期限规则")
    if not 1 <= days <= 365 or not 0 <= remind_days_before < days:
        raise InvalidError("期限天数应在 1–365 之间，提醒天数应小于期限天数", code="invalid_rule")
    rule = await db.get(DeadlineRule, node)
    if rule is None:
        rule = DeadlineRule(node=node, days=days, remind_days_before=remind_days_before)
        db.add(rule)
    before = None if rule.days is None else (rule.days, rule.remind_days_before)
    rule.days = days
    rule.remind_days_before = remind_days_before
    await db.flush()
    record_audit(
        db,
        action="case.rule",
        actor_id=actor.user_id,
        actor_name=actor.username,
        target_type="case_rule",
        target_id=node.value,
        address=actor.address,
        detail={"node": label(node), "before": before, "days": days, "remind": remind_days_before},
    )
    return rule
