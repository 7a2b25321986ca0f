"""Scheduling: reception hours, court days, room hours, roster, booking locks, history,
walk-ins, notifications, calendar feeds; visits gain booking and check-in columns.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "court_days",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("court_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("holiday", "leader_day", name="court_day_kind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("note", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["court_id"],
            ["courts.id"],
            name=op.f("fk_court_days_court_id_courts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_court_days")),
        sa.UniqueConstraint("court_id", "day", name=op.f("uq_court_days_court_id_day")),
    )
    op.create_table(
        "duty_lawyers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("court_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("firm", sa.String(length=128), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["court_id"],
            ["courts.id"],
            name=op.f("fk_duty_lawyers_court_id_courts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duty_lawyers")),
    )
    with op.batch_alter_table("duty_lawyers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duty_lawyers_court_id"), ["court_id"], unique=False)

    op.create_table(
        "availability_exceptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("judge_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "addition", "cancellation", name="exception_kind", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("slot_minutes", sa.Integer(), nullable=False),
        sa.Column("note", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("starts_at < ends_at", name=op.f("ck_availability_exceptions_period")),
        sa.ForeignKeyConstraint(
            ["judge_id"],
            ["users.id"],
            name=op.f("fk_availability_exceptions_judge_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_availability_exceptions")),
    )
    with op.batch_alter_table("availability_exceptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_availability_exceptions_judge_id"), ["judge_id"], unique=False
        )

    op.create_table(
        "calendar_feeds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_kind", sa.String(length=8), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_calendar_feeds_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_feeds")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_calendar_feeds_token_hash")),
    )
    op.create_table(
        "duty_periods",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lawyer_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("starts_at < ends_at", name=op.f("ck_duty_periods_period")),
        sa.ForeignKeyConstraint(
            ["lawyer_id"],
            ["duty_lawyers.id"],
            name=op.f("fk_duty_periods_lawyer_id_duty_lawyers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_duty_periods")),
    )
    with op.batch_alter_table("duty_periods", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duty_periods_lawyer_id"), ["lawyer_id"], unique=False)
        batch_op.create_index("ix_duty_periods_time", ["starts_at", "ends_at"], unique=False)

    op.create_table(
        "reception_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("judge_id", sa.Integer(), nullable=False),
        sa.Column("court_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("start_minute", sa.Integer(), nullable=False),
        sa.Column("end_minute", sa.Integer(), nullable=False),
        sa.Column("slot_minutes", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "slot_minutes BETWEEN 5 AND 240", name=op.f("ck_reception_templates_slot_minutes")
        ),
        sa.CheckConstraint(
            "start_minute >= 0 AND end_minute <= 1440 AND start_minute < end_minute",
            name=op.f("ck_reception_templates_hours"),
        ),
        sa.CheckConstraint("weekday BETWEEN 0 AND 6", name=op.f("ck_reception_templates_weekday")),
        sa.ForeignKeyConstraint(
            ["court_id"],
            ["courts.id"],
            name=op.f("fk_reception_templates_court_id_courts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["judge_id"],
            ["users.id"],
            name=op.f("fk_reception_templates_judge_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reception_templates")),
    )
    with op.batch_alter_table("reception_templates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reception_templates_court_id"), ["court_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_reception_templates_judge_id"), ["judge_id"], unique=False
        )

    op.create_table(
        "room_hours",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("room_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("start_minute", sa.Integer(), nullable=False),
        sa.Column("end_minute", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "start_minute >= 0 AND end_minute <= 1440 AND start_minute < end_minute",
            name=op.f("ck_room_hours_hours"),
        ),
        sa.CheckConstraint("weekday BETWEEN 0 AND 6", name=op.f("ck_room_hours_weekday")),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["reception_rooms.id"],
            name=op.f("fk_room_hours_room_id_reception_rooms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_room_hours")),
    )
    with op.batch_alter_table("room_hours", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_room_hours_room_id"), ["room_id"], unique=False)

    op.create_table(
        "booking_locks",
        sa.Column("resource", sa.String(length=24), nullable=False),
        sa.Column("unit", sa.BigInteger(), nullable=False),
        sa.Column("visit_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
            name=op.f("fk_booking_locks_visit_id_visits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("resource", "unit", name=op.f("pk_booking_locks")),
    )
    with op.batch_alter_table("booking_locks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_booking_locks_visit_id"), ["visit_id"], unique=False)

    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("visit_id", sa.String(length=32), nullable=True),
        sa.Column("title", sa.String(length=128), nullable=False),
        sa.Column("body", sa.String(length=512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notifications_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
            name=op.f("fk_notifications_visit_id_visits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index("ix_notifications_user", ["user_id", "id"], unique=False)

    op.create_table(
        "visit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "booked",
                "rescheduled",
                "cancelled",
                "checked_in",
                "state",
                "walk_in",
                name="visit_event_kind",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=True),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_visit_events_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
            name=op.f("fk_visit_events_visit_id_visits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_events")),
    )
    with op.batch_alter_table("visit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_visit_events_visit_id"), ["visit_id"], unique=False)

    op.create_table(
        "walk_ins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("court_id", sa.Integer(), nullable=False),
        sa.Column("receiving_court_id", sa.Integer(), nullable=False),
        sa.Column("room_id", sa.Integer(), nullable=False),
        sa.Column("document_type", sa.String(length=16), nullable=False),
        sa.Column("document_masked", sa.String(length=40), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "waiting",
                "assigned",
                "withdrawn",
                name="walk_in_status",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("visit_id", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["court_id"], ["courts.id"], name=op.f("fk_walk_ins_court_id_courts")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_walk_ins_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petitions.id"],
            name=op.f("fk_walk_ins_petition_id_petitions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["receiving_court_id"],
            ["courts.id"],
            name=op.f("fk_walk_ins_receiving_court_id_courts"),
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["reception_rooms.id"], name=op.f("fk_walk_ins_room_id_reception_rooms")
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"], ["visits.id"], name=op.f("fk_walk_ins_visit_id_visits")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_walk_ins")),
    )
    with op.batch_alter_table("walk_ins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_walk_ins_court_id"), ["court_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_walk_ins_receiving_court_id"), ["receiving_court_id"], unique=False
        )

    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("booked_by", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("walk_in", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("cancel_reason", sa.String(length=256), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column(
                "checkin_document_type", sa.String(length=16), nullable=False, server_default=""
            )
        )
        batch_op.add_column(
            sa.Column(
                "checkin_document_masked", sa.String(length=40), nullable=False, server_default=""
            )
        )
        batch_op.add_column(sa.Column("checked_in_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("checked_in_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_visits_court_time", ["court_id", "starts_at"], unique=False)
        batch_op.create_index("ix_visits_judge_time", ["judge_id", "starts_at"], unique=False)
        batch_op.create_index(
            "ix_visits_receiving_time", ["receiving_court_id", "starts_at"], unique=False
        )
        batch_op.create_index("ix_visits_room_time", ["room_id", "starts_at"], unique=False)
        batch_op.create_index("ix_visits_state_time", ["state", "starts_at"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_visits_checked_in_by_users"),
            "users",
            ["checked_in_by"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_visits_booked_by_users"),
            "users",
            ["booked_by"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_visits_booked_by_users"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_visits_checked_in_by_users"), type_="foreignkey")
        batch_op.drop_index("ix_visits_state_time")
        batch_op.drop_index("ix_visits_room_time")
        batch_op.drop_index("ix_visits_receiving_time")
        batch_op.drop_index("ix_visits_judge_time")
        batch_op.drop_index("ix_visits_court_time")
        batch_op.drop_column("reminded_at")
        batch_op.drop_column("checked_in_at")
        batch_op.drop_column("checked_in_by")
        batch_op.drop_column("checkin_document_masked")
        batch_op.drop_column("checkin_document_type")
        batch_op.drop_column("cancel_reason")
        batch_op.drop_column("walk_in")
        batch_op.drop_column("booked_by")

    with op.batch_alter_table("walk_ins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_walk_ins_receiving_court_id"))
        batch_op.drop_index(batch_op.f("ix_walk_ins_court_id"))

    op.drop_table("walk_ins")
    with op.batch_alter_table("visit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_visit_events_visit_id"))

    op.drop_table("visit_events")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_user")

    op.drop_table("notifications")
    with op.batch_alter_table("booking_locks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_booking_locks_visit_id"))

    op.drop_table("booking_locks")
    with op.batch_alter_table("room_hours", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_room_hours_room_id"))

    op.drop_table("room_hours")
    with op.batch_alter_table("reception_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reception_templates_judge_id"))
        batch_op.drop_index(batch_op.f("ix_reception_templates_court_id"))

    op.drop_table("reception_templates")
    with op.batch_alter_table("duty_periods", schema=None) as batch_op:
        batch_op.drop_index("ix_duty_periods_time")
        batch_op.drop_index(batch_op.f("ix_duty_periods_lawyer_id"))

    op.drop_table("duty_periods")
    op.drop_table("calendar_feeds")
    with op.batch_alter_table("availability_exceptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_availability_exceptions_judge_id"))

    op.drop_table("availability_exceptions")
    with op.batch_alter_table("duty_lawyers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duty_lawyers_court_id"))

    op.drop_table("duty_lawyers")
    op.drop_table("court_days")
