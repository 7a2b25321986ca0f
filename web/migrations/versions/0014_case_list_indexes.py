"""Petition case list speed: a court's list filtered by node, category or overdue reads the
handling courts' part of its scope from an index (handling court and node; handling court
and category; handling court, state and deadline) instead of every case of those courts.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = {
    "ix_petitions_handler_node": ["handler_court_id", "node"],
    "ix_petitions_handler_category": ["handler_court_id", "category"],
}


def upgrade() -> None:
    op.drop_index("ix_petitions_handler_state", table_name="petitions")
    op.create_index(
        "ix_petitions_handler_state", "petitions", ["handler_court_id", "state", "due_at"]
    )
    for name, columns in NEW.items():
        op.create_index(name, "petitions", columns)
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.execute("ANALYZE petitions")
    elif bind.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first():
        for name in ("ix_petitions_handler_state", *NEW):
            op.execute(f"ANALYZE {name}")


def downgrade() -> None:
    for name in NEW:
        op.drop_index(name, table_name="petitions")
    op.drop_index("ix_petitions_handler_state", table_name="petitions")
    op.create_index("ix_petitions_handler_state", "petitions", ["handler_court_id", "state"])
