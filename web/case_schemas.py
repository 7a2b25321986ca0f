"""The JSON shapes of the petition case API (docs: the case API in docs/protocol.md).

Bodies are lenient where the service names what is missing (有录必全: a registration with
empty fields gets ``incomplete_record`` naming them, not a schema error); every answer masks
ID and phone numbers.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints, model_validator

from config.privacy import mask_id_number, mask_phone, mask_text
from scheduler.cases.models import Assignment, CaseEvent, Contact, DeadlineRule, FollowUp, Material
from scheduler.cases.service import EARLIEST_CONTACT, CaseFacts, Names, Timeline, overdue_days
from scheduler.cases.words import (
    AssignmentState,
    CaseCategory,
    CaseState,
    CaseTrack,
    Channel,
    FollowUpResult,
    HandlingMode,
    Node,
    Procedure,
    ResolutionGround,
    TerminationGround,
    resolution_grounds,
)
from scheduler.models import Court, CourtLevel, IdType, Petitioner, Role, User
from web.audit_text import local_instants
from web.schemas import Answer, Body, Id, Instant, PageQuery, Phone, Query, _instant, _printable


def _masked(value: Any) -> Any:
    """ID and phone numbers masked in every text of a stored detail."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    return value


# Optional free text (the service says when a field is required), by maximum length.
Line64 = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=64), AfterValidator(_printable)
]
Line128 = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=128), AfterValidator(_printable)
]
Text400 = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=400), AfterValidator(_printable)
]
Text4000 = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=4000), AfterValidator(_printable)
]


_DAY = timedelta(days=1)


def _since_earliest_contact(value: datetime) -> datetime:
    """A contact's time: not before 1990 (a letter of 1900 would be overdue at once); not
    after now is the service's check (``cases.contact_time``)."""
    # the wall time first: an instant of year 1 cannot even be compared in UTC
    if value.replace(tzinfo=None) < EARLIEST_CONTACT.replace(tzinfo=None) - _DAY:
        raise ValueError(f"来访来信时间不能早于 {EARLIEST_CONTACT.year} 年 1 月 1 日")
    if _instant(value) < EARLIEST_CONTACT:
        raise ValueError(f"来访来信时间不能早于 {EARLIEST_CONTACT.year} 年 1 月 1 日")
    return value


# When a contact happened: since 1990
ContactTime = Annotated[AwareDatetime, AfterValidator(_since_earliest_contact)]


# ---------------------------------------------------------------- queries


class _Blanks(Query):
    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        """A form's empty filter (``channel=``) means no filter."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != ""}
        return data


class CaseQuery(PageQuery, _Blanks):
    channel: Channel | None = None
    category: CaseCategory | None = None
    node: Node | None = None
    state: CaseState | None = None
    overdue: bool = False
    responsible_id: Id | None = None
    flagged: bool = False
    mine: bool = Field(False, description="Only cases the caller leads (领导包案).")
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] = Field(
        "", description="A registration number or an original case number."
    )


class DuplicateQuery(_Blanks):
    id_type: IdType = IdType.resident_id
    id_number: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
    numbers: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=640)]


class StaffQuery(Query):
    court_id: Id


class BoardQuery(Query):
    court_id: Id | None = None  # that court alone, all of its cases


# ---------------------------------------------------------------- bodies


class PersonIn(Body):
    name: Line64 = ""
    id_type: IdType = IdType.resident_id
    id_number: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)] = ""
    phone: Phone = ""


class RegisterIn(Body):
    """A registration: fields left empty are named in the ``incomplete_record`` answer."""

    channel: Channel | None = None
    petitioners: list[PersonIn] = Field(default_factory=list, max_length=50)
    people_count: Annotated[int, Field(ge=1, le=10000)] = 1
    category: CaseCategory | None = None
    summary: Text4000 = ""
    original_numbers: list[Line64] = Field(default_factory=list, max_length=20)
    original_court: Line128 = ""
    occurred_at: ContactTime | None = None
    contact_summary: Text4000 = ""


class ContactIn(Body):
    channel: Channel
    occurred_at: ContactTime | None = None
    summary: Text4000 = ""
    people_count: Annotated[int, Field(ge=1, le=10000)] = 1


class TriageIn(Body):
    track: CaseTrack
    procedure: Procedure | None = None
    guidance: Text4000 = ""
    mode: HandlingMode | None = None
    responsible_id: Id | None = None


class SetOwnerIn(Body):
    responsible_id: Id
    reason: Text400 = ""


class AssignIn(Body):
    to_court_id: Id
    deadline: Instant | None = Field(None, description="Default: the feedback rule.")
    instructions: Text4000 = ""


class ProgressIn(Body):
    text: Text4000 = ""


class ReportIn(Body):
    result: Text4000 = ""


class RemarkIn(Body):
    remark: Text4000 = ""


class ReturnIn(Body):
    remark: Text4000 = ""
    deadline: Instant | None = None


class EmptyIn(Body):
    pass


class JudicialAidIn(Body):
    stage: Literal["applied", "granted", "refused"]
    amount_yuan: Annotated[int, Field(ge=1, le=100_000_000)] | None = None
    remark: Text4000 = ""


class ResolveIn(Body):
    ground: ResolutionGround | None = None
    remark: Text4000 = ""


class TerminateIn(Body):
    ground: TerminationGround | None = None
    approval: Text400 = ""
    remark: Text4000 = ""


class ScheduleFollowUpIn(Body):
    due_at: Instant | None = None
    remark: Text4000 = ""


class FollowUpIn(Body):
    result: FollowUpResult
    remark: Text4000 = ""


class ReviewIn(Body):
    findings: Text4000 = ""
    rating: Annotated[str, StringConstraints(max_length=16)]


class ReopenIn(Body):
    reason: Text4000 = ""


class CorrectIn(Body):
    event_id: Id
    text: Text4000 = ""


class RuleIn(Body):
    days: Annotated[int, Field(ge=1, le=365)]
    remind_days_before: Annotated[int, Field(ge=0, le=364)]


# ---------------------------------------------------------------- answers


class Named(Answer):
    id: int
    name: str


def _named(ids: dict[int, str], key: int | None) -> dict[str, Any] | None:
    """A :class:`Named` field's value (validated by the answer that holds it, in one go)."""
    return None if key is None else {"id": key, "name": ids.get(key, f"#{key}")}


class CaseRow(Answer):
    """A case as lists and the board show it (no ID or phone numbers at all)."""

    id: int
    number: str
    category: str
    channel: Channel
    state: CaseState
    node: Node
    track: CaseTrack
    due_at: datetime | None
    overdue: bool
    days_overdue: int
    petitioner_name: str
    people_count: int
    contact_count: int
    handler_court: Named
    supervising_court: Named | None
    responsible: Named | None
    leader: Named | None
    flagged: bool
    original_numbers: list[str]  # in lists only the first
    created_at: datetime

    @classmethod
    def of(cls, case: CaseFacts, names: Names, now: datetime) -> CaseRow:
        return cls(**_row_fields(case, names, now))


def _row_fields(case: CaseFacts, names: Names, now: datetime) -> dict[str, Any]:
    days = overdue_days(case, now)
    handler = case.handler_court_id or case.court_id
    return {
        "id": case.id,
        "number": case.number,
        "category": case.category,
        "channel": case.channel,
        "state": case.state,
        "node": case.node,
        "track": case.track,
        "due_at": case.due_at,
        "overdue": days > 0,
        "days_overdue": days,
        "petitioner_name": names.petitioners.get(case.petitioner_id, ""),
        "people_count": case.people_count,
        "contact_count": case.contact_count,
        "handler_court": _named(names.courts, handler),
        "supervising_court": _named(names.courts, case.supervising_court_id),
        "responsible": _named(names.users, case.responsible_id),
        "leader": _named(names.users, case.leader_id),
        "flagged": case.flagged,
        "original_numbers": [case.judgment_ref] if case.judgment_ref else [],
        "created_at": case.created_at,
    }


class PetitionerBrief(Answer):
    id: int
    name: str
    id_type: IdType
    id_number: str  # masked
    phone: str  # masked

    @classmethod
    def of(cls, p: Petitioner) -> PetitionerBrief:
        return cls(
            id=p.id,
            name=p.name,
            id_type=p.id_type,
            id_number=mask_id_number(p.id_number),
            phone=mask_phone(p.phone),
        )


class CaseOut(CaseRow):
    summary: str
    original_court: str
    registered_court: Named
    petitioners: list[PetitionerBrief]
    procedure: str
    mode: HandlingMode | None
    closed_at: datetime | None


class EventOut(Answer):
    id: int
    at: datetime
    kind: str
    actor_name: str  # the account (系统 for the system)
    actor: str  # who, as people read it: the staff member's name, else actor_name
    court_name: str | None
    text: str  # times in it are the court's local time
    detail: dict[str, Any]

    @classmethod
    def of(
        cls, e: CaseEvent, courts: dict[int, str], tz: tzinfo, actors: dict[int, str]
    ) -> EventOut:
        return cls(
            id=e.id,
            at=e.at,
            kind=e.kind,
            actor_name=e.actor_name,
            actor=actors.get(e.actor_id, e.actor_name) if e.actor_id is not None else e.actor_name,
            court_name=courts.get(e.court_id) if e.court_id is not None else None,
            text=local_instants(mask_text(e.text), tz),
            detail=_masked(dict(e.detail or {})),
        )


class ContactOut(Answer):
    id: int
    channel: Channel
    occurred_at: datetime
    summary: str
    people_count: int
    repeat: bool
    visit_id: str | None
    court: Named
    created_at: datetime

    @classmethod
    def of(cls, c: Contact, courts: dict[int, str]) -> ContactOut:
        return cls(
            id=c.id,
            channel=c.channel,
            occurred_at=c.occurred_at,
            summary=mask_text(c.summary),
            people_count=c.people_count,
            repeat=c.repeat,
            visit_id=c.visit_id,
            court=Named(id=c.court_id, name=courts.get(c.court_id, f"#{c.court_id}")),
            created_at=c.created_at,
        )


class MaterialOut(Answer):
    id: int
    contact_id: int | None
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime
    url: str

    @classmethod
    def of(cls, m: Material) -> MaterialOut:
        return cls(
            id=m.id,
            contact_id=m.contact_id,
            filename=mask_text(m.filename),  # scans are often named after an ID number
            content_type=m.content_type,
            size=m.size,
            sha256=m.sha256,
            created_at=m.created_at,
            url=f"/api/v1/case-materials/{m.id}",
        )


class AssignmentOut(Answer):
    id: int
    from_court: Named
    to_court: Named
    deadline: datetime
    state: AssignmentState
    instructions: str
    result: str
    assigned_at: datetime
    reported_at: datetime | None

    @classmethod
    def of(cls, a: Assignment, courts: dict[int, str]) -> AssignmentOut:
        return cls(
            id=a.id,
            from_court=Named(id=a.from_court_id, name=courts.get(a.from_court_id, "")),
            to_court=Named(id=a.to_court_id, name=courts.get(a.to_court_id, "")),
            deadline=a.deadline,
            state=a.state,
            instructions=mask_text(a.instructions),
            result=mask_text(a.result),
            assigned_at=a.assigned_at,
            reported_at=a.reported_at,
        )


class FollowUpOut(Answer):
    id: int
    due_at: datetime
    done_at: datetime | None
    result: str
    remark: str

    @classmethod
    def of(cls, f: FollowUp) -> FollowUpOut:
        return cls(
            id=f.id, due_at=f.due_at, done_at=f.done_at, result=f.result, remark=mask_text(f.remark)
        )


class CaseDetail(Answer):
    """Everything a case's page shows, and what the caller may do to it now."""

    case: CaseOut
    actions: list[str]
    resolution_grounds: list[ResolutionGround]  # the 化解 grounds of the case's category
    may_book: bool  # the caller may book a video visit of this case now (an operator)
    events: list[EventOut]
    contacts: list[ContactOut]
    materials: list[MaterialOut]
    assignments: list[AssignmentOut]
    followups: list[FollowUpOut]

    @classmethod
    def of(
        cls,
        t: Timeline,
        names: Names,
        actions: list[str],
        now: datetime,
        tz: tzinfo,
        *,
        may_book: bool,
    ) -> CaseDetail:
        case = t.case
        courts = {**names.courts, **t.names}
        fields = _row_fields(case, names, now)
        fields["original_numbers"] = list(t.numbers)
        return cls(
            case=CaseOut(
                **fields,
                summary=mask_text(case.summary),
                original_court=case.original_court,
                registered_court=Named(id=case.court_id, name=courts.get(case.court_id, "")),
                petitioners=[PetitionerBrief.of(p) for p in t.petitioners],
                procedure=case.procedure,
                mode=case.mode,
                closed_at=case.closed_at,
            ),
            actions=actions,
            resolution_grounds=list(resolution_grounds(case.category)),
            may_book=may_book,
            events=[EventOut.of(e, courts, tz, t.actors) for e in t.events],
            contacts=[ContactOut.of(c, courts) for c in t.contacts],
            materials=[MaterialOut.of(m) for m in t.materials],
            assignments=[AssignmentOut.of(a, courts) for a in t.assignments],
            followups=[FollowUpOut.of(f) for f in t.followups],
        )


class Registered(Answer):
    # None: linked to a case another court handles that the caller's court may not see
    # (``other_court``): only the contact is answered, as /cases/duplicates shows nothing
    case: CaseRow | None
    contact_id: int
    linked: bool  # True: added as 重复访 to the case already registered
    other_court: bool = False  # linked to a case of another court (not shown)


class DuplicateOut(Answer):
    case: CaseRow | None


class BoardCourt(Answer):
    court: Named
    total: int  # its supervised open cases, all of them
    overdue: int
    cases: list[CaseRow]  # overdue first; only the first of them unless the court was asked for


class BoardOut(Answer):
    courts: list[BoardCourt]  # every court below with a supervised open case
    total: int
    overdue: int


class CourtBrief(Answer):
    id: int
    name: str
    level: CourtLevel

    @classmethod
    def of(cls, c: Court) -> CourtBrief:
        return cls(id=c.id, name=c.name, level=c.level)


class StaffBrief(Answer):
    id: int
    name: str
    role: Role

    @classmethod
    def of(cls, u: User) -> StaffBrief:
        return cls(id=u.id, name=u.display_name, role=u.role)


class RuleOut(Answer):
    node: Node
    days: int
    remind_days_before: int

    @classmethod
    def of(cls, r: DeadlineRule) -> RuleOut:
        return cls(node=r.node, days=r.days, remind_days_before=r.remind_days_before)
