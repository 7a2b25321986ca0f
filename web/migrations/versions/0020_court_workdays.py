"""调休上班日: a court marks a weekend day worked in place of a holiday, with the weekday
whose hours its judges and rooms keep that day (``court_days.as_weekday``). The marks that
exist (holidays, leader days) have none.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("court_days") as batch:
        batch.add_column(sa.Column("as_weekday", sa.Integer(), nullable=True))
        batch.create_check_constraint(
            op.f("ck_court_days_workday_hours"),
            "(kind = 'workday') = (as_weekday IS NOT NULL)"
            " AND (as_weekday IS NULL OR as_weekday BETWEEN 0 AND 6)",
        )


def downgrade() -> None:
    op.execute("DELETE FROM court_days WHERE kind = 'workday'")
    with op.batch_alter_table("court_days") as batch:
        batch.drop_constraint(op.f("ck_court_days_workday_hours"), type_="check")
        batch.drop_column("as_weekday")
