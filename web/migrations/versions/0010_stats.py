"""Petition statistics: cases decided per court and month (案访比), and indexes that let
the dashboard aggregate by period without reading whole tables.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "court_case_counts",
        sa.Column("court_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("decided_count", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "decided_count >= 0", name=op.f("ck_court_case_counts_decided_nonnegative")
        ),
        sa.ForeignKeyConstraint(
            ["court_id"],
            ["courts.id"],
            name=op.f("fk_court_case_counts_court_id_courts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("court_id", "month", name=op.f("pk_court_case_counts")),
    )
    # Period scans of the dashboard: contacts by time (country) and cases by their dates.
    op.create_index("ix_case_contacts_time", "case_contacts", ["occurred_at", "court_id"])
    op.create_index("ix_petitions_created", "petitions", ["created_at", "court_id"])
    op.create_index("ix_petitions_closed", "petitions", ["closed_at"])
    op.create_index("ix_visits_created", "visits", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_visits_created", table_name="visits")
    op.drop_index("ix_petitions_closed", table_name="petitions")
    op.drop_index("ix_petitions_created", table_name="petitions")
    op.drop_index("ix_case_contacts_time", table_name="case_contacts")
    op.drop_table("court_case_counts")
