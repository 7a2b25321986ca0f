"""The SQLite engine: statements that cannot wait run on the event loop (no trip to the
connection's thread), what may wait is one trip, a slow read is finished on the thread; and
what comes back (rows, row counts, generated ids, errors) is what the driver gives."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

import config.db
from config.db import Database, create_engine, create_sessionmaker
from config.settings import Settings
from scheduler.models import Court, CourtLevel

# about 200,000 SQLite steps: far past the loop's budget with the budget set to nothing
SLOW_COUNT = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) "
    "SELECT count(*) FROM c"
)


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every call handed to an aiosqlite connection's thread."""
    seen: list[Any] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(fn)
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return seen


async def test_a_write_transaction_of_small_writes_never_goes_to_the_connection_thread(
    migrated: Settings, trips: list[Any]
) -> None:
    engine = create_engine(migrated, immediate=True)
    try:
        async with create_sessionmaker(engine)() as db:
            await db.execute(text("SELECT 1"))  # connects (on the thread)
            await db.rollback()
            trips.clear()
            async with db.begin():
                await db.execute(text("SELECT 1"))
                assert trips == []  # BEGIN IMMEDIATE: the lock was free, taken at once
                court = Court(code="T1", name="测试法院", level=CourtLevel.supreme)
                db.add(court)
                await db.flush()
                assert court.id is not None  # the generated id came back
                changed = await db.execute(
                    update(Court).where(Court.id == court.id).values(name="改名法院")
                )
                assert getattr(changed, "rowcount", None) == 1
                names = (await db.execute(select(Court.name).order_by(Court.id))).scalars().all()
                assert names == ["改名法院"]
                with pytest.raises(IntegrityError):
                    async with db.begin_nested():
                        db.add(Court(code="T1", name="另一法院", level=CourtLevel.supreme))
                assert (await db.scalar(select(Court.code).where(Court.id == court.id))) == "T1"
                assert trips == []  # the insert, update, reads and savepoint: none
            assert trips == []  # COMMIT: no fsync, the WAL checkpoint is not its job
    finally:
        await engine.dispose()


async def test_a_write_of_many_rows_goes_to_the_connection_thread_even_with_the_lock(
    migrated: Settings, trips: list[Any]
) -> None:
    """A write cannot be interrupted and run again, so one of many rows (executemany, or an
    INSERT with many VALUES) never runs on the event loop, where it would stall the sockets
    and the media of every visit on the node; a write of a few rows with the lock does."""
    engine = create_engine(migrated, immediate=True)
    try:
        async with create_sessionmaker(engine)() as db:
            await db.execute(text("SELECT 1"))
            await db.rollback()
            async with db.begin():
                trips.clear()
                await db.execute(
                    insert(Court),
                    [
                        {"code": f"M{i}", "name": f"法院{i}", "level": CourtLevel.supreme}
                        for i in range(100)
                    ],
                )  # executemany of 300 parameters
                assert len(trips) == 1  # the rows
                await db.execute(
                    insert(Court).values(
                        [
                            {"code": f"V{i}", "name": f"另一法院{i}", "level": CourtLevel.supreme}
                            for i in range(100)
                        ]
                    )
                )  # one statement of 300 parameters
                assert len(trips) == 2
                single = insert(Court).values(code="S1", name="单行", level=CourtLevel.supreme)
                await db.execute(single)
                await db.execute(
                    insert(Court),
                    [
                        {"code": f"F{i}", "name": f"少数法院{i}", "level": CourtLevel.supreme}
                        for i in range(3)
                    ],
                )  # executemany of 9 parameters
                assert len(trips) == 2  # small writes with the lock: on the loop
            assert len(trips) == 3  # the COMMIT of many rows: on the thread as well
            count = await db.scalar(select(func.count()).select_from(Court))
            assert count == 204
    finally:
        await engine.dispose()


async def test_begin_immediate_waits_on_the_thread_while_another_process_writes(
    migrated: Settings, trips: list[Any]
) -> None:
    """Another process (a command-line tool, say) holding the write lock: BEGIN IMMEDIATE
    does not fail and does not wait on the event loop; it waits on the connection's thread
    and goes on once the lock is free."""
    other = sqlite3.connect(migrated.data_dir / "vreception.db", isolation_level=None)
    engine = create_engine(migrated, immediate=True)
    try:
        async with create_sessionmaker(engine)() as db:
            await db.execute(text("SELECT 1"))
            await db.rollback()
            other.execute("BEGIN IMMEDIATE")
            trips.clear()

            async def release() -> None:  # runs only if the loop is free while BEGIN waits
                other.execute("COMMIT")

            releasing = asyncio.create_task(release())
            async with db.begin():
                db.add(Court(code="T3", name="等锁法院", level=CourtLevel.supreme))
                await db.flush()
            await releasing
            assert len(trips) == 1  # BEGIN waited on the thread
            assert await db.scalar(select(Court.name).where(Court.code == "T3")) == "等锁法院"
    finally:
        other.close()
        await engine.dispose()


async def test_the_checkpointer_moves_the_wal_into_the_database_file(
    migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """COMMIT no longer copies the WAL (its own checkpoint only past ~40 MB): the server's
    checkpointer does, on a thread, and the database file then has every commit."""
    path = migrated.data_dir / "vreception.db"

    def in_file(sql: str) -> int:  # the database file alone, without the WAL
        reader = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            return int(reader.execute(sql).fetchone()[0])
        finally:
            reader.close()

    database = Database(migrated)
    try:
        async with database.writer() as db:
            db.add_all(
                Court(code=f"W{i}", name=f"检查点法院{i}", level=CourtLevel.supreme)
                for i in range(200)
            )
        assert in_file("SELECT count(*) FROM courts WHERE code LIKE 'W%'") == 0  # in the WAL
        frames, moved = await asyncio.to_thread(database.checkpoint)
        assert frames > 0 and moved == frames
        assert in_file("SELECT count(*) FROM courts WHERE code LIKE 'W%'") == 200
        monkeypatch.setattr(config.db, "WAL_CHECKPOINT_SECONDS", 0.05)
        task = asyncio.create_task(database.checkpoints())
        async with database.writer() as db:
            db.add(Court(code="W-late", name="后写法院", level=CourtLevel.supreme))
        try:
            for _ in range(200):  # in the database file once the task's next round ran
                if in_file("SELECT count(*) FROM courts WHERE code = 'W-late'") == 1:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
        assert in_file("SELECT count(*) FROM courts WHERE code = 'W-late'") == 1
    finally:
        await database.dispose()


async def test_a_write_without_the_write_lock_is_one_trip_to_the_connection_thread(
    migrated: Settings, trips: list[Any]
) -> None:
    engine = create_engine(migrated)  # BEGIN (deferred): a write may wait for the lock
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            await db.execute(text("SELECT 1"))
            trips.clear()
            db.add(Court(code="T2", name="测试法院", level=CourtLevel.supreme))
            await db.flush()
            assert len(trips) == 1
            trips.clear()
            assert await db.scalar(select(Court.name).where(Court.code == "T2")) == "测试法院"
            assert trips == []
    finally:
        await engine.dispose()


async def test_a_read_past_the_loop_budget_is_run_again_whole_on_the_connection_thread(
    migrated: Settings, trips: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db:
            await db.execute(text("SELECT 1"))
            monkeypatch.setattr(config.db, "LOOP_READ_BUDGET_S", 0.0)
            trips.clear()
            assert await db.scalar(text(SLOW_COUNT), {"n": 200_000}) == 200_000
            assert len(trips) == 1
            trips.clear()
            assert await db.scalar(text("SELECT 7")) == 7  # too short to be interrupted
            assert trips == []
    finally:
        await engine.dispose()


async def test_the_event_loop_keeps_running_while_a_slow_read_runs(migrated: Settings) -> None:
    engine = create_engine(migrated)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    try:
        async with create_sessionmaker(engine)() as db:
            await db.execute(text("SELECT 1"))
            task = asyncio.create_task(ticker())
            await asyncio.sleep(0)
            before = ticks
            assert await db.scalar(text(SLOW_COUNT), {"n": 2_000_000}) == 2_000_000
            during = ticks - before
            done.set()
            await task
            assert during > 1  # the loop ran other work while SQLite counted
    finally:
        await engine.dispose()


async def test_a_statement_with_a_cte_that_writes_is_not_taken_for_a_read(
    migrated: Settings, trips: list[Any]
) -> None:
    engine = create_engine(migrated)  # no write lock: a write goes to the thread
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            await db.execute(text("SELECT 1"))
            trips.clear()
            await db.execute(
                text(
                    "WITH names(code) AS (SELECT 'T9')\n"
                    "INSERT INTO courts (code, name, level, created_at) "
                    "SELECT code, '测试法院', 'supreme', '2026-01-01 00:00:00' FROM names"
                )
            )
            assert len(trips) == 1
            assert await db.scalar(select(Court.name).where(Court.code == "T9")) == "测试法院"
    finally:
        await engine.dispose()


async def test_closing_a_session_does_not_hand_the_loop_to_other_requests(
    migrated: Settings,
) -> None:
    """A request answers as soon as its own work is done: leaving a reader or a writer runs
    no other ready callback first (SQLAlchemy's own exit closes the session in a task of
    its own and waits for it, and every request's answer then waited behind the others')."""
    database = Database(migrated)
    loop = asyncio.get_running_loop()
    try:
        for open_session in (database.reader, database.writer):
            async with open_session() as db:
                await db.execute(text("SELECT 1"))  # connects (on the thread)
            ran: list[str] = []
            async with open_session() as db:
                await db.execute(select(func.count()).select_from(Court))
                loop.call_soon(ran.append, "another request")
            assert ran == [], open_session.__name__
            await asyncio.sleep(0)
            assert ran == ["another request"]
    finally:
        await database.dispose()
