"""Transcript corrections: a line of a machine transcript corrected by the visit's judge or
an archivist, kept beside the machine text with who and when.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from config.db import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "transcript_corrections",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("visit_id", sa.String(length=32), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("machine_text", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("corrected_by_id", sa.Integer(), nullable=True),
        sa.Column("corrected_by", sa.String(length=64), nullable=False),
        sa.Column("corrected_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["recordings.visit_id"],
            name=op.f("fk_transcript_corrections_visit_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcript_corrections")),
        sa.UniqueConstraint("visit_id", "revision", name="uq_transcript_corrections_revision"),
    )
    op.create_index(
        "ix_transcript_corrections_visit", "transcript_corrections", ["visit_id", "line"]
    )


def downgrade() -> None:
    op.drop_index("ix_transcript_corrections_visit", table_name="transcript_corrections")
    op.drop_table("transcript_corrections")
