"""A court leader's meetings hold their time under the name their 领导接访 hold it
(``judge:<id>``, as a judge's did already), so neither is booked over the other: the locks
meetings took as ``user:<id>`` for someone who receives visits are renamed. A unit that
the leader's visit holds already (booked twice before this revision) keeps the visit's
lock; the meeting's stays under its old name.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE booking_locks SET resource = 'judge:' || substr(resource, 6)"
        " WHERE resource LIKE 'user:%'"
        " AND CAST(substr(resource, 6) AS INTEGER) IN"
        " (SELECT id FROM users WHERE role IN ('judge', 'leader'))"
        " AND NOT EXISTS (SELECT 1 FROM booking_locks b"
        " WHERE b.resource = 'judge:' || substr(booking_locks.resource, 6)"
        " AND b.unit = booking_locks.unit)"
    )


def downgrade() -> None:
    """The locks stay as they are: a leader's meetings and visits keep holding one time."""
