"""Scheduler speed: indexes that find a judge's or a room's open visits in a period.

The free-slot search asks for the visits of some judges (and of one room) that are still
open and overlap the days searched. With only (judge_id, starts_at) the database reads every
past visit of those judges; with the state between the two it reads only the open ones.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_visits_judge_state_time", "visits", ["judge_id", "state", "starts_at"], unique=False
    )
    op.create_index(
        "ix_visits_room_state_time", "visits", ["room_id", "state", "starts_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_visits_room_state_time", table_name="visits")
    op.drop_index("ix_visits_judge_state_time", table_name="visits")
