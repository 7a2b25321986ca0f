"""Alembic: upgrade → downgrade → upgrade, the models match the migrations, the audit
trail is append-only in the database itself (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import inspect, text

from config.db import Base, create_engine
from config.settings import Settings
from recorder.search import in_metadata
from tests.conftest import PostgresServer
from web.cli import downgrade, migrate
from web.models import import_all_models

ROOT = Path(__file__).resolve().parent.parent
TABLES = {
    "courts",
    "users",
    "reception_rooms",
    "petitioners",
    "petitions",
    "visits",
    "visit_codes",
    "audit_events",
    "staff_sessions",
}


def _alembic(env: dict[str, str], *args: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr


def _tables(sync_url: str) -> set[str]:
    engine = create_sync_engine(sync_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_on_sqlite(tmp_path: Path) -> None:
    env = {"VRECEPTION_DATA_DIR": str(tmp_path)}
    sync_url = f"sqlite:///{tmp_path / 'vreception.db'}"
    _alembic(env, "upgrade", "head")
    assert _tables(sync_url) >= TABLES
    _alembic(env, "downgrade", "base")
    assert _tables(sync_url) <= {"alembic_version"}
    _alembic(env, "upgrade", "head")
    assert _tables(sync_url) >= TABLES


def _diff(sync_url: str) -> list[object]:
    import_all_models()
    engine = create_sync_engine(sync_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_object": lambda obj, name, *_: in_metadata(name),
                },
            )
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()


def test_models_match_migrations_sqlite(tmp_path: Path) -> None:
    migrate(Settings(data_dir=tmp_path))
    assert _diff(f"sqlite:///{tmp_path / 'vreception.db'}") == []


async def _audit_is_append_only(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO audit_events (at, actor_type, action, detail) "
                    "VALUES (CURRENT_TIMESTAMP, 'system', 'test.event', '{}')"
                )
            )
        for statement in ("UPDATE audit_events SET action = 'forged'", "DELETE FROM audit_events"):
            with pytest.raises(Exception, match="append-only"):
                async with engine.begin() as conn:
                    await conn.execute(text(statement))
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT action FROM audit_events"))).all()
        assert [r[0] for r in rows] == ["test.event"]
    finally:
        await engine.dispose()


async def test_audit_append_only_sqlite(migrated: Settings) -> None:
    await _audit_is_append_only(migrated)


@pytest.mark.postgres
async def test_migrations_and_audit_guard_on_postgres(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    import asyncio

    url = postgres_server.create_database("vr_migrations")
    settings = Settings(data_dir=tmp_path, database_url=url)
    await asyncio.to_thread(migrate, settings)
    await asyncio.to_thread(downgrade, settings, "base")
    await asyncio.to_thread(migrate, settings)
    await _audit_is_append_only(settings)


def test_upgrading_a_database_with_petitions_and_visits_keeps_them(tmp_path: Path) -> None:
    """A court's database from before petition cases upgrades with every row kept: its
    petitions become cases at their court, each with one contact, categories mapped; later,
    each case keeps the channels its contacts came by."""
    import sqlite3

    settings = Settings(data_dir=tmp_path)
    migrate(settings, "0005")
    con = sqlite3.connect(tmp_path / "vreception.db")
    now = "2026-11-01 08:00:00.000000"
    con.executemany(
        "INSERT INTO courts (id, code, name, level, parent_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(1, "S", "最高", "supreme", None, now), (2, "B", "基层", "basic", 1, now)],
    )
    con.execute(
        "INSERT INTO petitioners (id, court_id, name, id_type, id_number, phone, created_at) "
        "VALUES (1, 2, '张三', 'resident_id', '110101199003071233', '', ?)",
        (now,),
    )
    con.executemany(
        "INSERT INTO petitions (id, court_id, petitioner_id, number, category, summary, "
        "judgment_ref, created_at) VALUES (?, 2, 1, ?, ?, ?, ?, ?)",
        [(1, "P1", "申请再审", "诉求", "(2024)x", now), (2, "P2", "土地纠纷", "诉求二", "", now)],
    )
    con.execute(
        "INSERT INTO visits (id, petition_id, court_id, receiving_court_id, state, created_at, "
        "updated_at, walk_in, cancel_reason, checkin_document_type, checkin_document_masked) "
        "VALUES (?, 1, 2, 1, 'ended', ?, ?, 0, '', '', '')",
        ("a" * 32, now, now),
    )
    con.commit()
    con.close()
    migrate(settings, "0012")
    con = sqlite3.connect(tmp_path / "vreception.db")  # a letter and a call about the first
    con.executemany(
        "INSERT INTO case_contacts (petition_id, court_id, channel, occurred_at, summary, "
        "people_count, repeat, created_at) VALUES (1, 2, ?, ?, '', 1, 1, ?)",
        [("letter", now, now), ("phone", now, now), ("letter", now, now)],
    )
    con.commit()
    con.close()
    migrate(settings)
    con = sqlite3.connect(tmp_path / "vreception.db")
    try:
        # the channels each case's contacts came by (0013): video 4, letter 2, phone 16
        assert con.execute("SELECT id, channels FROM petitions ORDER BY id").fetchall() == [
            (1, 4 | 2 | 16),
            (2, 4),
        ]
        rows = con.execute(
            "SELECT id, category, state, handler_court_id FROM petitions ORDER BY id"
        ).fetchall()
        assert rows == [(1, "civil_retrial", "handling", 2), (2, "other", "handling", 2)]
        assert con.execute("SELECT petition_id, kind FROM visits").fetchall() == [(1, "reception")]
        assert con.execute(  # one contact each from the petitions (0006)
            "SELECT petition_id, channel FROM case_contacts WHERE repeat = 0 ORDER BY petition_id"
        ).fetchall() == [(1, "video"), (2, "video")]
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        con.close()


def test_references_are_checked_after_a_migration_and_not_when_already_at_head(
    tmp_path: Path,
) -> None:
    """A migration that leaves a row pointing nowhere is refused; a start on a database
    already at head runs no migration and no whole-database check (6 s on a million visits)."""
    import sqlite3

    def run(sql: str) -> list[tuple[object, ...]]:
        # a plain connection: foreign keys are off, so a row may point nowhere
        con = sqlite3.connect(tmp_path / "vreception.db")
        try:
            rows = con.execute(sql).fetchall()
            con.commit()
            return rows
        finally:
            con.close()

    orphan_room = (
        "INSERT INTO reception_rooms (id, court_id, name, location, active, created_at) "
        "VALUES (1, 99, '接访室', '', 1, '2026-11-01 08:00:00.000000')"
    )
    settings = Settings(data_dir=tmp_path)
    migrate(settings, "0011")
    run(orphan_room)
    with pytest.raises(RuntimeError, match="broken references"):
        migrate(settings)
    run("DELETE FROM reception_rooms")
    migrate(settings)
    run(orphan_room)
    migrate(settings)  # at head: nothing ran, nothing checked
    assert run("SELECT version_num FROM alembic_version") == [("0020",)]


def test_accounts_that_exist_keep_their_passwords_unforced(tmp_path: Path) -> None:
    """0019: only a password an administrator chooses from now on must be changed; the
    accounts already in use are not all sent to the change-password page at once."""
    import sqlite3

    settings = Settings(data_dir=tmp_path)
    migrate(settings, "0018")
    con = sqlite3.connect(tmp_path / "vreception.db")
    con.execute(
        "INSERT INTO users (id, username, display_name, role, court_id, password_hash, active,"
        " created_at, password_changed_at) VALUES (1, 'admin', '管理员', 'admin', NULL, 'x', 1,"
        " '2026-11-01 08:00:00.000000', '2026-11-01 08:00:00.000000')"
    )
    con.commit()
    con.close()
    migrate(settings)
    con = sqlite3.connect(tmp_path / "vreception.db")
    try:
        assert con.execute("SELECT username, must_change_password FROM users").fetchall() == [
            ("admin", 0)
        ]
    finally:
        con.close()
