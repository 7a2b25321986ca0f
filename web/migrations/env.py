"""Alembic environment: runs migrations on the async engine of the configured database."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from config.db import Base, create_engine
from config.settings import load_settings
from web.models import import_all_models

import_all_models()
target_metadata = Base.metadata
config = context.config


def _do_run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch migrations rebuild a table (copy, drop, rename); with foreign keys enforced,
        # dropping a table other rows point at fails. SQLite only honours this pragma outside
        # a transaction, so it is set before the migration's transaction begins, and every
        # reference is checked before that transaction commits, when a migration ran.
        _pragma(connection, "PRAGMA foreign_keys=OFF")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        migration = context.get_context()
        before = set(migration.get_current_heads())
        context.run_migrations()
        # only when a migration ran: at head (every start of the server) there is nothing
        # to check, and the whole-database check took 6 s on a million visits
        if sqlite and set(migration.get_current_heads()) != before:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left broken references: {broken[:5]}")
    if sqlite:
        _pragma(connection, "PRAGMA foreign_keys=ON")


def _pragma(connection: Connection, sql: str) -> None:
    # on the driver's connection: through SQLAlchemy it would first emit BEGIN
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


async def _run_async(url: str | None) -> None:
    settings = config.attributes.get("settings") or load_settings()
    engine = create_engine(settings, url=url)
    async with engine.connect() as connection:
        await connection.run_sync(_do_run)
        await connection.commit()
    await engine.dispose()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _do_run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or None
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or load_settings().resolved_database_url,
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_online()
