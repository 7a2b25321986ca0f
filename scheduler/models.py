"""Tables of the court domain: courts, staff, rooms, petitioners, petitions, visits, codes."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from config.db import Base, UTCDateTime, utcnow


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


class Role(enum.StrEnum):
    """What a staff account may do."""

    operator = "operator"
    judge = "judge"
    archivist = "archivist"
    admin = "admin"


class VisitState(enum.StrEnum):
    """Life of a visit; the scheduler issue adds the transition rules."""

    scheduled = "scheduled"
    checked_in = "checked_in"
    in_lobby = "in_lobby"
    in_progress = "in_progress"
    ended = "ended"
    archived = "archived"
    cancelled = "cancelled"
    no_show = "no_show"


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
    """The matter a petitioner raises, owned by the court that registered it."""

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

    petitioner: Mapped[Petitioner] = relationship()
    court: Mapped[Court] = relationship()

    __table_args__ = (UniqueConstraint("court_id", "number"),)


def new_visit_id() -> str:
    return uuid.uuid4().hex


class Visit(Base):
    """One video reception of one petition; its media Room has ``room_id == visit.id``.

    The scheduler issue extends this table (slots, bookings, state history).
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

    petition: Mapped[Petition] = relationship()


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
