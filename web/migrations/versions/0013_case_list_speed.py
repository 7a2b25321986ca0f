"""Petition case list speed: the channels a case's contacts came by are kept on the case
(``petitions.channels``, one bit each, filled in from the contacts already stored), so the
list's channel filter reads no contacts; the cases a leader leads and a person is
responsible for are found by partial indexes of the cases that have one.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# words.CHANNEL_BITS as of this revision
BITS = {"walk_in": 1, "letter": 2, "video": 4, "online": 8, "phone": 16}


def upgrade() -> None:
    with op.batch_alter_table("petitions") as batch_op:
        batch_op.add_column(sa.Column("channels", sa.Integer(), server_default="0", nullable=False))
    bit = "CASE {column} " + " ".join(f"WHEN '{c}' THEN {b}" for c, b in BITS.items()) + " END"
    # every case's own channel, and each channel its contacts came by (a distinct sum of
    # distinct bits is their OR)
    own, seen = bit.format(column="channel"), bit.format(column="k.channel")
    # the text is made of this file's constants alone
    fill = (
        f"UPDATE petitions SET channels = {own} | COALESCE((SELECT sum(b) FROM (SELECT "  # noqa: S608
        f"DISTINCT {seen} AS b FROM case_contacts k WHERE k.petition_id = petitions.id) "
        "AS seen), 0)"
    )
    op.execute(fill)
    op.drop_index("ix_petitions_leader_id", table_name="petitions")
    for column in ("leader_id", "responsible_id"):
        op.create_index(
            f"ix_petitions_{column}",
            "petitions",
            [column],
            sqlite_where=sa.text(f"{column} IS NOT NULL"),
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
        )
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.execute("ANALYZE petitions")
    elif bind.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first():
        op.execute("ANALYZE ix_petitions_leader_id")
        op.execute("ANALYZE ix_petitions_responsible_id")


def downgrade() -> None:
    op.drop_index("ix_petitions_responsible_id", table_name="petitions")
    op.drop_index("ix_petitions_leader_id", table_name="petitions")
    op.create_index("ix_petitions_leader_id", "petitions", ["leader_id"])
    with op.batch_alter_table("petitions") as batch_op:
        batch_op.drop_column("channels")
