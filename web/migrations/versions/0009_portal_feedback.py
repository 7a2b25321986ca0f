"""The petitioner portal's feedback: question threads and their messages, mediation
requests, satisfaction ratings, complaints and suggestions.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, config.db.UTCDateTime(timezone=True), nullable=nullable)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16)


def _fk(column: str, table: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{table}.id"], ondelete=ondelete)


def upgrade() -> None:
    op.create_table(
        "portal_threads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("court_id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=True),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("state", _enum("portal_thread_state", "waiting", "answered"), nullable=False),
        _time("due_at", nullable=True),
        _time("overdue_at", nullable=True),
        _time("created_at"),
        _time("updated_at"),
        _fk("identity_id", "portal_identities", "CASCADE"),
        _fk("court_id", "courts", "RESTRICT"),
        _fk("petition_id", "petitions", "SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_portal_threads_identity_id", "portal_threads", ["identity_id"])
    op.create_index("ix_portal_threads_petition_id", "portal_threads", ["petition_id"])
    op.create_index("ix_portal_threads_court", "portal_threads", ["court_id", "state", "due_at"])
    op.create_index("ix_portal_threads_due", "portal_threads", ["due_at"])
    op.create_table(
        "portal_thread_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.Integer(), nullable=False),
        sa.Column("from_staff", sa.Boolean(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column("staff_name", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _time("created_at"),
        _fk("thread_id", "portal_threads", "CASCADE"),
        _fk("staff_id", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_portal_thread_messages_thread_id", "portal_thread_messages", ["thread_id"])
    op.create_table(
        "portal_mediation_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("court_id", sa.Integer(), nullable=False),
        sa.Column("lawyer_id", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _time("created_at"),
        _fk("identity_id", "portal_identities", "CASCADE"),
        _fk("petition_id", "petitions", "CASCADE"),
        _fk("court_id", "courts", "RESTRICT"),
        _fk("lawyer_id", "duty_lawyers", "RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_portal_mediation_requests_identity_id", "portal_mediation_requests", ["identity_id"]
    )
    op.create_index(
        "ix_portal_mediation_requests_petition_id", "portal_mediation_requests", ["petition_id"]
    )
    op.create_table(
        "portal_ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("subject", _enum("rating_subject", "visit", "case"), nullable=False),
        sa.Column("subject_key", sa.String(length=48), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.String(length=32), nullable=True),
        sa.Column("judge_id", sa.Integer(), nullable=True),
        sa.Column("court_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _time("created_at"),
        _fk("identity_id", "portal_identities", "CASCADE"),
        _fk("petition_id", "petitions", "CASCADE"),
        _fk("visit_id", "visits", "SET NULL"),
        _fk("judge_id", "users", "SET NULL"),
        _fk("court_id", "courts", "RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("identity_id", "subject_key", name="uq_portal_ratings_subject"),
        sa.CheckConstraint("score >= 1 AND score <= 5", name="rating_score_range"),
    )
    op.create_index("ix_portal_ratings_court_time", "portal_ratings", ["court_id", "created_at"])
    op.create_index("ix_portal_ratings_petition", "portal_ratings", ["petition_id"])
    op.create_index("ix_portal_ratings_judge", "portal_ratings", ["judge_id"])
    op.create_table(
        "portal_complaints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("kind", _enum("complaint_kind", "complaint", "suggestion"), nullable=False),
        sa.Column("court_id", sa.Integer(), nullable=False),
        sa.Column("routed_court_id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("state", _enum("complaint_state", "open", "handled"), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("handled_by", sa.Integer(), nullable=True),
        _time("handled_at", nullable=True),
        _time("created_at"),
        _fk("identity_id", "portal_identities", "CASCADE"),
        _fk("court_id", "courts", "RESTRICT"),
        _fk("routed_court_id", "courts", "RESTRICT"),
        _fk("petition_id", "petitions", "SET NULL"),
        _fk("handled_by", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_portal_complaints_identity_id", "portal_complaints", ["identity_id"])
    op.create_index(
        "ix_portal_complaints_routed", "portal_complaints", ["routed_court_id", "state"]
    )


def downgrade() -> None:
    for table in (
        "portal_complaints",
        "portal_ratings",
        "portal_mediation_requests",
        "portal_thread_messages",
        "portal_threads",
    ):
        op.drop_table(table)
