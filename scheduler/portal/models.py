"""Tables of the petitioner portal: outgoing SMS, one-time login codes, portal identities and
sessions, and requests for a video visit.

Nothing here is a staff account: a petitioner is known by name, resident ID number and a
mainland mobile number proved by a one-time SMS code.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from config.db import Base, UTCDateTime, utcnow
from config.vocabulary import define
from scheduler.models import _enum


class SmsState(enum.StrEnum):
    """Where an outgoing SMS stands; no message is dropped without one of these."""

    queued = "queued"
    sent = "sent"
    failed = "failed"


define(
    "sms_state",
    SmsState,
    {SmsState.queued: "待发送", SmsState.sent: "已发送", SmsState.failed: "发送失败"},
)


class VisitRequestState(enum.StrEnum):
    """A petitioner's request for a video visit, until the court books it."""

    pending = "pending"
    booked = "booked"
    withdrawn = "withdrawn"


define(
    "visit_request_state",
    VisitRequestState,
    {
        VisitRequestState.pending: "待法院确认",
        VisitRequestState.booked: "已确认",
        VisitRequestState.withdrawn: "已撤回",
    },
)


class SmsMessage(Base):
    """One outgoing SMS (the outbox): written before it is handed to the gateway, then marked
    sent or failed with the gateway's error, so operators see every message."""

    __tablename__ = "sms_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    purpose: Mapped[str] = mapped_column(String(24), default="login_code", nullable=False)
    court_id: Mapped[int | None] = mapped_column(ForeignKey("courts.id", ondelete="SET NULL"))
    state: Mapped[SmsState] = mapped_column(
        _enum(SmsState, "sms_state"), default=SmsState.queued, nullable=False
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    error: Mapped[str] = mapped_column(Text, default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_sms_messages_state", "state", "id"),)


class PortalCode(Base):
    """A one-time SMS login code; only its HMAC (keyed with the server secret) is stored."""

    __tablename__ = "portal_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), nullable=False)
    id_key: Mapped[str] = mapped_column(String(64), nullable=False)  # HMAC of the ID number
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    address: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    failures: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_portal_codes_phone", "phone", "created_at"),
        Index("ix_portal_codes_address", "address", "created_at"),
    )


class PortalIdentity(Base):
    """A petitioner as the portal knows them: an ID number together with the mobile number
    proved for it (the SMS code proves the phone, not the ID number: one who knows somebody's
    ID number and proves their own phone is another identity), and the name last given."""

    __tablename__ = "portal_identities"
    __table_args__ = (UniqueConstraint("id_key", "phone"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    id_key: Mapped[str] = mapped_column(String(64), nullable=False)
    id_number: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    phone: Mapped[str] = mapped_column(String(20), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    last_login_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class PortalSession(Base):
    """A portal browser; only a hash of its cookie token is stored. It is bound to the
    identity's ID number key and phone: a later login with another phone ends it."""

    __tablename__ = "portal_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256(token)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("portal_identities.id", ondelete="CASCADE"), nullable=False, index=True
    )
    id_key: Mapped[str] = mapped_column(String(64), nullable=False)
    phone: Mapped[str] = mapped_column(String(20), nullable=False)
    csrf_token: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    address: Mapped[str] = mapped_column(String(64), default="", nullable=False)


class VisitRequest(Base):
    """A petitioner's request for a video visit about one of their cases at a basic court;
    the court's operator confirms it by booking a visit (``visit_id``)."""

    __tablename__ = "portal_visit_requests"

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
    preferred: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    note: Mapped[str] = mapped_column(Text, default="", nullable=False)
    state: Mapped[VisitRequestState] = mapped_column(
        _enum(VisitRequestState, "visit_request_state"),
        default=VisitRequestState.pending,
        nullable=False,
    )
    visit_id: Mapped[str | None] = mapped_column(ForeignKey("visits.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    booked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    booked_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    __table_args__ = (Index("ix_portal_visit_requests_court", "court_id", "state"),)
