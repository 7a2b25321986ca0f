"""Petition cases (信访件): the petition becomes a case with contacts, materials, original
case numbers, a timeline that is only ever added to, assignments, deadline rules,
follow-ups and meetings; visits get a kind.

Existing petitions become cases in 办理中 at their registering court, with one contact (the
video channel, since every petition so far was registered for a video visit), and their
free-text category mapped to the fixed list (anything else becomes 其他).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import config.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "case_deadline_rules",
        sa.Column(
            "node",
            sa.Enum(
                "triage",
                "handling",
                "feedback",
                "review",
                "followup",
                "done",
                name="case_node",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("remind_days_before", sa.Integer(), nullable=False),
        sa.Column("updated_at", config.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("days >= 1", name=op.f("ck_case_deadline_rules_rule_days_positive")),
        sa.CheckConstraint(
            "remind_days_before >= 0", name=op.f("ck_case_deadline_rules_rule_remind_nonnegative")
        ),
        sa.PrimaryKeyConstraint("node", name=op.f("pk_case_deadline_rules")),
    )
    op.create_table(
        "case_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("from_court_id", sa.Integer(), nullable=False),
        sa.Column("to_court_id", sa.Integer(), nullable=False),
        sa.Column("deadline", config.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "open",
                "reported",
                "accepted",
                "returned",
                name="assignment_state",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("assigned_by", sa.Integer(), nullable=True),
        sa.Column("assigned_at", config.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reported_at", config.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["assigned_by"],
            ["users.id"],
            name=op.f("fk_case_assignments_assigned_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["from_court_id"],
            ["courts.id"],
            name=op.f("fk_case_assignments_from_court_id_courts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petitions.id"],
            name=op.f("fk_case_assignments_petition_id_petitions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["to_court_id"],
            ["courts.id"],
            name=op.f("fk_case_assignments_to_court_id_courts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_assignments")),
    )
    with op.batch_alter_table("case_assignments", schema=None) as batch_op:
        batch_op.create_index("ix_case_assignments_from", ["from_court_id", "state"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_case_assignments_petition_id"), ["petition_id"], unique=False
        )
        batch_op.create_index("ix_case_assignments_to", ["to_court_id", "state"], unique=False)

    op.create_table(
        "case_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("at", config.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.String(length=64), nullable=False),
        sa.Column("court_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petitions.id"],
            name=op.f("fk_case_events_petition_id_petitions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_events")),
    )
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.create_index("ix_case_events_petition", ["petition_id", "id"], unique=False)

    op.create_table(
        "case_followups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("due_at", config.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("done_at", config.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("remark", sa.Text(), nullable=False),
        sa.Column("done_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["done_by"],
            ["users.id"],
            name=op.f("fk_case_followups_done_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petitions.id"],
            name=op.f("fk_case_followups_petition_id_petitions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_followups")),
    )
    with op.batch_alter_table("case_followups", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_case_followups_petition_id"), ["petition_id"], unique=False
        )

    op.create_table(
        "case_petitioners",
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("petitioner_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petitions.id"],
            name=op.f("fk_case_petitioners_petition_id_petitions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["petitioner_id"],
            ["petitioners.id"],
            name=op.f("fk_case_petitioners_petitioner_id_petitioners"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("petition_id", "petitioner_id", name=op.f("pk_case_petitioners")),
    )
    op.create_table(
        "case_refs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("identity_key", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petitions.id"],
            name=op.f("fk_case_refs_petition_id_petitions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_refs")),
        sa.UniqueConstraint("identity_key", "number", name="uq_case_refs_identity_number"),
    )
    with op.batch_alter_table("case_refs", schema=None) as batch_op:
        batch_op.create_index("ix_case_refs_number", ["number"], unique=False)
        batch_op.create_index(batch_op.f("ix_case_refs_petition_id"), ["petition_id"], unique=False)

    op.create_table(
        "case_contacts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column("court_id", sa.Integer(), nullable=False),
        sa.Column(
            "channel",
            sa.Enum(
                "walk_in",
                "letter",
                "video",
                "online",
                "phone",
                name="case_channel",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("occurred_at", config.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("people_count", sa.Integer(), nullable=False),
        sa.Column("repeat", sa.Boolean(), nullable=False),
        sa.Column("visit_id", sa.String(length=32), nullable=True),
        sa.Column("registered_by", sa.Integer(), nullable=True),
        sa.Column("created_at", config.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "people_count >= 1", name=op.f("ck_case_contacts_contact_people_positive")
        ),
        sa.ForeignKeyConstraint(
            ["court_id"],
            ["courts.id"],
            name=op.f("fk_case_contacts_court_id_courts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petitions.id"],
            name=op.f("fk_case_contacts_petition_id_petitions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["registered_by"],
            ["users.id"],
            name=op.f("fk_case_contacts_registered_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
            name=op.f("fk_case_contacts_visit_id_visits"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_contacts")),
    )
    with op.batch_alter_table("case_contacts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_case_contacts_court_time", ["court_id", "occurred_at"], unique=False
        )
        batch_op.create_index(
            "ix_case_contacts_petition", ["petition_id", "occurred_at"], unique=False
        )
        batch_op.create_index("ix_case_contacts_visit", ["visit_id"], unique=False)

    op.create_table(
        "meeting_cases",
        sa.Column("visit_id", sa.String(length=32), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petitions.id"],
            name=op.f("fk_meeting_cases_petition_id_petitions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
            name=op.f("fk_meeting_cases_visit_id_visits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("visit_id", "petition_id", name=op.f("pk_meeting_cases")),
    )
    with op.batch_alter_table("meeting_cases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_meeting_cases_petition_id"), ["petition_id"], unique=False
        )

    op.create_table(
        "meeting_invitees",
        sa.Column("visit_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_meeting_invitees_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
            name=op.f("fk_meeting_invitees_visit_id_visits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("visit_id", "user_id", name=op.f("pk_meeting_invitees")),
    )
    with op.batch_alter_table("meeting_invitees", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_meeting_invitees_user_id"), ["user_id"], unique=False)

    op.create_table(
        "case_materials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("petition_id", sa.Integer(), nullable=False),
        sa.Column(
            "contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("uploaded_by", sa.Integer(), nullable=True),
        sa.Column("created_at", config.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["case_contacts.id"],
            name=op.f("fk_case_materials_contact_id_case_contacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["petition_id"],
            ["petitions.id"],
            name=op.f("fk_case_materials_petition_id_petitions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by"],
            ["users.id"],
            name=op.f("fk_case_materials_uploaded_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_materials")),
    )
    with op.batch_alter_table("case_materials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_case_materials_petition_id"), ["petition_id"], unique=False
        )

    with op.batch_alter_table("petitions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "channel",
                sa.Enum(
                    "walk_in",
                    "letter",
                    "video",
                    "online",
                    "phone",
                    name="case_channel",
                    native_enum=False,
                    length=16,
                ),
                nullable=False,
                server_default="video",
            )
        )
        batch_op.add_column(
            sa.Column("original_court", sa.String(length=128), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("people_count", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.add_column(
            sa.Column(
                "state",
                sa.Enum(
                    "registered",
                    "guided",
                    "handling",
                    "assigned",
                    "reported",
                    "resolved",
                    "terminated",
                    name="case_state",
                    native_enum=False,
                    length=16,
                ),
                nullable=False,
                server_default="handling",
            )
        )
        batch_op.add_column(
            sa.Column(
                "track",
                sa.Enum(
                    "undecided",
                    "litigation",
                    "petition",
                    name="case_track",
                    native_enum=False,
                    length=16,
                ),
                nullable=False,
                server_default="petition",
            )
        )
        batch_op.add_column(
            sa.Column("procedure", sa.String(length=32), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column(
                "mode",
                sa.Enum(
                    "immediate",
                    "careful",
                    "joint",
                    "supervised",
                    name="handling_mode",
                    native_enum=False,
                    length=16,
                ),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("handler_court_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("responsible_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("supervising_court_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("flagged", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("leader_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "node",
                sa.Enum(
                    "triage",
                    "handling",
                    "feedback",
                    "review",
                    "followup",
                    "done",
                    name="case_node",
                    native_enum=False,
                    length=16,
                ),
                nullable=False,
                server_default="handling",
            )
        )
        batch_op.add_column(
            sa.Column("due_at", config.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("reminded_at", config.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("overdue_at", config.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("contact_count", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.add_column(
            sa.Column("closed_at", config.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "updated_at",
                config.db.UTCDateTime(timezone=True),
                nullable=False,
                server_default=sa.func.current_timestamp(),
            )
        )
        batch_op.create_index("ix_petitions_due", ["due_at"], unique=False)
        batch_op.create_index(
            "ix_petitions_alert",
            ["due_at"],
            unique=False,
            sqlite_where=sa.text("overdue_at IS NULL"),
            postgresql_where=sa.text("overdue_at IS NULL"),
        )
        batch_op.create_index(
            batch_op.f("ix_petitions_handler_court_id"), ["handler_court_id"], unique=False
        )
        batch_op.create_index(
            "ix_petitions_handler_state", ["handler_court_id", "state"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_petitions_leader_id"), ["leader_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_petitions_supervising_court_id"), ["supervising_court_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_petitions_supervising_court_id_courts"),
            "courts",
            ["supervising_court_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_petitions_handler_court_id_courts"),
            "courts",
            ["handler_court_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_petitions_responsible_id_users"),
            "users",
            ["responsible_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_petitions_leader_id_users"),
            "users",
            ["leader_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kind",
                sa.Enum(
                    "reception",
                    "post_judgment",
                    "leader",
                    "meeting",
                    "onsite",
                    name="visit_kind",
                    native_enum=False,
                    length=16,
                ),
                nullable=False,
                server_default="reception",
            )
        )

    _existing_petitions_become_cases()
    _seed_deadline_rules()
    _create_timeline_guards()


def downgrade() -> None:
    _drop_timeline_guards()
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.drop_column("kind")

    with op.batch_alter_table("petitions", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_petitions_leader_id_users"), type_="foreignkey")
        batch_op.drop_constraint(
            batch_op.f("fk_petitions_responsible_id_users"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_petitions_handler_court_id_courts"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_petitions_supervising_court_id_courts"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_petitions_supervising_court_id"))
        batch_op.drop_index(batch_op.f("ix_petitions_leader_id"))
        batch_op.drop_index("ix_petitions_handler_state")
        batch_op.drop_index(batch_op.f("ix_petitions_handler_court_id"))
        batch_op.drop_index(
            "ix_petitions_alert",
            sqlite_where=sa.text("overdue_at IS NULL"),
            postgresql_where=sa.text("overdue_at IS NULL"),
        )
        batch_op.drop_index("ix_petitions_due")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("closed_at")
        batch_op.drop_column("contact_count")
        batch_op.drop_column("overdue_at")
        batch_op.drop_column("reminded_at")
        batch_op.drop_column("due_at")
        batch_op.drop_column("node")
        batch_op.drop_column("leader_id")
        batch_op.drop_column("flagged")
        batch_op.drop_column("supervising_court_id")
        batch_op.drop_column("responsible_id")
        batch_op.drop_column("handler_court_id")
        batch_op.drop_column("mode")
        batch_op.drop_column("procedure")
        batch_op.drop_column("track")
        batch_op.drop_column("state")
        batch_op.drop_column("people_count")
        batch_op.drop_column("original_court")
        batch_op.drop_column("channel")

    with op.batch_alter_table("case_materials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_materials_petition_id"))

    op.drop_table("case_materials")
    with op.batch_alter_table("meeting_invitees", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_meeting_invitees_user_id"))

    op.drop_table("meeting_invitees")
    with op.batch_alter_table("meeting_cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_meeting_cases_petition_id"))

    op.drop_table("meeting_cases")
    with op.batch_alter_table("case_contacts", schema=None) as batch_op:
        batch_op.drop_index("ix_case_contacts_visit")
        batch_op.drop_index("ix_case_contacts_petition")
        batch_op.drop_index("ix_case_contacts_court_time")

    op.drop_table("case_contacts")
    with op.batch_alter_table("case_refs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_refs_petition_id"))
        batch_op.drop_index("ix_case_refs_number")

    op.drop_table("case_refs")
    op.drop_table("case_petitioners")
    with op.batch_alter_table("case_followups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_followups_petition_id"))

    op.drop_table("case_followups")
    with op.batch_alter_table("case_events", schema=None) as batch_op:
        batch_op.drop_index("ix_case_events_petition")

    op.drop_table("case_events")
    with op.batch_alter_table("case_assignments", schema=None) as batch_op:
        batch_op.drop_index("ix_case_assignments_to")
        batch_op.drop_index(batch_op.f("ix_case_assignments_petition_id"))
        batch_op.drop_index("ix_case_assignments_from")

    op.drop_table("case_assignments")
    op.drop_table("case_deadline_rules")


# Free-text categories of petitions registered before cases existed, mapped to the list.
_CATEGORY_MAP = {
    "刑事申诉": "criminal_appeal",
    "民事再审申请": "civil_retrial",
    "申请再审": "civil_retrial",
    "行政再审申请": "admin_retrial",
    "执行": "enforcement",
    "国家赔偿": "state_compensation",
}


def _existing_petitions_become_cases() -> None:
    bind = op.get_bind()
    for label, code in _CATEGORY_MAP.items():
        bind.execute(
            sa.text("UPDATE petitions SET category = :code WHERE category = :label"),
            {"code": code, "label": label},
        )
    bind.execute(
        sa.text(
            "UPDATE petitions SET category = 'other' WHERE category NOT IN "
            "('criminal_appeal', 'civil_retrial', 'admin_retrial', 'enforcement', "
            "'state_compensation', 'other')"
        )
    )
    bind.execute(sa.text("UPDATE petitions SET handler_court_id = court_id"))
    bind.execute(
        sa.text(
            "INSERT INTO case_contacts (petition_id, court_id, channel, occurred_at, summary, "
            "people_count, repeat, registered_by, created_at) "
            "SELECT id, court_id, 'video', created_at, '', 1, :no, created_by, created_at "
            "FROM petitions"
        ),
        {"no": False},
    )


# Days each node may take before it is overdue, and days of warning before; admins change
# them on the admin page (case_deadline_rules).
DEFAULT_RULES = {
    "triage": (3, 1),
    "handling": (60, 7),
    "feedback": (30, 5),
    "review": (7, 2),
    "followup": (30, 5),
}


def _seed_deadline_rules() -> None:
    table = sa.table(
        "case_deadline_rules",
        sa.column("node", sa.String),
        sa.column("days", sa.Integer),
        sa.column("remind_days_before", sa.Integer),
        sa.column("updated_at", config.db.UTCDateTime()),
    )
    now = config.db.utcnow()
    op.bulk_insert(
        table,
        [
            {"node": node, "days": days, "remind_days_before": warn, "updated_at": now}
            for node, (days, warn) in DEFAULT_RULES.items()
        ],
    )


_PG_GUARD = """
CREATE OR REPLACE FUNCTION case_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'case_events is append-only';
END;
$$ LANGUAGE plpgsql;
"""


def _create_timeline_guards() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER case_events_no_{verb.lower()} BEFORE {verb} ON case_events "
                "BEGIN SELECT RAISE(ABORT, 'case_events is append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(_PG_GUARD)
        op.execute(
            "CREATE TRIGGER case_events_append_only BEFORE UPDATE OR DELETE "
            "ON case_events FOR EACH STATEMENT EXECUTE FUNCTION case_events_append_only()"
        )


def _drop_timeline_guards() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS case_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS case_events_no_delete")
    elif dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS case_events_append_only ON case_events")
        op.execute("DROP FUNCTION IF EXISTS case_events_append_only()")
