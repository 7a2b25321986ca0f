"""Cases decided per court and month, imported from the case-management system (案访比)."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from config.db import Base
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


# Period scans of the dashboard (migration 0010): contacts by time for the whole country,
# cases by registration and closing date, visits by booking date.
Index("ix_case_contacts_time", Contact.occurred_at, Contact.court_id)
Index("ix_petitions_created", Petition.created_at, Petition.court_id)
Index("ix_petitions_closed", Petition.closed_at)
Index("ix_visits_created", Visit.created_at)
