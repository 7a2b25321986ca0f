"""JSON shapes of the scheduling API."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field, model_validator
from sqlalchemy import Row

from config.privacy import mask_phone
from scheduler.cases.words import CaseState, VisitKind, VisitOutcome
from scheduler.models import (
    AvailabilityException,
    CalendarFeed,
    CourtDay,
    CourtDayKind,
    DutyLawyer,
    DutyPeriod,
    ExceptionKind,
    Notification,
    ReceptionTemplate,
    RoomHours,
    Visit,
    VisitEvent,
    VisitState,
    WalkIn,
)
from web.schemas import (
    Answer,
    Body,
    Day,
    Id,
    OptionalText128,
    OptionalText2000,
    Phone,
    Query,
    Text64,
)

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


def _clock(value: str) -> str:
    if not _HHMM.match(value):
        raise ValueError("时间格式须为 HH:MM（00:00–24:00）")
    return value


Clock = Annotated[str, AfterValidator(_clock)]
Weekday = Annotated[int, Field(ge=0, le=6, description="0 = 星期一 … 6 = 星期日")]
SlotMinutes = Annotated[int, Field(ge=5, le=240)]
Reason = Annotated[OptionalText128, Field(min_length=1)]


def minutes(clock: str) -> int:
    hours, mins = clock.split(":")
    return int(hours) * 60 + int(mins)


def clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


# ---------------------------------------------------------------- availability


class TemplateIn(Body):
    judge_id: Id
    weekday: Weekday
    start: Clock
    end: Clock
    slot_minutes: SlotMinutes = 30
    valid_from: Day | None = None
    valid_until: Day | None = None


class TemplateOut(Answer):
    id: int
    judge_id: int
    court_id: int
    weekday: int
    start: str
    end: str
    slot_minutes: int
    valid_from: date | None
    valid_until: date | None

    @classmethod
    def of(cls, t: ReceptionTemplate) -> TemplateOut:
        return cls(
            id=t.id,
            judge_id=t.judge_id,
            court_id=t.court_id,
            weekday=t.weekday,
            start=clock(t.start_minute),
            end=clock(t.end_minute),
            slot_minutes=t.slot_minutes,
            valid_from=t.valid_from,
            valid_until=t.valid_until,
        )


class JudgeQuery(Query):
    judge_id: Id | None = None


class ExceptionIn(Body):
    judge_id: Id
    kind: ExceptionKind
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    slot_minutes: SlotMinutes = 30
    note: OptionalText128 = ""


class ExceptionOut(Answer):
    id: int
    judge_id: int
    kind: ExceptionKind
    starts_at: datetime
    ends_at: datetime
    slot_minutes: int
    note: str
    # visits booked in a cancelled span, whose judge and bookers were told to move them
    stranded_visits: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, e: AvailabilityException, stranded: Sequence[Visit] = ()) -> ExceptionOut:
        out = cls.model_validate(e)
        out.stranded_visits = [v.id for v in stranded]
        return out


class CourtDayIn(Body):
    court_id: Id
    day: Day
    kind: CourtDayKind
    note: OptionalText128 = ""
    # 调休上班日 only: the weekday (0 = Monday … 4 = Friday) whose hours the day keeps
    as_weekday: Weekday | None = None


class CourtDayOut(Answer):
    id: int
    court_id: int
    day: date
    kind: CourtDayKind
    note: str
    as_weekday: int | None
    # visits booked on a new holiday (or a 调休上班日 removed), whose judges and bookers
    # were told to move them
    stranded_visits: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, d: CourtDay, stranded: Sequence[Visit] = ()) -> CourtDayOut:
        out = cls.model_validate(d)
        out.stranded_visits = [v.id for v in stranded]
        return out


class StrandedOut(Answer):
    """A change done; the visits it left without a judge or a room (their judges and
    bookers were told to move them)."""

    ok: bool
    stranded_visits: list[str]


class CourtDayQuery(Query):
    court_id: Id
    first: Day | None = None
    days: Annotated[int, Field(ge=1, le=400)] = 90


class RoomHoursIn(Body):
    room_id: Id
    weekday: Weekday
    start: Clock
    end: Clock


class RoomHoursOut(Answer):
    id: int
    room_id: int
    weekday: int
    start: str
    end: str

    @classmethod
    def of(cls, h: RoomHours) -> RoomHoursOut:
        return cls(
            id=h.id,
            room_id=h.room_id,
            weekday=h.weekday,
            start=clock(h.start_minute),
            end=clock(h.end_minute),
        )


class RoomHoursQuery(Query):
    room_id: Id


class JudgeOut(Answer):
    id: int
    display_name: str
    court_id: int


class CourtQuery(Query):
    court_id: Id


class ReceiverQuery(CourtQuery):
    """The receivers of a court for a kind of visit: judges, or leaders for 领导接访."""

    kind: VisitKind = VisitKind.reception


# ---------------------------------------------------------------- roster


class LawyerIn(Body):
    court_id: Id
    name: Text64
    firm: OptionalText128 = ""
    phone: Phone = ""


class LawyerOut(Answer):
    id: int
    court_id: int
    name: str
    firm: str
    phone_masked: str
    active: bool

    @classmethod
    def of(cls, lawyer: DutyLawyer) -> LawyerOut:
        return cls(
            id=lawyer.id,
            court_id=lawyer.court_id,
            name=lawyer.name,
            firm=lawyer.firm,
            phone_masked=mask_phone(lawyer.phone),
            active=lawyer.active,
        )


class DutyPeriodIn(Body):
    lawyer_id: Id
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class DutyPeriodOut(Answer):
    id: int
    lawyer_id: int
    starts_at: datetime
    ends_at: datetime

    @classmethod
    def of(cls, p: DutyPeriod) -> DutyPeriodOut:
        return cls.model_validate(p)


class RosterQuery(Query):
    court_id: Id | None = None
    first: Day | None = None
    days: Annotated[int, Field(ge=1, le=62)] = 14


class OnDutyQuery(Query):
    court_id: Id
    at: AwareDatetime | None = None


# ---------------------------------------------------------------- visits


class VisitIn(Body):
    """A visit booked from a case (``petition_id``); ``kind`` one the court books:
    reception (视频接访), post_judgment (判后答疑: ``judge_id`` names the original trial
    judge) or leader (领导接访: ``judge_id``, if given, is a court leader)."""

    petition_id: Id
    receiving_court_id: Id
    judge_id: Id | None = None
    room_id: Id
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    kind: VisitKind = VisitKind.reception


class OutcomeIn(Body):
    """An outcome of the visit (visit_outcome vocabulary) and what was said or decided;
    ``other`` (其他) says what in ``text``."""

    outcome: VisitOutcome
    text: OptionalText2000 = ""

    @model_validator(mode="after")
    def _other_says_what(self) -> OutcomeIn:
        if self.outcome is VisitOutcome.other and not self.text:
            raise ValueError("接访结果为“其他”时须填写说明")
        return self


class OutcomeOut(Answer):
    """One outcome of a visit, an entry of its case's timeline."""

    id: int
    at: datetime
    visit_id: str
    outcome: VisitOutcome
    outcome_name: str
    text: str
    actor_name: str  # the account
    actor: str  # who, as people read it: the staff member's name


class RescheduleIn(Body):
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    judge_id: Id | None = None
    room_id: Id | None = None
    reason: Reason


class CancelIn(Body):
    reason: Reason


class CheckInIn(Body):
    document_type: Annotated[str, Field(pattern="^(resident_id|passport|other)$")]
    document_number: Annotated[str, Field(min_length=4, max_length=32, pattern=r"^[0-9A-Za-z-]+$")]


class StateIn(Body):
    state: VisitState


class WalkInIn(Body):
    petition_id: Id
    receiving_court_id: Id
    room_id: Id
    document_type: Annotated[str, Field(pattern="^(resident_id|passport|other)$")]
    document_number: Annotated[str, Field(min_length=4, max_length=32, pattern=r"^[0-9A-Za-z-]+$")]


class VisitOut(Answer):
    """A visit as lists show it: the petitioner's name, no identity numbers."""

    id: str
    state: VisitState
    state_name: str
    starts_at: datetime | None
    ends_at: datetime | None
    court_id: int
    court_name: str
    receiving_court_id: int
    receiving_court_name: str
    judge_id: int | None
    judge_name: str | None
    room_id: int | None
    room_name: str | None
    petition_id: int
    petition_number: str
    petition_category: str  # a code of case_category
    petition_category_name: str
    petition_state: CaseState
    petitioner_name: str
    kind: VisitKind
    kind_name: str
    walk_in: bool
    cancel_reason: str
    checkin_document_type: str
    checkin_document_masked: str
    recording_state: str | None = None  # recording, queued, processing, ready, failed
    recording_progress: int | None = None
    recording_note: str = ""  # a failure, or "转写不可用：…"
    can_end: bool = False  # the caller may end it now (scheduler/lifecycle.py decides)
    can_record_outcome: bool = False  # the caller is the visit's judge (lifecycle decides)


class VisitEventOut(Answer):
    id: int
    at: datetime
    kind: str
    from_state: str | None
    to_state: str | None
    actor_name: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, e: VisitEvent | Row[Any]) -> VisitEventOut:
        return cls.model_validate(e)


class VisitDetailOut(VisitOut):
    history: list[VisitEventOut]


class VisitQuery(Query):
    day: Day | None = None
    days: Annotated[int, Field(ge=1, le=31)] = 1
    court_id: Id | None = None
    judge_id: Id | None = None
    room_id: Id | None = None
    state: VisitState | None = None
    # open visits of earlier days still to be ended (a call that went on past midnight, a
    # judge who never came back); with it, ``day`` and ``days`` are ignored
    earlier_open: bool = False


class FreeSlotQuery(Query):
    kind: VisitKind = VisitKind.reception
    room_id: Id
    receiving_court_id: Id | None = None
    judge_id: Id | None = None
    petition_id: Id | None = None
    first: Day | None = None
    days: Annotated[int, Field(ge=1, le=56)] = 28
    limit: Annotated[int, Field(ge=1, le=100)] = 20


class FreeSlotOut(Answer):
    starts_at: datetime
    ends_at: datetime
    judge_id: int
    judge_name: str


class WalkInOut(Answer):
    id: int
    petition_id: int
    court_id: int
    receiving_court_id: int
    room_id: int
    status: str
    visit_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, w: WalkIn) -> WalkInOut:
        return cls.model_validate(w)


class WalkInResultOut(Answer):
    visit: VisitOut | None
    queued: WalkInOut | None
    position: int


# ---------------------------------------------------------------- notifications, feeds


class NotificationOut(Answer):
    id: int
    kind: str
    visit_id: str | None
    title: str
    body: str
    created_at: datetime
    read: bool

    @classmethod
    def of(cls, n: Notification) -> NotificationOut:
        return cls(
            id=n.id,
            kind=n.kind,
            visit_id=n.visit_id,
            title=n.title,
            body=n.body,
            created_at=n.created_at,
            read=n.read_at is not None,
        )


class NotificationQuery(Query):
    unread: bool = False
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class NotificationList(Answer):
    items: list[NotificationOut]
    unread: int


class FeedIn(Body):
    kind: Annotated[str, Field(pattern="^(judge|room)$")]
    owner_id: Id


class FeedOut(Answer):
    id: int
    kind: str
    owner_id: int
    created_at: datetime
    url: str | None = None

    @classmethod
    def of(cls, f: CalendarFeed, url: str | None = None) -> FeedOut:
        return cls(
            id=f.id, kind=f.owner_kind, owner_id=f.owner_id, created_at=f.created_at, url=url
        )


class CodeOut(Answer):
    """A one-time code, shown once."""

    code: str
    expires_at: datetime
    join_url: str
