"""A booked video visit is a contact of its case once held (the call began), no longer from
its booking: the contacts stored for visits that never began (cancelled, missed, still to
come, ended before the petitioner was admitted) are removed, their cases' 来访次数 and
channels counted again, the others dated when their call began (a rescheduled visit counted
on the day it was first booked), and every stored month of the statistics computed again.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from config.db import UTCDateTime

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# words.CHANNEL_BITS and the booked kinds (lifecycle.BOOKABLE_KINDS) as of this revision
BITS = {"walk_in": 1, "letter": 2, "video": 4, "online": 8, "phone": 16}
# when a visit's call began: its first step into in_progress
BEGAN = (
    "(SELECT min(e.at) FROM visit_events e WHERE e.visit_id = case_contacts.visit_id"
    " AND e.to_state = 'in_progress')"
)
OF_BOOKED_VISIT = (
    "case_contacts.channel = 'video' AND case_contacts.visit_id IN (SELECT v.id FROM visits v"
    " WHERE v.kind IN ('reception', 'post_judgment', 'leader'))"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def upgrade() -> None:
    # the text is made of this file's constants alone
    never = f"{OF_BOOKED_VISIT} AND {BEGAN} IS NULL"
    counted = op.get_bind().execute(
        sa.text(f"SELECT petition_id, count(*) FROM case_contacts WHERE {never}"  # noqa: S608
                " GROUP BY petition_id")
    ).all()  # fmt: skip
    op.execute(f"DELETE FROM case_contacts WHERE {never}")  # noqa: S608
    least = "max" if op.get_bind().dialect.name == "sqlite" else "greatest"
    lower = sa.text(
        f"UPDATE petitions SET contact_count = {least}(contact_count - :n, 0)"  # noqa: S608
        " WHERE id = :id"
    )
    for petition_id, removed in counted:
        op.execute(lower.bindparams(n=removed, id=petition_id))
    bit = "CASE {column} " + " ".join(f"WHEN '{c}' THEN {b}" for c, b in BITS.items()) + " END"
    own, seen = bit.format(column="channel"), bit.format(column="k.channel")
    ids = [petition_id for petition_id, _ in counted]
    for start in range(0, len(ids), 500):
        chunk = ", ".join(str(int(i)) for i in ids[start : start + 500])
        op.execute(
            f"UPDATE petitions SET channels = {own} | COALESCE((SELECT sum(b) FROM (SELECT "  # noqa: S608
            f"DISTINCT {seen} AS b FROM case_contacts k WHERE k.petition_id = petitions.id)"
            f" AS seen), 0) WHERE id IN ({chunk})"
        )
    op.execute(
        f"UPDATE case_contacts SET occurred_at = {BEGAN} WHERE {OF_BOOKED_VISIT}"  # noqa: S608
    )
    months = sa.table("stats_months", sa.column("refreshed_at", UTCDateTime()))
    op.execute(sa.update(months).values(refreshed_at=EPOCH))


def downgrade() -> None:
    """Nothing to undo: the contacts removed were of visits that never took place (booking
    no longer makes them, at this revision or before it)."""
