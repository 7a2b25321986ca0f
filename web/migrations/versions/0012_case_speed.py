"""Petition case speed: the board of a supervising court and the deadline scan's reminders
read partial indexes (a court with ~150 courts below reads its supervised cases from the
index alone; a reminded case leaves the reminders' range instead of being read again by
every later scan).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REMIND = "reminded_at IS NULL AND overdue_at IS NULL"
BOARD = "supervising_court_id IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "ix_petitions_remind",
        "petitions",
        ["due_at"],
        sqlite_where=sa.text(REMIND),
        postgresql_where=sa.text(REMIND),
    )
    op.create_index(
        "ix_petitions_board",
        "petitions",
        ["handler_court_id", "state", "due_at", "supervising_court_id"],
        sqlite_where=sa.text(BOARD),
        postgresql_where=sa.text(BOARD),
    )
    # the planner weighs an index by its statistics: a database that has them for its other
    # indexes gets them for these too (one never analyzed keeps SQLite's defaults, which pick
    # these indexes as well)
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.execute("ANALYZE petitions")
    elif bind.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first():
        op.execute("ANALYZE ix_petitions_remind")
        op.execute("ANALYZE ix_petitions_board")


def downgrade() -> None:
    op.drop_index("ix_petitions_board", table_name="petitions")
    op.drop_index("ix_petitions_remind", table_name="petitions")
