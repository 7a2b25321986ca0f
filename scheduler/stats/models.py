"""Cases decided per court and month, imported from the case-management system (案访比),
and the monthly store the dashboard reads."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from config.db import Base, UTCDateTime
from scheduler.cases.models import Contact
from scheduler.models import Petition, Visit


class CourtCaseCount(Base):
    """How many cases a court decided in one month (``YYYY-MM``, court local time)."""

    __tablename__ = "court_case_counts"

    court_id: Mapped[int] = mapped_column(
        ForeignKey("courts.id", ondelete="CASCADE"), primary_key=True
    )
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    decided_count: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (CheckConstraint("decided_count >= 0", name="decided_nonnegative"),)


# Period scans of the figures (migration 0010): cases by registration and closing date,
# visits by booking date.
# Migration 0011: the contacts' scan covers every column the figures read (no table lookups),
# and overdue cases are counted from an index alone.
Index(
    "ix_case_contacts_period",
    Contact.occurred_at,
    Contact.court_id,
    Contact.channel,
    Contact.repeat,
    Contact.petition_id,
)
Index(
    "ix_petitions_overdue",
    Petition.due_at,
    Petition.state,
    Petition.created_at,
    Petition.court_id,
    Petition.handler_court_id,
)
Index("ix_petitions_created", Petition.created_at, Petition.court_id)
Index("ix_petitions_closed", Petition.closed_at)
Index("ix_visits_created", Visit.created_at)


class MonthlyFigure(Base):
    """One figure's numerator and denominator for one court's whole subtree (the court and
    every court below it) in one month (court local time), by breakdown key. Written only
    by ``scheduler.stats.figures.refresh_month``; the dashboard sums these rows."""

    __tablename__ = "stats_monthly"

    figure: Mapped[str] = mapped_column(String(32), primary_key=True)
    court_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    num: Mapped[float] = mapped_column(Float, nullable=False)
    den: Mapped[float] = mapped_column(Float, nullable=False)

    __table_args__ = (Index("ix_stats_monthly_court", "court_id", "month"),)


class MonthlyRefresh(Base):
    """When the rows of one month in ``stats_monthly`` were last computed (UTC)."""

    __tablename__ = "stats_months"

    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
