"""SQLAlchemy 2 async engine and session factory, the declarative Base and shared types."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from threading import Thread
from typing import Any, TypeVar, cast

import aiosqlite
import sqlalchemy
from sqlalchemy import DateTime, Executable, Insert, MetaData, Select, Table, event, insert
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Connection, Dialect, Result, make_url
from sqlalchemy.engine.result import IteratorResult, SimpleResultMetaData
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, make_transient_to_detached
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from config.settings import Settings

log = logging.getLogger("vreception.db")

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


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements (``insert(table_of(M))`` writes rows without
    the ORM's bulk layer or unit of work)."""
    return cast(Table, model.__table__)


# add_row's statements, built once per table and set of columns read back
_ROW_INSERTS: dict[tuple[Table, tuple[str, ...]], Insert] = {}


async def add_row(db: AsyncSession, obj: Base) -> None:
    """Write the new ``obj`` as one INSERT statement (no unit of work) and attach it to the
    session as if it had been loaded. A column not set takes its Python default (set on
    the object too); what the database fills (the autoincrement key, a server default) is
    read back with RETURNING. The session is not flushed first."""
    mapper = sa_inspect(type(obj))
    table = cast(Table, mapper.local_table)
    state = obj.__dict__
    values: dict[str, Any] = {}
    filled: list[str] = []
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if prop.key in state:
            values[column.key] = state[prop.key]
            continue
        default: Any = column.default
        if default is not None and (default.is_callable or default.is_scalar):
            value = default.arg(None) if default.is_callable else default.arg
        elif column.server_default is not None or column is table.autoincrement_column:
            filled.append(prop.key)
            continue
        else:
            value = None
        setattr(obj, prop.key, value)
        values[column.key] = value
    key = (table, tuple(filled))
    statement = _ROW_INSERTS.get(key)
    if statement is None:
        statement = insert(table)
        if filled:
            statement = statement.returning(*(mapper.column_attrs[k].columns[0] for k in filled))
        _ROW_INSERTS[key] = prepared(statement)
    result = await db.execute(statement, values)
    if filled:
        for k, value in zip(filled, result.one(), strict=True):
            setattr(obj, k, value)
    make_transient_to_detached(obj)
    db.add(obj)


# Statements marked by prepared(), by id: the statement (held, so its id is never reused)
# and its plans, compiled on first use, by the set of keys given (an INSERT's columns; None
# for a read). A plan of None: SQLAlchemy runs it.
_PREPARED: dict[int, tuple[Executable, dict[frozenset[str] | None, _Plan | None]]] = {}


_S = TypeVar("_S", bound=Executable)


def prepared(statement: _S) -> _S:
    """Mark a Core statement built once (a read of columns, or an INSERT of one table with
    its rows given as parameters) to run on SQLite without SQLAlchemy's per-call execution
    path: it is compiled once (an INSERT once per set of columns given), and each call
    binds its parameters, runs on the session's own connection and transaction (the same
    loop-or-thread rule as every statement, see _OneTripCursor) and gives a real
    :class:`Result` (an INSERT's: its RETURNING rows, if any). SQLAlchemy's path costs
    ~70-140 µs a statement against ~10-20 µs this way. Elsewhere (PostgreSQL), or for a
    call this cannot plan (an expanding list given empty, a parameter that renders a
    literal, an INSERT leaving out a column with a Python default), SQLAlchemy runs it as
    always; so too while the session holds unflushed changes (SQLAlchemy flushes them
    before any statement). Many rows with RETURNING are inserted a row at a time, their
    rows returned in order. An UPDATE of a table (not of an ORM entity: SQLAlchemy would
    synchronize the session's objects) gives its ``rowcount`` too; one leaving out a
    column with a Python ``onupdate`` is SQLAlchemy's to run."""
    if getattr(statement, "is_insert", False):
        if cast(Any, statement)._values or cast(Any, statement)._multi_values:
            raise TypeError("prepared(): an INSERT takes its rows as parameters")
    elif getattr(statement, "is_update", False):
        if cast(Any, statement)._propagate_attrs.get("compile_state_plugin") == "orm":
            raise TypeError("prepared(): an UPDATE of a table, not of an ORM entity")
    elif not getattr(statement, "is_select", False):
        raise TypeError("prepared(): reads, INSERTs and UPDATEs only")
    elif any(isinstance(d["type"], type) for d in cast(Any, statement).column_descriptions):
        raise TypeError("prepared(): columns only; an ORM entity is loaded by SQLAlchemy")
    _PREPARED[id(statement)] = (statement, {})
    return statement


class _Plan:
    """A prepared statement compiled for SQLite: its SQL, the order, defaults and
    converters of its parameters, and its result's columns."""

    __slots__ = (
        "binds",
        "callables",
        "expanding",
        "metadata",
        "names",
        "required",
        "sized",
        "sql",
    )

    def __init__(
        self, statement: Executable, dialect: Dialect, keys: frozenset[str] | None
    ) -> None:
        if keys is None:
            compiled: Any = cast(Any, statement).compile(dialect=dialect)
        else:
            compiled = cast(Any, statement).compile(dialect=dialect, column_keys=sorted(keys))
            if compiled.insert_prefetch:  # Python defaults SQLAlchemy would fill in
                raise _Unplannable
        if compiled.update_prefetch:  # an UPDATE's Python onupdate SQLAlchemy would fill in
            raise _Unplannable
        if (
            not compiled.positional
            or compiled.literal_execute_params
            or compiled.escaped_bind_names
            or any(p.type._is_tuple_type for p in compiled.post_compile_params)
        ):
            raise _Unplannable
        self.sql: str = compiled.string
        self.names: list[str] = list(compiled.positiontup)
        processors = compiled._bind_processors
        # per parameter: its converter, and its value when the call gives none
        self.binds: dict[str, tuple[Any, Any]] = {
            name: (processors.get(name), compiled.binds[name].value) for name in self.names
        }
        self.callables = {
            name: compiled.binds[name].callable
            for name in self.names
            if compiled.binds[name].callable is not None
        }
        self.expanding = {compiled.bind_names[p] for p in compiled.post_compile_params}
        # a value the call must give (SQLAlchemy refuses the call without it)
        self.required = {name for name in self.names if compiled.binds[name].required}
        self.sized: dict[tuple[int, ...], str] = {}  # SQL for each set of list lengths
        entries = compiled._result_columns
        keynames = [e.keyname for e in entries]
        if len(set(keynames)) != len(keynames):
            raise _Unplannable
        self.metadata = SimpleResultMetaData(
            keynames,
            extra=[e.objects for e in entries],
            _processors=[e.type._cached_result_processor(dialect, None) for e in entries],
        )

    def bind(self, params: dict[str, Any] | None) -> tuple[str, list[Any]] | None:
        """The SQL and its positional values for ``params``; None when a list is empty
        (SQLAlchemy renders an empty set its own way) or a required value is missing
        (SQLAlchemy refuses it with its own error)."""
        given = params or {}
        values: list[Any] = []
        lengths: list[int] = []
        for name in self.names:
            process, default = self.binds[name]
            if name in given:
                value = given[name]
            elif name in self.callables:
                value = self.callables[name]()
            elif name in self.required:
                return None
            else:
                value = default
            if name in self.expanding:
                if not value:
                    return None
                lengths.append(len(value))
                values.extend(value if process is None else [process(v) for v in value])
            else:
                values.append(value if process is None else process(value))
        if not lengths:
            return self.sql, values
        key = tuple(lengths)
        sql = self.sized.get(key)
        if sql is None:
            sizes = iter(lengths)
            sql = _POSTCOMPILE.sub(lambda _: ", ".join("?" * next(sizes)), self.sql)
            self.sized[key] = sql
        return sql, values


# What the prepared path reads of SQLAlchemy's private state (checked once, below)
_COMPILED_SEAMS = (
    "positional", "positiontup", "binds", "bind_names", "_bind_processors",
    "_result_columns", "post_compile_params", "literal_execute_params",
    "escaped_bind_names", "insert_prefetch", "update_prefetch",
)  # fmt: skip
_SESSION_SEAMS = ("_new", "_deleted", "_transaction", "identity_map")
_seams: list[bool] = []


def prepared_seams_present() -> bool:
    """Whether this SQLAlchemy has what the prepared path reads of its private state (the
    version pinned in pyproject.toml has). Without it, every prepared statement goes
    SQLAlchemy's own way, only slower, and the log says so once."""
    if not _seams:
        from sqlalchemy import bindparam, select
        from sqlalchemy.dialects import sqlite
        from sqlalchemy.orm import Session as SyncSession

        compiled = select(bindparam("x")).compile(dialect=sqlite.dialect())
        missing = [n for n in _COMPILED_SEAMS if not hasattr(compiled, n)]
        missing += [n for n in _SESSION_SEAMS if not hasattr(SyncSession(), n)]
        if not hasattr(SyncSession().identity_map, "_modified"):
            missing.append("identity_map._modified")
        if missing:
            log.error(
                "SQLAlchemy %s lacks %s: prepared statements run SQLAlchemy's way (slower); "
                "install the version pinned in pyproject.toml",
                getattr(sqlalchemy, "__version__", "?"),
                ", ".join(missing),
            )
        _seams.append(not missing)
    return _seams[0]


class _Unplannable(Exception):
    """The statement cannot be prepared; SQLAlchemy runs it."""


# SQLAlchemy's placeholder of an expanding list in compiled SQL (filled per call)
_POSTCOMPILE = re.compile(r"__\[POSTCOMPILE_(\S+?)\]")


_savepoints = itertools.count(1)  # names of Session.savepoint's savepoints
# Many rows with RETURNING: up to this many are inserted a row at a time (each a statement
# on the event loop, a few microseconds); more go SQLAlchemy's way (one statement).
RETURNING_ROWS_AT_ONCE = 32
_MANY = "vr_many_rows"  # the savepoint around them


async def _rolled_back_to(cursor: _OneTripCursor, name: str) -> None:
    """Undo what followed savepoint ``name`` and drop it. If the transaction itself is gone
    (SQLite rolled it back, or a failed flush did), there is nothing to undo: the error
    that did it is the one the caller raises."""
    try:
        await cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
        await cursor.execute(f"RELEASE SAVEPOINT {name}")
    except sqlite3.OperationalError:
        if cursor.in_transaction():
            raise


@asynccontextmanager
async def savepoint(db: AsyncSession) -> AsyncIterator[None]:
    """:meth:`Session.savepoint` for the application's sessions, else ``begin_nested``."""
    if isinstance(db, Session):
        async with db.savepoint():
            yield
    else:
        async with db.begin_nested():
            yield


class _PreparedResult(IteratorResult[Any]):
    """A prepared statement's rows, and (as a cursor's result gives) how many rows it
    wrote: an UPDATE's matched rows, an INSERT's rows."""

    rowcount: int


class Session(AsyncSession):
    """The application's session: statements marked by :func:`prepared` take the short
    path on SQLite; everything else is SQLAlchemy's."""

    async def execute(
        self,
        statement: Executable,
        params: Any = None,
        **kw: Any,
    ) -> Result[Any]:
        marked = _PREPARED.get(id(statement))
        # (scalars() and scalar() pass empty execution options and bind arguments)
        if marked is None or any(kw.values()) or not prepared_seams_present():
            return await super().execute(statement, params, **kw)
        many = isinstance(params, list)
        if not (params is None or isinstance(params, dict) or (many and params)):
            return await super().execute(statement, params, **kw)
        sync = self.sync_session
        if sync.autoflush and (sync._new or sync._deleted or sync.identity_map._modified):
            return await super().execute(statement, params, **kw)  # it flushes them first
        rows: list[dict[str, Any]] = cast(list[dict[str, Any]], params) if many else []
        plan = self._plan(marked, rows[0] if many else params)
        if plan is None:
            return await super().execute(statement, params, **kw)
        # each: (SQL, its values, whether the values are many rows of one executemany)
        runs: list[tuple[str, Any, bool]]
        if many:  # the rows of one INSERT: the same columns in each
            first = rows[0].keys()
            if plan.expanding or any(r.keys() != first for r in rows):
                return await super().execute(statement, params, **kw)
            bound_rows = [plan.bind(r) for r in rows]
            if any(b is None for b in bound_rows):
                return await super().execute(statement, params, **kw)
            values = [cast(tuple[str, list[Any]], b)[1] for b in bound_rows]
            if not plan.metadata.keys:
                runs = [(plan.sql, values, True)]
            elif len(values) <= RETURNING_ROWS_AT_ONCE:  # a row at a time, in a savepoint:
                # executemany returns no rows; all or none are written, as one statement
                runs = [(f"SAVEPOINT {_MANY}", None, False)]
                runs += [(plan.sql, v, False) for v in values]
                runs += [(f"RELEASE SAVEPOINT {_MANY}", None, False)]
            else:
                return await super().execute(statement, params, **kw)
        else:
            bound = plan.bind(params)
            if bound is None:
                return await super().execute(statement, params, **kw)
            runs = [(bound[0], bound[1], False)]
        connection, raw = await self._raw()
        if not isinstance(raw, _OneTripConnection):  # an in-memory database
            return await super().execute(statement, params, **kw)
        dispatch = connection.dispatch
        found: list[Any] = []
        changed = 0
        for sql, values, executemany in runs:
            cursor = _OneTripCursor(raw._inner, raw._budget)
            for listener in dispatch.before_cursor_execute:  # as SQLAlchemy's own path does
                listener(connection, cursor, sql, values, None, executemany)
            try:
                if executemany:
                    await cursor.executemany(sql, values)
                else:
                    await cursor.execute(sql, values)
            except sqlite3.Error as error:  # the error SQLAlchemy's path would raise
                if runs[0][0] == f"SAVEPOINT {_MANY}":  # none of the rows is kept
                    await _rolled_back_to(cursor, _MANY)
                raise DBAPIError.instance(sql, values, error, sqlite3.Error) from error
            for listener in dispatch.after_cursor_execute:
                listener(connection, cursor, sql, values, None, executemany)
            found.extend(await cursor.fetchall())
            changed += max(cursor.rowcount, 0)
        result = _PreparedResult(plan.metadata, iter(found))
        result.rowcount = changed
        return result

    def _plan(
        self,
        marked: tuple[Executable, dict[frozenset[str] | None, _Plan | None]],
        params: dict[str, Any] | None,
    ) -> _Plan | None:
        statement, plans = marked
        writes = getattr(statement, "is_insert", False) or getattr(statement, "is_update", False)
        keys = frozenset(params or ()) if writes else None  # (the columns SET, as SQLAlchemy)
        try:
            return plans[keys]
        except KeyError:
            pass
        plan = None
        dialect = self.sync_session.get_bind().dialect
        if dialect.name == "sqlite":
            with contextlib.suppress(_Unplannable):
                plan = _Plan(statement, dialect, keys)
        plans[keys] = plan
        return plan

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A savepoint around statements alone (rows written with :func:`add_row` and
        prepared INSERTs, no unit of work): on SQLite SQLite's own SAVEPOINT, RELEASE and
        ROLLBACK TO on the session's connection, without SQLAlchemy's nested transaction
        (~0.3 ms a booking). An error inside rolls the statements back and is raised; the
        session's objects are the caller's to mend, as they would be. While the session
        holds unflushed changes, or elsewhere (PostgreSQL), :meth:`begin_nested`."""
        sync = self.sync_session
        raw: Any = None
        if not (sync._new or sync._deleted or sync.identity_map._modified):
            raw = (await self._raw())[1] if prepared_seams_present() else None
        if not isinstance(raw, _OneTripConnection):
            async with self.begin_nested():
                yield
            return
        name = f"vr_savepoint_{next(_savepoints)}"
        cursor = _OneTripCursor(raw._inner, raw._budget)
        await cursor.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            await _rolled_back_to(cursor, name)
            raise
        await cursor.execute(f"RELEASE SAVEPOINT {name}")

    async def _raw(self) -> tuple[Connection, Any]:
        """This session's connection and its driver connection, in its transaction (begun
        if not yet)."""
        transaction = self.sync_session._transaction
        cached = self.info.get("_raw")
        if cached is not None and transaction is not None and cached[0] is transaction:
            return cast(tuple[Connection, Any], cached[1:])
        connection = (await self.connection()).sync_connection
        assert connection is not None
        raw = connection.connection.driver_connection
        self.info["_raw"] = (self.sync_session._transaction, connection, raw)
        return connection, raw


def _to_utc(value: datetime) -> datetime:
    """A timestamp given to a UTC column, in UTC; a naive one is refused."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def _read_as_utc(value: datetime) -> datetime:
    """A timestamp read from a UTC column: without a zone it is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _to_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _read_as_utc(value)

    # On SQLite, one function each way instead of SQLAlchemy's two in a row (its DATETIME
    # text, then the zone above): every visit row read or written passes here. The text is
    # the same: "YYYY-MM-DD HH:MM:SS.ffffff", UTC.

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            return _to_utc(value).isoformat(" ", "microseconds")[:26]  # less its "+00:00"

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        parse = datetime.fromisoformat

        def process(value: str | None) -> datetime | None:
            if value is None:
                return None
            try:  # UTC text without a zone, as written: parsed with its zone in one call
                parsed = parse(value + "+00:00")  # (~0.4 µs; .replace(tzinfo=) cost ~2 µs)
                if parsed.tzinfo is not None:
                    return parsed
            except ValueError:  # text with a zone of its own
                pass
            return _read_as_utc(parse(value))  # that, or a date alone (its zone was dropped)

        return process


# How long a statement waits for another process's lock before failing (SQLite's busy
# handler); inside this process writers queue on Database's lock instead.
BUSY_TIMEOUT_MS = 10_000
# The WAL is moved into the database file by Database.checkpoints, on a thread, every
# WAL_CHECKPOINT_SECONDS, so that a COMMIT (on the event loop) does not do it. SQLite's own
# checkpoint at COMMIT stays as a safety net, for a WAL this many pages long (~40 MB): a
# process without the checkpointer (a command-line tool), or one it cannot keep up with.
WAL_AUTOCHECKPOINT_PAGES = 10_000
WAL_CHECKPOINT_SECONDS = 1.0


def _sqlite_on_connect(dbapi_connection: Any, connection_record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (see create_engine).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cursor.close()


# Statements that never wait for a lock or the disk in this process's transactions: they
# run on the event loop itself (see _OneTripCursor), as do reads (SELECT, a WITH that only
# reads), a plain (deferred) BEGIN, BEGIN IMMEDIATE when the lock is free, and COMMIT
# (synchronous=NORMAL: no fsync; the WAL checkpoint is Database.checkpoints' job) unless
# the transaction wrote many rows on the thread. PRAGMA and the rest go to the thread.
_ON_LOOP = frozenset({"SAVEPOINT", "RELEASE", "ROLLBACK"})
_ENDS = frozenset({"COMMIT", "END"})
_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE"})
# A read running on the loop longer than this is interrupted and run again on the thread.
LOOP_READ_BUDGET_S = 0.004
# How often SQLite asks the budget during a read on the loop: every 10,000 steps (tens of
# microseconds), checks are rare, the budget still met. The handler is set for reads on the
# loop alone: a statement on the connection's thread calling back into Python would take the
# GIL at every check and wait behind the loop's work each time (a 10 ms report took 100+).
PROGRESS_STEPS = 10_000
# A write cannot be interrupted and run again (SQLite would roll back the whole transaction),
# so only a small one runs on the loop: at most this many parameters in all (an
# executemany's rows counted together: a booking's locks, a few notifications; ~0.2 ms).
# Many rows at once (the deadline scan's and the statistics' batches) go to the thread,
# where they stall no socket or media packet.
LOOP_WRITE_MAX_PARAMETERS = 256


def _small(parameters: Any, many: bool) -> bool:
    """Whether a write is small enough for the event loop (see LOOP_WRITE_MAX_PARAMETERS):
    its parameters counted over every row of an ``executemany``."""
    if parameters is None:
        return True
    if not many:
        return len(parameters) <= LOOP_WRITE_MAX_PARAMETERS
    if len(parameters) > LOOP_WRITE_MAX_PARAMETERS:
        return False
    return sum(len(row) for row in parameters) <= LOOP_WRITE_MAX_PARAMETERS


def _takes_write_lock(begin: str) -> bool:
    """Whether a BEGIN statement takes the write lock at once (IMMEDIATE, EXCLUSIVE)."""
    upper = begin.upper()
    return "IMMEDIATE" in upper or "EXCLUSIVE" in upper


def _keyword(sql: str) -> str:
    return sql.lstrip()[:10].split(None, 1)[0].upper() if sql.strip() else ""


def _read_only(sql: str, keyword: str) -> bool:
    if keyword == "SELECT":
        return True
    if keyword == "WITH":  # a CTE: read-only unless it ends in a write
        upper = sql.upper()
        return not any(f" {w} " in upper or f"\n{w} " in upper for w in _WRITES)
    return False


class _LoopBudget:
    """SQLite's progress handler of one connection: interrupts a read that has run on the
    event loop past its deadline (``tripped``); never interrupts anything else."""

    def __init__(self) -> None:
        self.deadline = 0.0  # 0: no deadline (on the thread, or a write)
        self.tripped = False
        self.write_locked = False  # this connection's transaction began IMMEDIATE
        self.wrote_on_thread = False  # it wrote many rows: its COMMIT goes to the thread too

    def __call__(self) -> int:
        if self.deadline and time.perf_counter() > self.deadline:
            self.tripped = True
            return 1
        return 0


# The mark (an SQL comment after SELECT) of a read that goes to the connection's thread
# at once, whatever its length: a ThreadRead's.
ON_THREAD = "/* on thread */"


class ThreadRead:
    """A long read (the board's totals and rows) that runs whole on the connection's thread,
    its rows returned as one JSON value (SQLite).

    A read on the event loop holds up every request for as long as SQLite works; on the
    thread, SQLite works beside the loop on another core (the sqlite3 module lets go of the
    GIL while a statement steps), but a statement of many rows takes the GIL back at every
    row, each time waiting behind the loop's work (a 3 ms read took 60-90 ms on a busy
    server). As one row (``json_group_array`` of the rows) it takes the GIL back once. Each
    column's own result processing (dates, enums) is applied to the decoded values, so
    :meth:`rows` gives what running ``statement`` would. Elsewhere (PostgreSQL: no loop
    time to save) ``statement`` runs as is."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = prepared(statement)
        rows = statement.subquery()
        self._columns = list(rows.c)
        self._whole = prepared(
            sqlalchemy.select(
                sqlalchemy.func.json_group_array(sqlalchemy.func.json_array(*rows.c))
            ).prefix_with(ON_THREAD)
        )
        self._processors: list[Callable[[Any], Any] | None] | None = None

    async def rows(self, db: AsyncSession, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        dialect = db.get_bind().dialect
        if dialect.name != "sqlite":
            return [tuple(row) for row in await db.execute(self.statement, params)]
        value = (await db.execute(self._whole, params)).scalar()
        if self._processors is None:
            self._processors = [c.type.result_processor(dialect, None) for c in self._columns]
        processors = self._processors
        return [
            tuple(v if f is None else f(v) for f, v in zip(processors, row, strict=True))
            for row in json.loads(value or "[]")
        ]


class _OneTripCursor:
    """A cursor that executes, fetches every row and closes in one call.

    aiosqlite runs every call on the connection's thread, and each is a hand-over between
    the event loop and that thread (a future, a wake-up of the loop, the GIL handed back):
    on a busy machine each hand-over waits for a core, and for the ~20 short statements of a
    booking those waits, not SQLite, were most of its time. So statements that cannot wait
    for anything run right here, on the loop: reads, bounded by :data:`LOOP_READ_BUDGET_S`
    (one that runs longer is interrupted by SQLite's progress handler and run again, whole,
    on the thread, so a slow report never stalls the loop), and small writes inside a
    transaction that already holds the write lock (``BEGIN IMMEDIATE``), which wait for
    nobody. What may wait or take long (``BEGIN IMMEDIATE``, ``COMMIT``, writes without the
    lock, writes of many rows, pragmas) is one trip to the thread, as before."""

    arraysize = 64

    def __init__(self, connection: aiosqlite.Connection, budget: _LoopBudget) -> None:
        self._connection = connection
        self._budget = budget
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def _run(self, sql: str, parameters: Any, many: bool) -> _OneTripCursor:
        raw = self._connection._conn  # the sqlite3 connection (check_same_thread=False)

        def work() -> tuple[list[Any], Any, int, int | None]:
            cursor = raw.cursor()
            try:
                if many:
                    cursor.executemany(sql, parameters)
                else:
                    cursor.execute(sql, () if parameters is None else parameters)
                rows = cursor.fetchall() if cursor.description else []
                return rows, cursor.description, cursor.rowcount, cursor.lastrowid
            finally:
                cursor.close()

        on_thread = cast(Any, self._connection)._execute  # aiosqlite's queue to its thread
        budget = self._budget
        keyword = _keyword(sql)
        read = _read_only(sql, keyword)
        deferred_begin = keyword == "BEGIN" and sql.strip().upper() == "BEGIN"  # takes no lock
        if keyword == "BEGIN" and not deferred_begin and self._lock_at_once(raw, sql):
            self.description, self.rowcount, self.lastrowid = None, -1, None
            self._rows = deque()
            return self
        if read and ON_THREAD in sql:
            result = await on_thread(work)
        elif (
            read
            or deferred_begin
            or keyword in _ON_LOOP
            or (keyword in _ENDS and not budget.wrote_on_thread)
            or (keyword in _WRITES and budget.write_locked and _small(parameters, many))
        ):
            budget.tripped = False
            budget.deadline = time.perf_counter() + LOOP_READ_BUDGET_S if read else 0.0
            if read:  # only here: on the thread each check would wait for the GIL
                raw.set_progress_handler(budget, PROGRESS_STEPS)
            try:
                try:
                    result = work()
                finally:
                    budget.deadline = 0.0
                    if read:
                        raw.set_progress_handler(None, PROGRESS_STEPS)
            except sqlite3.OperationalError:
                if not budget.tripped:
                    raise
                result = await on_thread(work)  # too slow for the loop: whole, on the thread
            if keyword in _ENDS or (keyword == "ROLLBACK" and " TO " not in f" {sql.upper()} "):
                budget.write_locked = budget.wrote_on_thread = False
        else:
            result = await on_thread(work)
            if keyword == "BEGIN":
                budget.write_locked = _takes_write_lock(sql)
            elif keyword in _WRITES:
                budget.wrote_on_thread = True
            elif keyword in _ENDS:
                budget.write_locked = budget.wrote_on_thread = False
        rows, self.description, self.rowcount, self.lastrowid = result
        self._rows = deque(rows)
        return self

    def _lock_at_once(self, raw: sqlite3.Connection, sql: str) -> bool:
        """BEGIN IMMEDIATE right here when the write lock is free (this process's writers
        queue on Database's lock before it, so it nearly always is): no trip to the thread.
        Held by another process: False, and the caller waits for it on the thread."""
        raw.execute("PRAGMA busy_timeout=0")
        try:
            raw.execute(sql)
        except sqlite3.OperationalError as exc:
            if raw.in_transaction or exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            return False
        finally:
            raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._budget.write_locked = _takes_write_lock(sql)
        return True

    async def execute(self, sql: str, parameters: Any = None) -> _OneTripCursor:
        return await self._run(sql, parameters, many=False)

    async def executemany(self, sql: str, parameters: Sequence[Any]) -> _OneTripCursor:
        return await self._run(sql, parameters, many=True)

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = min(size or self.arraysize, len(self._rows))
        return [self._rows.popleft() for _ in range(count)]

    def in_transaction(self) -> bool:
        """Whether the connection is inside a transaction."""
        return bool(self._connection._conn.in_transaction)

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()

    # Opening one needs no trip either: SQLAlchemy awaits ``connection.cursor()`` (2.0) or
    # enters it as a context (2.1); both give the cursor itself.
    async def _opened(self) -> _OneTripCursor:
        return self

    def __await__(self) -> Generator[Any, None, _OneTripCursor]:
        return self._opened().__await__()

    async def __aenter__(self) -> _OneTripCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _OneTripConnection:
    """An aiosqlite connection whose cursors are :class:`_OneTripCursor`; everything else
    is aiosqlite's."""

    def __init__(self, connection: aiosqlite.Connection, budget: _LoopBudget) -> None:
        self._inner = connection
        self._budget = budget

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def cursor(self) -> _OneTripCursor:
        return _OneTripCursor(self._inner, self._budget)

    async def commit(self) -> None:
        """On the loop (no fsync with synchronous=NORMAL, and the WAL checkpoint is
        Database.checkpoints' job), unless the transaction wrote many rows on the thread:
        then the pages it still has to write are written there too."""
        budget = self._budget
        on_thread, budget.write_locked, budget.wrote_on_thread = (
            budget.wrote_on_thread,
            False,
            False,
        )
        if on_thread:
            await self._inner.commit()
        else:
            self._inner._conn.commit()

    async def rollback(self) -> None:
        """On the loop: waits for nobody (also the pool's reset of a returned connection,
        which has nothing to undo)."""
        self._budget.write_locked = self._budget.wrote_on_thread = False
        self._inner._conn.rollback()


async def _open_sqlite(database: str, **kwargs: Any) -> _OneTripConnection:
    connection = aiosqlite.connect(database, **kwargs)
    # as SQLAlchemy does for aiosqlite: its worker thread must not keep the process alive
    worker = connection if isinstance(connection, Thread) else connection._thread
    worker.daemon = True
    opened = await connection
    missing = [name for name in ("_execute", "_conn") if not hasattr(opened, name)]
    if missing:  # a seam of aiosqlite's that _OneTripCursor relies on is gone: refuse
        await opened.close()
        raise RuntimeError(
            f"aiosqlite {getattr(aiosqlite, '__version__', '?')} has no {', '.join(missing)}; "
            "install the version pinned in pyproject.toml"
        )
    return _OneTripConnection(opened, _LoopBudget())


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
        parsed = make_url(url)
        if parsed.database and parsed.database != ":memory:" and not parsed.query:
            # a database file: the same connection SQLAlchemy would open, one trip a query
            kwargs["async_creator"] = partial(
                _open_sqlite, parsed.database, timeout=10, check_same_thread=False
            )
        else:
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
    return async_sessionmaker(engine, class_=Session, expire_on_commit=False)


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
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpointing = threading.Lock()  # dispose waits for a checkpoint under way

    @property
    def serialized(self) -> bool:
        """True when write transactions take the in-process lock (SQLite)."""
        return self._lock is not None

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        """A session for reading; it never commits."""
        async with self._session(self._read) as session:
            yield session

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: commits on success, rolls back on any error."""
        async with (
            self._lock or contextlib.nullcontext(),
            self._session(self._write) as session,
            session.begin(),
        ):
            yield session

    @asynccontextmanager
    async def _session(
        self, maker: async_sessionmaker[AsyncSession]
    ) -> AsyncIterator[AsyncSession]:
        """A session, closed on the way out. SQLAlchemy's own exit closes it in a task of
        its own, shielded from cancellation, and waits for that task: the request yields
        the loop to every other ready request before it can answer (on the desk, every
        request's answer waited behind the others' work). On SQLite the close is a
        rollback and the pool's return, both on the loop (see _OneTripConnection), so it
        is awaited directly and nothing can cancel it half-way; only a connection beyond
        the pool's size is closed on its thread. Elsewhere (PostgreSQL: real I/O)
        SQLAlchemy's shielded close is kept."""
        if not self.serialized:
            async with maker() as session:
                yield session
            return
        session = maker()
        try:
            yield session
        finally:
            await session.close()

    def checkpoint(self) -> tuple[int, int]:
        """Move what the WAL holds into the database file without waiting for anyone
        (``PRAGMA wal_checkpoint(PASSIVE)``, blocking: call it on a thread). Returns the
        WAL's frames and how many of them are in the database file now."""
        with self._checkpointing:
            return self._checkpoint()

    def _checkpoint(self) -> tuple[int, int]:
        if self._checkpointer is None:
            path = self.engine.url.database
            assert path, "checkpoint: not a SQLite file"
            self._checkpointer = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False
            )
            self._checkpointer.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _, frames, moved = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(frames), int(moved)

    async def checkpoints(self) -> None:
        """Run :meth:`checkpoint` on a thread every ``WAL_CHECKPOINT_SECONDS``, until
        cancelled (SQLite only): COMMIT on the event loop then never copies the WAL."""
        if not self.serialized:
            return
        while True:
            await asyncio.sleep(WAL_CHECKPOINT_SECONDS)
            try:
                await asyncio.to_thread(self.checkpoint)
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed (will retry): %s", exc)

    async def dispose(self) -> None:
        with self._checkpointing:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        await self.engine.dispose()
        if self._write_engine is not self.engine:
            await self._write_engine.dispose()
