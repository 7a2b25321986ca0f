"""Archive: sealing and integrity state of recordings, the full-text index of transcripts
and notes (FTS5 on SQLite, tsvector + GIN on PostgreSQL), and lookup indexes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from config.db import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(
            sa.Column("sealed", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("seal_reason", sa.String(length=256), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("integrity", sa.String(length=16), nullable=False, server_default="unsigned")
        )
        batch.add_column(sa.Column("integrity_checked_at", UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("integrity_detail", sa.String(length=512), nullable=False, server_default="")
        )
    op.execute("UPDATE recordings SET integrity = 'signed' WHERE state IN ('ready', 'deleted')")
    op.create_index("ix_recordings_started", "recordings", ["started_at"])
    op.create_index("ix_petitions_number", "petitions", ["number"])
    op.create_table(
        "recording_texts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("visit_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("speaker", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tokens", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["recordings.visit_id"],
            name=op.f("fk_recording_texts_visit_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording_texts")),
    )
    op.create_index("ix_recording_texts_visit", "recording_texts", ["visit_id", "start"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE recording_texts ADD COLUMN tsv tsvector")
        op.execute("CREATE INDEX ix_recording_texts_tsv ON recording_texts USING gin (tsv)")
    else:
        op.execute(
            "CREATE VIRTUAL TABLE recording_texts_fts USING fts5("
            "tokens, content='recording_texts', content_rowid='id', "
            "tokenize='unicode61 remove_diacritics 0')"
        )
        op.execute(
            "CREATE TRIGGER recording_texts_ai AFTER INSERT ON recording_texts BEGIN "
            "INSERT INTO recording_texts_fts(rowid, tokens) VALUES (new.id, new.tokens); END"
        )
        op.execute(
            "CREATE TRIGGER recording_texts_ad AFTER DELETE ON recording_texts BEGIN "
            "INSERT INTO recording_texts_fts(recording_texts_fts, rowid, tokens) "
            "VALUES ('delete', old.id, old.tokens); END"
        )
        op.execute(
            "CREATE TRIGGER recording_texts_au AFTER UPDATE ON recording_texts BEGIN "
            "INSERT INTO recording_texts_fts(recording_texts_fts, rowid, tokens) "
            "VALUES ('delete', old.id, old.tokens); "
            "INSERT INTO recording_texts_fts(rowid, tokens) VALUES (new.id, new.tokens); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for trigger in ("recording_texts_ai", "recording_texts_ad", "recording_texts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS recording_texts_fts")
    op.drop_index("ix_recording_texts_visit", table_name="recording_texts")
    op.drop_table("recording_texts")
    op.drop_index("ix_petitions_number", table_name="petitions")
    op.drop_index("ix_recordings_started", table_name="recordings")
    with op.batch_alter_table("recordings") as batch:
        for column in ("integrity_detail", "integrity_checked_at", "integrity", "seal_reason",
                       "sealed"):  # fmt: skip
            batch.drop_column(column)
