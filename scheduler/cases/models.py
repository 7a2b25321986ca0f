"""Tables of petition case handling: contacts, materials, original case numbers, further
petitioners, the timeline, assignments, deadline rules, follow-ups and meetings.

The case itself is :class:`scheduler.models.Petition`. Timeline rows (``case_events``) are
only ever inserted: database triggers refuse updates and deletes (migration 0006).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from config.db import Base, UTCDateTime, utcnow
from scheduler.cases.words import AssignmentState, Channel, Node
from scheduler.models import _enum

_BIG = BigInteger().with_variant(Integer, "sqlite")


class CaseRef(Base):
    """An original case number a petition case is about; one petitioner raises one matter
    about one original case once (重复访 are contacts on the existing case)."""

    __tablename__ = "case_refs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    number: Mapped[str] = mapped_column(String(64), nullable=False)
    # SHA-256 of the lead petitioner's identity document (type + number), never the number
    identity_key: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (
        UniqueConstraint("identity_key", "number", name="uq_case_refs_identity_number"),
        Index("ix_case_refs_number", "number"),
    )


class CasePetitioner(Base):
    """A further petitioner of a case (群体访); the lead one is ``Petition.petitioner_id``."""

    __tablename__ = "case_petitioners"

    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), primary_key=True
    )
    petitioner_id: Mapped[int] = mapped_column(
        ForeignKey("petitioners.id", ondelete="RESTRICT"), primary_key=True
    )


class Contact(Base):
    """One time the matter reached a court: a visit, a letter, a call, an online petition."""

    __tablename__ = "case_contacts"

    id: Mapped[int] = mapped_column(_BIG, primary_key=True, autoincrement=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), nullable=False
    )
    court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False
    )
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "case_channel"), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    summary: Mapped[str] = mapped_column(Text, default="", nullable=False)
    people_count: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    repeat: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    visit_id: Mapped[str | None] = mapped_column(ForeignKey("visits.id", ondelete="SET NULL"))
    registered_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (
        Index("ix_case_contacts_petition", "petition_id", "occurred_at"),
        Index("ix_case_contacts_court_time", "court_id", "occurred_at"),
        Index("ix_case_contacts_visit", "visit_id"),
        CheckConstraint("people_count >= 1", name="contact_people_positive"),
    )


class Material(Base):
    """A scanned or uploaded document of a case, hashed at upload and stored whole."""

    __tablename__ = "case_materials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("case_contacts.id", ondelete="SET NULL")
    )
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(String(64), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    path: Mapped[str] = mapped_column(String(255), nullable=False)  # below the materials dir
    uploaded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class CaseEvent(Base):
    """One entry of a case's timeline (全程留痕). Rows are only ever inserted; a correction
    is a new entry that names the one it corrects."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(_BIG, primary_key=True, autoincrement=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), nullable=False
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    kind: Mapped[str] = mapped_column(String(24), nullable=False)  # words.EventKind
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_name: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    court_id: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text, default="", nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)

    __table_args__ = (Index("ix_case_events_petition", "petition_id", "id"),)


class Assignment(Base):
    """One hand-over of a case to a lower court with a deadline for feedback (交办)."""

    __tablename__ = "case_assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    from_court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False
    )
    to_court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False
    )
    deadline: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    state: Mapped[AssignmentState] = mapped_column(
        _enum(AssignmentState, "assignment_state"), default=AssignmentState.open, nullable=False
    )
    instructions: Mapped[str] = mapped_column(Text, default="", nullable=False)
    result: Mapped[str] = mapped_column(Text, default="", nullable=False)
    assigned_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_case_assignments_to", "to_court_id", "state"),
        Index("ix_case_assignments_from", "from_court_id", "state"),
    )


class DeadlineRule(Base):
    """How many days a node may take, and how many days before its deadline to remind."""

    __tablename__ = "case_deadline_rules"

    node: Mapped[Node] = mapped_column(_enum(Node, "case_node"), primary_key=True)
    days: Mapped[int] = mapped_column(Integer, nullable=False)
    remind_days_before: Mapped[int] = mapped_column(Integer, default=2, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )

    __table_args__ = (
        CheckConstraint("days >= 1", name="rule_days_positive"),
        CheckConstraint("remind_days_before >= 0", name="rule_remind_nonnegative"),
    )


class FollowUp(Base):
    """A follow-up contact (回访) scheduled after closing, and what it found."""

    __tablename__ = "case_followups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[str] = mapped_column(String(16), default="", nullable=False)
    remark: Mapped[str] = mapped_column(Text, default="", nullable=False)
    done_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class MeetingCase(Base):
    """A case a video supervision meeting (视频约谈, a Visit of kind ``meeting``) is about."""

    __tablename__ = "meeting_cases"

    visit_id: Mapped[str] = mapped_column(
        ForeignKey("visits.id", ondelete="CASCADE"), primary_key=True
    )
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class MeetingInvitee(Base):
    """A named staff member of a lower court invited to a meeting (no petitioner joins)."""

    __tablename__ = "meeting_invitees"

    visit_id: Mapped[str] = mapped_column(
        ForeignKey("visits.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
