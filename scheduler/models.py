"""Tables of the court domain: courts, staff, rooms, petitioners, petitions, visits, codes."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from config.db import Base, UTCDateTime, utcnow
from config.vocabulary import define
from scheduler.cases.words import (
    CaseState,
    CaseTrack,
    Channel,
    HandlingMode,
    Node,
    VisitKind,
)


class CourtLevel(enum.StrEnum):
    """The four levels of the Chinese court system, top first."""

    supreme = "supreme"
    high = "high"
    intermediate = "intermediate"
    basic = "basic"

    @property
    def rank(self) -> int:
        return list(CourtLevel).index(self)

    @property
    def parent_level(self) -> CourtLevel | None:
        return None if self.rank == 0 else list(CourtLevel)[self.rank - 1]


define(
    "court_level",
    CourtLevel,
    {
        CourtLevel.supreme: "最高法院",
        CourtLevel.high: "高级法院",
        CourtLevel.intermediate: "中级法院",
        CourtLevel.basic: "基层法院",
    },
)


class Role(enum.StrEnum):
    """What a staff account may do."""

    operator = "operator"
    judge = "judge"
    archivist = "archivist"
    petition_officer = "petition_officer"
    leader = "leader"
    admin = "admin"


define(
    "role",
    Role,
    {
        Role.operator: "操作员",
        Role.judge: "接访法官",
        Role.archivist: "档案员",
        Role.petition_officer: "信访专员",
        Role.leader: "院领导",
        Role.admin: "系统管理员",
    },
)


class VisitState(enum.StrEnum):
    """Life of a visit; the rules of moving between states are in scheduler/lifecycle.py."""

    scheduled = "scheduled"
    checked_in = "checked_in"
    in_lobby = "in_lobby"
    in_progress = "in_progress"
    ended = "ended"
    archived = "archived"
    cancelled = "cancelled"
    no_show = "no_show"


define(
    "visit_state",
    VisitState,
    {
        VisitState.scheduled: "已预约",
        VisitState.checked_in: "已签到",
        VisitState.in_lobby: "候场中",
        VisitState.in_progress: "接访中",
        VisitState.ended: "已结束",
        VisitState.archived: "已归档",
        VisitState.cancelled: "已取消",
        VisitState.no_show: "未到场",
    },
)


class CodeRole(enum.StrEnum):
    """Who joins a visit with a one-time code (never a staff account)."""

    petitioner = "petitioner"
    lawyer = "lawyer"
    mediator = "mediator"


class IdType(enum.StrEnum):
    """Identity document type of a petitioner."""

    resident_id = "resident_id"
    passport = "passport"
    other = "other"


define(
    "id_type",
    IdType,
    {IdType.resident_id: "居民身份证", IdType.passport: "护照", IdType.other: "其他证件"},
)


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, validate_strings=True, length=16)


class Court(Base):
    """A court at one of four levels; every court but the supreme court has a parent."""

    __tablename__ = "courts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    level: Mapped[CourtLevel] = mapped_column(_enum(CourtLevel, "court_level"), nullable=False)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    parent: Mapped[Court | None] = relationship(remote_side=[id])

    __table_args__ = (
        CheckConstraint(
            "(level = 'supreme' AND parent_id IS NULL)"
            " OR (level != 'supreme' AND parent_id IS NOT NULL)",
            name="parent_by_level",
        ),
    )


class User(Base):
    """A staff account: operator, judge, archivist or admin."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    display_name: Mapped[str] = mapped_column(String(64), nullable=False)
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"), nullable=False)
    court_id: Mapped[int | None] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), index=True
    )
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    password_changed_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, nullable=False
    )
    # an administrator chose the password (new account, reset): its holder replaces it first
    must_change_password: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), nullable=False
    )

    court: Mapped[Court | None] = relationship()

    __table_args__ = (
        CheckConstraint("role = 'admin' OR court_id IS NOT NULL", name="court_unless_admin"),
    )


class ReceptionRoom(Base):
    """A physical video room at a basic court."""

    __tablename__ = "reception_rooms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    location: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    court: Mapped[Court] = relationship()

    __table_args__ = (UniqueConstraint("court_id", "name"),)


class Petitioner(Base):
    """A person who petitions; the ID number is stored once here and shown masked."""

    __tablename__ = "petitioners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    id_type: Mapped[IdType] = mapped_column(_enum(IdType, "id_type"), nullable=False)
    id_number: Mapped[str] = mapped_column(String(32), nullable=False)
    phone: Mapped[str] = mapped_column(String(20), default="", nullable=False)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    court: Mapped[Court] = relationship()

    __table_args__ = (
        UniqueConstraint("court_id", "id_type", "id_number"),
        Index("ix_petitioners_name", "name"),
    )


class Petition(Base):
    """A petition case (信访件): the matter one or more petitioners raise, registered at a
    court, handled by a court (首办责任) and followed to its end.

    ``court_id`` is the registering court; ``handler_court_id`` the court handling it now
    (a lower court after 交办). Contacts, materials, assignments and the timeline are in
    :mod:`scheduler.cases.models`; the rules of its states in :mod:`scheduler.cases.rules`.
    """

    __tablename__ = "petitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    petitioner_id: Mapped[int] = mapped_column(
        ForeignKey("petitioners.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    number: Mapped[str] = mapped_column(String(64), nullable=False)
    category: Mapped[str] = mapped_column(String(32), nullable=False)
    summary: Mapped[str] = mapped_column(Text, nullable=False)
    judgment_ref: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    # the case (信访件): see scheduler/cases
    channel: Mapped[Channel] = mapped_column(
        _enum(Channel, "case_channel"), default=Channel.video, nullable=False
    )
    original_court: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    people_count: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    state: Mapped[CaseState] = mapped_column(
        _enum(CaseState, "case_state"), default=CaseState.registered, nullable=False
    )
    track: Mapped[CaseTrack] = mapped_column(
        _enum(CaseTrack, "case_track"), default=CaseTrack.undecided, nullable=False
    )
    procedure: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    mode: Mapped[HandlingMode | None] = mapped_column(_enum(HandlingMode, "handling_mode"))
    handler_court_id: Mapped[int | None] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), index=True
    )
    responsible_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    supervising_court_id: Mapped[int | None] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), index=True
    )
    flagged: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    leader_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    node: Mapped[Node] = mapped_column(
        _enum(Node, "case_node"), default=Node.triage, nullable=False
    )
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    contact_count: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    # every channel its contacts came by (words.CHANNEL_BITS), for the list's channel filter
    channels: Mapped[int] = mapped_column(Integer, default=0, server_default="0", nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the deadline running when the case closed (None: none ran, or it is open): closing
    # replaces due_at (化解: the 回访 deadline; 信访终结, 导入诉讼: none), so 按期办结率 reads
    # this one (set with closed_at by service._act; migration 0016)
    closed_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )

    petitioner: Mapped[Petitioner] = relationship()
    court: Mapped[Court] = relationship(foreign_keys=[court_id])

    __table_args__ = (
        UniqueConstraint("court_id", "number"),
        Index("ix_petitions_number", "number"),
        # a court's list by state (and overdue: by deadline), by node, by category: the
        # handling courts' part of its scope from the index (migration 0014)
        Index("ix_petitions_handler_state", "handler_court_id", "state", "due_at"),
        Index("ix_petitions_handler_node", "handler_court_id", "node"),
        Index("ix_petitions_handler_category", "handler_court_id", "category"),
        Index("ix_petitions_due", "due_at"),
        # the deadline scan's cases: not yet alerted at their current node
        Index(
            "ix_petitions_alert",
            "due_at",
            sqlite_where=text("overdue_at IS NULL"),
            postgresql_where=text("overdue_at IS NULL"),
        ),
        # its reminders: not yet reminded nor alerted (migration 0012)
        Index(
            "ix_petitions_remind",
            "due_at",
            sqlite_where=text("reminded_at IS NULL AND overdue_at IS NULL"),
            postgresql_where=text("reminded_at IS NULL AND overdue_at IS NULL"),
        ),
        # the supervising court's board: the cases handed below, by handling court and state,
        # in deadline order, read from the index alone (migration 0012)
        Index(
            "ix_petitions_board",
            "handler_court_id",
            "state",
            "due_at",
            "supervising_court_id",
            sqlite_where=text("supervising_court_id IS NOT NULL"),
            postgresql_where=text("supervising_court_id IS NOT NULL"),
        ),
        # the cases a leader leads, a person is responsible for: most have neither, so only
        # those that do are indexed (a full index's statistics, NULLs counted, made the
        # planner read the court's whole scope instead; migration 0013)
        Index(
            "ix_petitions_leader_id",
            "leader_id",
            sqlite_where=text("leader_id IS NOT NULL"),
            postgresql_where=text("leader_id IS NOT NULL"),
        ),
        Index(
            "ix_petitions_responsible_id",
            "responsible_id",
            sqlite_where=text("responsible_id IS NOT NULL"),
            postgresql_where=text("responsible_id IS NOT NULL"),
        ),
        CheckConstraint("people_count >= 1", name="people_count_positive"),
    )


def new_visit_id() -> str:
    return uuid.uuid4().hex


class Visit(Base):
    """One video reception of one petition; its media Room has ``room_id == visit.id``.

    ``room_id`` here is the basic court's reception room; the booked period is
    ``[starts_at, ends_at)``, held in :class:`BookingLock` while the visit is active.
    """

    __tablename__ = "visits"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_visit_id)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    receiving_court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    judge_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    room_id: Mapped[int | None] = mapped_column(
        ForeignKey("reception_rooms.id", ondelete="RESTRICT"), index=True
    )
    state: Mapped[VisitState] = mapped_column(
        _enum(VisitState, "visit_state"), default=VisitState.scheduled, nullable=False
    )
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )
    booked_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    walk_in: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    cancel_reason: Mapped[str] = mapped_column(String(256), default="", nullable=False)
    checkin_document_type: Mapped[str] = mapped_column(String(16), default="", nullable=False)
    checkin_document_masked: Mapped[str] = mapped_column(String(40), default="", nullable=False)
    checked_in_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    kind: Mapped[VisitKind] = mapped_column(
        _enum(VisitKind, "visit_kind"), default=VisitKind.reception, nullable=False
    )

    petition: Mapped[Petition] = relationship()

    __table_args__ = (
        Index("ix_visits_judge_time", "judge_id", "starts_at"),
        Index("ix_visits_room_time", "room_id", "starts_at"),
        Index("ix_visits_court_time", "court_id", "starts_at"),
        Index("ix_visits_receiving_time", "receiving_court_id", "starts_at"),
        Index("ix_visits_state_time", "state", "starts_at"),
        # a judge's or a room's open visits in a period (free slots), without reading their
        # past ones: see migration 0007
        Index("ix_visits_judge_state_time", "judge_id", "state", "starts_at"),
        Index("ix_visits_room_state_time", "room_id", "state", "starts_at"),
    )


class VisitCode(Base):
    """A one-time code with which a petitioner or invited third party joins one visit.

    Only a keyed hash of the code is stored.
    """

    __tablename__ = "visit_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[str] = mapped_column(
        ForeignKey("visits.id", ondelete="CASCADE"), nullable=False, index=True
    )
    role: Mapped[CodeRole] = mapped_column(_enum(CodeRole, "code_role"), nullable=False)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    label: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


# ---------------------------------------------------------------- scheduling


class CourtDayKind(enum.StrEnum):
    """A marked day in a court's calendar."""

    holiday = "holiday"  # no reception at this court
    leader_day = "leader_day"  # 领导接访日: a court leader receives
    # 调休上班日: a weekend day worked in place of a holiday; the court's judges and rooms
    # keep the hours of the weekday it stands for (``CourtDay.as_weekday``)
    workday = "workday"


define(
    "court_day_kind",
    CourtDayKind,
    {
        CourtDayKind.holiday: "休息日",
        CourtDayKind.leader_day: "领导接访日",
        CourtDayKind.workday: "调休上班日",
    },
)


class ExceptionKind(enum.StrEnum):
    """A one-off change to a judge's weekly reception hours."""

    addition = "addition"
    cancellation = "cancellation"


class VisitEventKind(enum.StrEnum):
    """What happened to a visit (its history; the audit trail holds the same)."""

    booked = "booked"
    rescheduled = "rescheduled"
    cancelled = "cancelled"
    checked_in = "checked_in"
    state = "state"
    walk_in = "walk_in"
    room = "room"  # in the live room: joined, left, admitted, evidence shown (detail.event)


class ReceptionTemplate(Base):
    """A judge's weekly recurring reception hours, in the court's local time."""

    __tablename__ = "reception_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    judge_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    weekday: Mapped[int] = mapped_column(Integer, nullable=False)  # 0 = Monday
    start_minute: Mapped[int] = mapped_column(Integer, nullable=False)  # minutes after 00:00
    end_minute: Mapped[int] = mapped_column(Integer, nullable=False)
    slot_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=30)
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        CheckConstraint(
            "start_minute >= 0 AND end_minute <= 1440 AND start_minute < end_minute",
            name="hours",
        ),
        CheckConstraint("slot_minutes BETWEEN 5 AND 240", name="slot_minutes"),
    )


class AvailabilityException(Base):
    """A one-off addition to, or cancellation of, a judge's reception hours (UTC)."""

    __tablename__ = "availability_exceptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    judge_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[ExceptionKind] = mapped_column(
        _enum(ExceptionKind, "exception_kind"), nullable=False
    )
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    slot_minutes: Mapped[int] = mapped_column(Integer, nullable=False, default=30)
    note: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (CheckConstraint("starts_at < ends_at", name="period"),)


class CourtDay(Base):
    """A holiday, a leader's reception day or a 调休 working day of one court."""

    __tablename__ = "court_days"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="CASCADE"), nullable=False
    )
    day: Mapped[date] = mapped_column(Date, nullable=False)
    kind: Mapped[CourtDayKind] = mapped_column(
        _enum(CourtDayKind, "court_day_kind"), nullable=False
    )
    note: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    # a 调休上班日's hours are those of this weekday (0 = Monday); only for that kind
    as_weekday: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("court_id", "day"),
        CheckConstraint(
            "(kind = 'workday') = (as_weekday IS NOT NULL)"
            " AND (as_weekday IS NULL OR as_weekday BETWEEN 0 AND 6)",
            name="workday_hours",
        ),
    )


class RoomHours(Base):
    """Weekly opening hours of a reception room, in local time."""

    __tablename__ = "room_hours"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    room_id: Mapped[int] = mapped_column(
        ForeignKey("reception_rooms.id", ondelete="CASCADE"), nullable=False, index=True
    )
    weekday: Mapped[int] = mapped_column(Integer, nullable=False)
    start_minute: Mapped[int] = mapped_column(Integer, nullable=False)
    end_minute: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        CheckConstraint(
            "start_minute >= 0 AND end_minute <= 1440 AND start_minute < end_minute",
            name="hours",
        ),
    )


class DutyLawyer(Base):
    """A lawyer on a court's duty roster (律师值班); joins visits by invitation code."""

    __tablename__ = "duty_lawyers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    firm: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    phone: Mapped[str] = mapped_column(String(20), default="", nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)


class DutyPeriod(Base):
    """When a duty lawyer is on duty (UTC)."""

    __tablename__ = "duty_periods"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lawyer_id: Mapped[int] = mapped_column(
        ForeignKey("duty_lawyers.id", ondelete="CASCADE"), nullable=False, index=True
    )
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (
        CheckConstraint("starts_at < ends_at", name="period"),
        Index("ix_duty_periods_time", "starts_at", "ends_at"),
    )


class BookingLock(Base):
    """One 5-minute unit of one resource (judge, room, petitioner) held by one visit.

    The primary key makes double booking impossible in the database itself, on SQLite and
    PostgreSQL alike: two visits cannot hold the same unit of the same resource.
    """

    __tablename__ = "booking_locks"

    resource: Mapped[str] = mapped_column(String(24), primary_key=True)  # "judge:12"
    unit: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch minutes // 5
    visit_id: Mapped[str] = mapped_column(
        ForeignKey("visits.id", ondelete="CASCADE"), nullable=False, index=True
    )


class VisitEvent(Base):
    """History of a visit: bookings, reschedules, cancellations, state changes."""

    __tablename__ = "visit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[str] = mapped_column(
        ForeignKey("visits.id", ondelete="CASCADE"), nullable=False, index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    kind: Mapped[VisitEventKind] = mapped_column(
        _enum(VisitEventKind, "visit_event_kind"), nullable=False
    )
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor_name: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)


class WalkInStatus(enum.StrEnum):
    waiting = "waiting"
    assigned = "assigned"
    withdrawn = "withdrawn"


class WalkIn(Base):
    """A petitioner present at a basic court, waiting for the next free judge."""

    __tablename__ = "walk_ins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="RESTRICT"), nullable=False
    )
    court_id: Mapped[int] = mapped_column(ForeignKey("courts.id"), nullable=False, index=True)
    receiving_court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id"), nullable=False, index=True
    )
    room_id: Mapped[int] = mapped_column(ForeignKey("reception_rooms.id"), nullable=False)
    document_type: Mapped[str] = mapped_column(String(16), nullable=False)
    document_masked: Mapped[str] = mapped_column(String(40), nullable=False)
    status: Mapped[WalkInStatus] = mapped_column(
        _enum(WalkInStatus, "walk_in_status"), default=WalkInStatus.waiting, nullable=False
    )
    visit_id: Mapped[str | None] = mapped_column(ForeignKey("visits.id"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class Notification(Base):
    """An in-app notice to one staff member, pushed over socket.io and kept in a list."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    visit_id: Mapped[str | None] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(128), nullable=False)
    body: Mapped[str] = mapped_column(String(512), default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_notifications_user", "user_id", "id"),)


class CalendarFeed(Base):
    """A secret iCalendar feed URL for one judge or one room; revocable."""

    __tablename__ = "calendar_feeds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(8), nullable=False)  # judge | room
    owner_id: Mapped[int] = mapped_column(Integer, nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
