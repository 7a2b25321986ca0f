"""SQLAlchemy 2 async engine and session factory, the declarative Base and shared types."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from config.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table; constraint names are stable for migrations."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sqlite_on_connect(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (see create_engine).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(
    settings: Settings, url: str | None = None, *, immediate: bool = False
) -> AsyncEngine:
    """The async engine for the configured database (SQLite file by default).

    On SQLite, ``immediate`` makes every transaction ``BEGIN IMMEDIATE``: it takes the write
    lock at its start, so concurrent writers queue (busy_timeout) instead of failing when a
    read snapshot cannot be upgraded. Use it for transactions that write.
    """
    url = url or settings.resolved_database_url
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 10}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        def _begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        event.listen(engine.sync_engine, "begin", _begin)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits on success, rolls back everything on any error."""
    async with sessionmaker() as session, session.begin():
        yield session


class Database:
    """Sessions for one process: plain readers, and writer transactions.

    On SQLite (embedded mode, one process) writer transactions are serialized by an
    in-process lock, in arrival order, so concurrent writers never wait in SQLite's busy
    handler; each also starts with ``BEGIN IMMEDIATE``. On PostgreSQL writers run
    concurrently and the database's own locking and constraints decide.
    """

    def __init__(self, settings: Settings) -> None:
        self.engine = create_engine(settings)
        self._write_engine = (
            create_engine(settings, immediate=True) if settings.is_sqlite else self.engine
        )
        self._read = create_sessionmaker(self.engine)
        self._write = create_sessionmaker(self._write_engine)
        self._lock = asyncio.Lock() if settings.is_sqlite else None

    @property
    def serialized(self) -> bool:
        """True when write transactions take the in-process lock (SQLite)."""
        return self._lock is not None

    def reader(self) -> AsyncSession:
        """A session for reading; it never commits."""
        return self._read()

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: commits on success, rolls back on any error."""
        async with (
            self._lock or contextlib.nullcontext(),
            self._write() as session,
            session.begin(),
        ):
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._write_engine is not self.engine:
            await self._write_engine.dispose()
