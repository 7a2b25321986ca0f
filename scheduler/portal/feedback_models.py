"""Tables of what petitioners say on the portal: legal questions (a thread of messages that
staff answer, 有信必复), requests for third-party mediation, satisfaction ratings (满意度评价)
and complaints and suggestions (投诉建议). Rows are never deleted.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
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
from config.vocabulary import define
from scheduler.models import _enum


class ThreadState(enum.StrEnum):
    """A question thread: waiting for the court's answer, or answered."""

    waiting = "waiting"
    answered = "answered"


define(
    "portal_thread_state",
    ThreadState,
    {ThreadState.waiting: "待答复", ThreadState.answered: "已答复"},
)


class RatingSubject(enum.StrEnum):
    """What a satisfaction rating is about."""

    visit = "visit"
    case = "case"


define(
    "rating_subject",
    RatingSubject,
    {RatingSubject.visit: "接访评价", RatingSubject.case: "办理评价"},
)


class RatingReason(enum.StrEnum):
    """The fixed reasons a petitioner may tick with a rating."""

    attitude_good = "attitude_good"
    explained_clearly = "explained_clearly"
    timely = "timely"
    problem_solved = "problem_solved"
    attitude_poor = "attitude_poor"
    unclear = "unclear"
    slow = "slow"
    not_solved = "not_solved"
    technical = "technical"


define(
    "rating_reason",
    RatingReason,
    {
        RatingReason.attitude_good: "态度热情",
        RatingReason.explained_clearly: "释法清楚",
        RatingReason.timely: "办理及时",
        RatingReason.problem_solved: "问题得到解决",
        RatingReason.attitude_poor: "态度不好",
        RatingReason.unclear: "解释不清",
        RatingReason.slow: "办理拖延",
        RatingReason.not_solved: "问题未解决",
        RatingReason.technical: "视频效果差",
    },
)


class ComplaintKind(enum.StrEnum):
    complaint = "complaint"
    suggestion = "suggestion"


define(
    "complaint_kind",
    ComplaintKind,
    {ComplaintKind.complaint: "投诉", ComplaintKind.suggestion: "建议"},
)


class ComplaintState(enum.StrEnum):
    open = "open"
    handled = "handled"


define(
    "complaint_state",
    ComplaintState,
    {ComplaintState.open: "待处理", ComplaintState.handled: "已处理"},
)


class MessageThread(Base):
    """A legal question (法律咨询) a petitioner asked a court, and its answers. While the
    petitioner's last message is unanswered ``due_at`` is set (``message_reply_days`` after
    it); housekeeping stamps ``overdue_at`` once that passes."""

    __tablename__ = "portal_threads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("portal_identities.id", ondelete="CASCADE"), nullable=False, index=True
    )
    court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False
    )
    petition_id: Mapped[int | None] = mapped_column(
        ForeignKey("petitions.id", ondelete="SET NULL"), index=True
    )
    subject: Mapped[str] = mapped_column(String(100), nullable=False)
    state: Mapped[ThreadState] = mapped_column(
        _enum(ThreadState, "portal_thread_state"), default=ThreadState.waiting, nullable=False
    )
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (
        Index("ix_portal_threads_court", "court_id", "state", "due_at"),
        Index("ix_portal_threads_due", "due_at"),
    )


class ThreadMessage(Base):
    """One message of a thread: the petitioner's (``staff_id`` empty) or a staff answer."""

    __tablename__ = "portal_thread_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[int] = mapped_column(
        ForeignKey("portal_threads.id", ondelete="CASCADE"), nullable=False, index=True
    )
    from_staff: Mapped[bool] = mapped_column(default=False, nullable=False)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    staff_name: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class MediationRequest(Base):
    """A request for third-party mediation (第三方化解) on a case, given to the lawyer or
    mediator on the court's duty roster at the time of the request."""

    __tablename__ = "portal_mediation_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("portal_identities.id", ondelete="CASCADE"), nullable=False, index=True
    )
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False
    )
    lawyer_id: Mapped[int] = mapped_column(
        ForeignKey("duty_lawyers.id", ondelete="RESTRICT"), nullable=False
    )
    note: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class Rating(Base):
    """A satisfaction rating (满意度评价) of one visit or of one case by one petitioner.

    ``subject_key`` is ``visit:<visit id>`` or ``case:<case id>``: one rating per petitioner
    per visit and one per case (a unique constraint). ``judge_id`` is the visit's judge (for a
    case rating, the case's responsible staff member), kept as it was when rated."""

    __tablename__ = "portal_ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("portal_identities.id", ondelete="CASCADE"), nullable=False
    )
    subject: Mapped[RatingSubject] = mapped_column(
        _enum(RatingSubject, "rating_subject"), nullable=False
    )
    subject_key: Mapped[str] = mapped_column(String(48), nullable=False)
    petition_id: Mapped[int] = mapped_column(
        ForeignKey("petitions.id", ondelete="CASCADE"), nullable=False
    )
    visit_id: Mapped[str | None] = mapped_column(ForeignKey("visits.id", ondelete="SET NULL"))
    judge_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False
    )
    score: Mapped[int] = mapped_column(Integer, nullable=False)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    text: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (
        UniqueConstraint("identity_id", "subject_key", name="uq_portal_ratings_subject"),
        CheckConstraint("score >= 1 AND score <= 5", name="rating_score_range"),
        Index("ix_portal_ratings_court_time", "court_id", "created_at"),
        Index("ix_portal_ratings_petition", "petition_id"),
        Index("ix_portal_ratings_judge", "judge_id"),
    )


class Complaint(Base):
    """A complaint or suggestion (投诉建议) about a court, routed to the court that
    supervises it (``routed_court_id``, see :func:`scheduler.portal.feedback.route_complaint`)."""

    __tablename__ = "portal_complaints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("portal_identities.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[ComplaintKind] = mapped_column(
        _enum(ComplaintKind, "complaint_kind"), nullable=False
    )
    court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False
    )
    routed_court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="RESTRICT"), nullable=False
    )
    petition_id: Mapped[int | None] = mapped_column(ForeignKey("petitions.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[ComplaintState] = mapped_column(
        _enum(ComplaintState, "complaint_state"), default=ComplaintState.open, nullable=False
    )
    reply: Mapped[str] = mapped_column(Text, default="", nullable=False)
    handled_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)

    __table_args__ = (Index("ix_portal_complaints_routed", "routed_court_id", "state"),)
