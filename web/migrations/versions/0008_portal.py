"""The petitioner portal: the SMS outbox, one-time login codes, portal identities and
sessions, and requests for a video visit.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, config.db.UTCDateTime(timezone=True), nullable=nullable)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16)


def upgrade() -> None:
    op.create_table(
        "sms_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("purpose", sa.String(length=24), nullable=False),
        sa.Column("court_id", sa.Integer(), nullable=True),
        sa.Column("state", _enum("sms_state", "queued", "sent", "failed"), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        _time("created_at"),
        _time("sent_at", nullable=True),
        sa.ForeignKeyConstraint(["court_id"], ["courts.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sms_messages_state", "sms_messages", ["state", "id"])
    op.create_table(
        "portal_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("id_key", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        _time("created_at"),
        _time("expires_at"),
        sa.Column("failures", sa.Integer(), nullable=False),
        _time("used_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_portal_codes_phone", "portal_codes", ["phone", "created_at"])
    op.create_index("ix_portal_codes_address", "portal_codes", ["address", "created_at"])
    op.create_table(
        "portal_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("id_key", sa.String(length=64), nullable=False),
        sa.Column("id_number", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        _time("created_at"),
        _time("last_login_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("id_key"),
    )
    op.create_table(
        "portal_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("id_key", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        _time("created_at"),
        _time("expires_at"),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["identity_id"], ["portal_identities.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_portal_sessions_identity_id", "portal_sessions", ["identity_id"])
    op.create_index("ix_portal_sessions_expires_at", "portal_sessions", ["expires_at"])
    op.create_table(
        "portal_visit_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity_id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("court_id", sa.Integer(), nullable=False),
        sa.Column("preferred", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column(
            "state",
            _enum("visit_request_state", "pending", "booked", "withdrawn"),
            nullable=False,
        ),
        sa.Column("visit_id", sa.String(length=32), nullable=True),
        _time("created_at"),
        _time("booked_at", nullable=True),
        sa.Column("booked_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["identity_id"], ["portal_identities.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["petition_id"], ["petitions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["court_id"], ["courts.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["booked_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_portal_visit_requests_identity_id", "portal_visit_requests", ["identity_id"]
    )
    op.create_index(
        "ix_portal_visit_requests_petition_id", "portal_visit_requests", ["petition_id"]
    )
    op.create_index(
        "ix_portal_visit_requests_court", "portal_visit_requests", ["court_id", "state"]
    )


def downgrade() -> None:
    op.drop_table("portal_visit_requests")
    op.drop_table("portal_sessions")
    op.drop_table("portal_identities")
    op.drop_table("portal_codes")
    op.drop_table("sms_messages")
