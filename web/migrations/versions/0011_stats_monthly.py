"""Statistics: a monthly store of every figure per court subtree, so the dashboard of the
whole country reads a few hundred rows instead of every contact and case.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from config.db import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stats_monthly",
        sa.Column("figure", sa.String(length=32), nullable=False),
        sa.Column("court_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("num", sa.Float(), nullable=False),
        sa.Column("den", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "figure", "court_id", "month", "key", name=op.f("pk_stats_monthly")
        ),
    )
    op.create_index("ix_stats_monthly_court", "stats_monthly", ["court_id", "month"])
    op.create_table(
        "stats_months",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("refreshed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("month", name=op.f("pk_stats_months")),
    )
    # computing a month: the contacts' scan reads the index alone; so does overdue
    op.drop_index("ix_case_contacts_time", table_name="case_contacts")
    op.create_index(
        "ix_case_contacts_period",
        "case_contacts",
        ["occurred_at", "court_id", "channel", "repeat", "petition_id"],
    )
    op.create_index(
        "ix_petitions_overdue",
        "petitions",
        ["due_at", "state", "created_at", "court_id", "handler_court_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_petitions_overdue", table_name="petitions")
    op.drop_index("ix_case_contacts_period", table_name="case_contacts")
    op.create_index("ix_case_contacts_time", "case_contacts", ["occurred_at", "court_id"])
    op.drop_table("stats_months")
    op.drop_index("ix_stats_monthly_court", table_name="stats_monthly")
    op.drop_table("stats_monthly")
