"""Prepared reads (config.db.prepared): on SQLite a marked statement skips SQLAlchemy's
per-call execution path, and gives exactly what that path gives: the same rows, keys,
converted values, errors and events, in the session's own transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy.engine.base
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Table,
    bindparam,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

import config.db
from config.db import Database, UTCDateTime, prepared, savepoint, table_of
from config.settings import Settings
from scheduler.models import Court, CourtLevel

COURTS = table_of(Court)


def _by_ids() -> Any:
    return (
        select(
            COURTS.c.id,
            COURTS.c.code.label("code_label"),
            COURTS.c.level,
            COURTS.c.created_at,
            COURTS.c.parent_id,
        )
        .where(COURTS.c.id.in_(bindparam("ids", expanding=True)), COURTS.c.name != "无此法院")
        .order_by(COURTS.c.id)
    )


PLAIN, PREPARED = _by_ids(), prepared(_by_ids())
ID_NAMED = prepared(select(Court.id).where(Court.name == bindparam("name")))  # ORM attributes
MISSING = prepared(select(Table("nowhere", MetaData(), Column("id", Integer)).c.id))


@pytest.fixture
def sqlalchemy_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The SQL of every statement that went SQLAlchemy's own way."""
    seen: list[str] = []
    original = sqlalchemy.engine.base.Connection._execute_clauseelement

    def counted(self: Any, elem: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(elem))
        return original(self, elem, *args, **kwargs)

    monkeypatch.setattr(sqlalchemy.engine.base.Connection, "_execute_clauseelement", counted)
    yield seen


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[Database]:
    database = Database(migrated)
    yield database
    await database.dispose()


async def _courts(db: Database) -> list[int]:
    async with db.writer() as w:
        top = (
            await w.execute(
                insert(COURTS).returning(COURTS.c.id),
                {
                    "code": "T0",
                    "name": "测试最高院",
                    "level": CourtLevel.supreme,
                    "created_at": _at(0),
                },
            )
        ).scalar_one()
        ids = [top]
        for n in (1, 2):
            row = {"code": f"T{n}", "name": f"测试法院{n}", "level": CourtLevel.basic}
            row |= {"parent_id": top, "created_at": _at(n)}  # type: ignore[dict-item]
            ids.append((await w.execute(insert(COURTS).returning(COURTS.c.id), row)).scalar_one())
    return ids


def _at(n: int) -> datetime:
    return datetime(2026, 3, 1, 8, 0, n, 250 * n, tzinfo=timezone(timedelta(hours=8)))


async def test_a_prepared_read_gives_the_rows_sqlalchemy_gives(
    db: Database, sqlalchemy_runs: list[str]
) -> None:
    ids = await _courts(db)
    async with db.reader() as r:
        for chosen in ([ids[1]], ids, [ids[2], ids[0]], [ids[1]]):  # lengths change
            sqlalchemy_runs.clear()
            fast = await r.execute(PREPARED, {"ids": chosen})
            assert sqlalchemy_runs == []  # the short path
            slow = await r.execute(PLAIN, {"ids": chosen})
            assert len(sqlalchemy_runs) == 1
            assert list(fast.keys()) == list(slow.keys())
            fast_rows, slow_rows = fast.all(), slow.all()
            assert fast_rows == slow_rows and len(fast_rows) == len(chosen)
            for row in fast_rows:
                assert row.created_at.tzinfo is UTC and isinstance(row.level, CourtLevel)
                assert row._mapping[COURTS.c.level] is row.level
        first = (await r.execute(PREPARED, {"ids": ids})).first()
        assert first is not None and first.created_at == _at(0) and first.code_label == "T0"
        assert (await r.execute(PREPARED, {"ids": ids})).scalars().all() == ids
        sqlalchemy_runs.clear()
        # an empty list: SQLAlchemy renders an empty set its own way, and answers
        assert (await r.execute(PREPARED, {"ids": []})).all() == []
        assert len(sqlalchemy_runs) == 1


async def test_a_prepared_read_runs_in_the_sessions_own_transaction(
    db: Database, sqlalchemy_runs: list[str]
) -> None:
    ids = await _courts(db)
    async with db.writer() as w:
        await w.execute(update(COURTS).where(COURTS.c.id == ids[1]).values(code="T1X"))
        row = (await w.execute(PREPARED, {"ids": [ids[1]]})).one()
        assert row.code_label == "T1X"  # its own uncommitted write
        async with db.reader() as r:  # another connection: the committed state
            other = (await r.execute(PREPARED, {"ids": [ids[1]]})).one()
            assert other.code_label == "T1"


async def test_a_prepared_read_flushes_pending_objects_first_as_sqlalchemy_does(
    db: Database, sqlalchemy_runs: list[str]
) -> None:
    async with db.writer() as w:
        court = Court(code="T9", name="未写入的法院", level=CourtLevel.supreme)
        w.add(court)  # pending: not flushed
        found = (await w.execute(ID_NAMED, {"name": "未写入的法院"})).scalar()
        assert found is not None and found == court.id  # flushed first, as SQLAlchemy does
        assert sqlalchemy_runs
        court.code = "T9X"  # changed: not flushed
        sqlalchemy_runs.clear()
        assert (await w.execute(PREPARED, {"ids": [found]})).one().code_label == "T9X"
        assert sqlalchemy_runs
        sqlalchemy_runs.clear()
        assert (await w.execute(ID_NAMED, {"name": "未写入的法院"})).scalar() == found
        assert sqlalchemy_runs == []  # nothing pending: the short path


async def test_a_prepared_read_fires_the_engines_events_and_raises_sqlalchemys_errors(
    db: Database,
) -> None:
    seen: list[tuple[str, Any]] = []

    def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        ids = await _courts(db)
        async with db.reader() as r:
            await r.execute(PREPARED, {"ids": ids[:2]})
            with pytest.raises(OperationalError, match="no such table: nowhere"):
                await r.execute(MISSING)
        statement, parameters = next((s, p) for s, p in seen if "FROM courts" in s)
        assert "IN (?, ?)" in statement and list(parameters) == [*ids[:2], "无此法院"]
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)


def test_only_reads_of_columns_and_writes_of_tables_can_be_prepared() -> None:
    with pytest.raises(TypeError, match="columns only"):
        prepared(select(Court))
    with pytest.raises(TypeError, match="reads, INSERTs and UPDATEs only"):
        prepared(delete(COURTS))
    with pytest.raises(TypeError, match="not of an ORM entity"):
        prepared(update(Court).values(name="x"))
    with pytest.raises(TypeError, match="rows as parameters"):
        prepared(insert(COURTS).values(name="x"))


ADD_COURT = prepared(insert(COURTS).returning(COURTS.c.id, COURTS.c.created_at))
ADD_COURTS = prepared(insert(COURTS))


def _court(n: int, parent: int | None) -> dict[str, Any]:
    level = CourtLevel.supreme if parent is None else CourtLevel.basic
    row = {"code": f"P{n}", "name": f"法院{n}", "level": level, "parent_id": parent}
    return row | {"created_at": _at(n)}


async def test_a_prepared_insert_writes_what_sqlalchemy_writes(
    db: Database, sqlalchemy_runs: list[str]
) -> None:
    async with db.writer() as w:
        sqlalchemy_runs.clear()
        top, at = (await w.execute(ADD_COURT, _court(0, None))).one()
        assert at == _at(0) and at.tzinfo is UTC  # RETURNING, converted
        await w.execute(ADD_COURTS, [_court(n, top) for n in (1, 2, 3)])  # many rows
        assert sqlalchemy_runs == []  # both the short path
        # SQLAlchemy's way: a column with a Python default left out (it fills it in),
        # and rows that do not all give the same columns
        await w.execute(ADD_COURTS, {k: v for k, v in _court(4, top).items() if k != "created_at"})
        await w.execute(ADD_COURTS, [_court(5, top), {**_court(6, top), "parent_id": top}])
        rows_given_unevenly = [
            _court(7, top),
            {k: v for k, v in _court(8, top).items() if k != "created_at"},
        ]
        with pytest.raises(StatementError, match="A value is required for bind parameter"):
            async with w.begin_nested():
                await w.execute(ADD_COURTS, rows_given_unevenly)
        assert len(sqlalchemy_runs) >= 1
        with pytest.raises(IntegrityError, match="UNIQUE"):  # SQLAlchemy's error, as before
            async with w.begin_nested():
                await w.execute(ADD_COURTS, [_court(9, top), _court(1, top)])
    async with db.reader() as r:
        stored = (await r.execute(select(COURTS).order_by(COURTS.c.id))).all()
    assert [c.code for c in stored] == ["P0", "P1", "P2", "P3", "P4", "P5", "P6"]
    assert [c.created_at for c in stored[:4]] == [_at(n) for n in range(4)]
    assert stored[4].created_at.tzinfo is UTC  # SQLAlchemy filled it in
    assert all(c.parent_id == top for c in stored[1:])


async def test_many_rows_inserted_with_returning_give_their_rows_in_order(
    db: Database, sqlalchemy_runs: list[str]
) -> None:
    async with db.writer() as w:
        top, _ = (await w.execute(ADD_COURT, _court(0, None))).one()
        sqlalchemy_runs.clear()
        given = [_court(n, top) for n in (3, 1, 2)]
        returned = (await w.execute(ADD_COURT, given)).all()
        assert sqlalchemy_runs == []  # the short path, a row at a time
        with pytest.raises(IntegrityError, match="UNIQUE"):  # SQLAlchemy's error
            await w.execute(ADD_COURT, [_court(4, top), _court(1, top)])
        assert sqlalchemy_runs == []
        # none of its rows is kept, as of one statement; the transaction goes on
        await w.execute(ADD_COURT, [_court(5, top)])
        many = [_court(n, top) for n in range(6, 6 + config.db.RETURNING_ROWS_AT_ONCE + 1)]
        assert len((await w.execute(ADD_COURT, many)).all()) == len(many)
        assert len(sqlalchemy_runs) == 1  # more rows than that: one statement of SQLAlchemy's
    async with db.reader() as r:
        stored = dict(
            (await r.execute(select(COURTS.c.id, COURTS.c.code).where(COURTS.c.id != top))).all()
        )
    assert [stored[i] for i, _ in returned] == ["P3", "P1", "P2"]  # each row's own id, in order
    assert [at for _, at in returned] == [_at(3), _at(1), _at(2)]
    assert "P4" not in stored.values() and "P5" in stored.values()
    assert len(stored) == 4 + config.db.RETURNING_ROWS_AT_ONCE + 1


RENAME = prepared(
    update(COURTS)
    .where(COURTS.c.id.in_(bindparam("ids", expanding=True)))
    .values(level=bindparam("level"), created_at=bindparam("at"))
)
RENAME_ONLY = prepared(update(COURTS).where(COURTS.c.id == bindparam("court_id")))


async def test_a_prepared_update_writes_what_sqlalchemy_writes_and_counts_its_rows(
    db: Database, sqlalchemy_runs: list[str]
) -> None:
    ids = await _courts(db)
    async with db.writer() as w:
        sqlalchemy_runs.clear()
        level = CourtLevel.intermediate
        done = await w.execute(RENAME, {"ids": ids[1:], "level": level, "at": _at(9)})
        assert sqlalchemy_runs == [] and getattr(done, "rowcount", None) == 2
        none = await w.execute(RENAME, {"ids": [10_000], "level": level, "at": _at(9)})
        assert getattr(none, "rowcount", None) == 0
        # the columns SET are the statement's and the call's, as SQLAlchemy's: no other
        await w.execute(RENAME_ONLY, {"court_id": ids[0], "code": "T9"})
        assert sqlalchemy_runs == []
        with pytest.raises(IntegrityError, match="UNIQUE"):  # SQLAlchemy's error, as before
            async with w.begin_nested():
                await w.execute(RENAME_ONLY, {"court_id": ids[1], "code": "T9"})
    async with db.reader() as r:
        stored = (await r.execute(select(COURTS).order_by(COURTS.c.id))).all()
    assert [(c.code, c.level) for c in stored] == [
        ("T9", CourtLevel.supreme),
        ("T1", CourtLevel.intermediate),
        ("T2", CourtLevel.intermediate),
    ]
    assert [c.created_at for c in stored] == [_at(0), _at(9), _at(9)]
    assert stored[1].parent_id == ids[0]  # a column not SET is kept


async def test_an_update_leaving_out_a_python_onupdate_is_sqlalchemys_to_run(
    migrated: Settings, sqlalchemy_runs: list[str]
) -> None:
    from scheduler.models import Petition

    petitions = table_of(Petition)
    touched = prepared(
        update(petitions).where(petitions.c.id == bindparam("case_id")).values(contact_count=2)
    )
    database = Database(migrated)
    try:
        async with database.writer() as w:
            sqlalchemy_runs.clear()
            await w.execute(touched, {"case_id": 1})  # updated_at: SQLAlchemy fills it in
            assert len(sqlalchemy_runs) == 1
    finally:
        await database.dispose()


async def test_a_savepoint_of_statements_keeps_them_or_rolls_them_back_without_sqlalchemy(
    db: Database, sqlalchemy_runs: list[str]
) -> None:
    async with db.writer() as w:
        top, _ = (await w.execute(ADD_COURT, _court(0, None))).one()
        sqlalchemy_runs.clear()
        async with savepoint(w):
            await w.execute(ADD_COURTS, [_court(1, top)])
        with pytest.raises(IntegrityError, match="UNIQUE"):
            async with savepoint(w):
                await w.execute(ADD_COURTS, [_court(2, top)])
                await w.execute(ADD_COURTS, [_court(1, top)])  # taken: both rolled back
        with pytest.raises(RuntimeError):
            async with savepoint(w):
                async with savepoint(w):  # nested: the inner is released into the outer
                    await w.execute(ADD_COURTS, [_court(3, top)])
                raise RuntimeError("任何错误")
        assert sqlalchemy_runs == []  # no nested transaction of SQLAlchemy's
        w.add(Court(code="P4", name="法院4", level=CourtLevel.basic, parent_id=top))
        async with savepoint(w):  # unflushed: SQLAlchemy's own, which flushes first
            await w.execute(ADD_COURTS, [_court(5, top)])
        assert any("SAVEPOINT" in s for s in sqlalchemy_runs)
    async with db.reader() as r:
        codes = (await r.execute(select(COURTS.c.code).order_by(COURTS.c.code))).scalars()
        assert list(codes) == ["P0", "P1", "P4", "P5"]


async def test_a_prepared_call_missing_a_required_value_is_refused_as_sqlalchemy_refuses_it(
    db: Database,
) -> None:
    ids = await _courts(db)
    async with db.writer() as w:
        with pytest.raises(StatementError, match="A value is required for bind parameter"):
            await w.execute(RENAME, {"ids": ids, "level": CourtLevel.basic})  # no "at"
        with pytest.raises(StatementError, match="A value is required for bind parameter"):
            await w.execute(RENAME_ONLY, {"code": "T9"})  # which court: not said
        with pytest.raises(StatementError, match="A value is required for bind parameter"):
            await w.execute(ID_NAMED, {})
    async with db.reader() as r:
        assert (await r.execute(select(COURTS.c.code).order_by(COURTS.c.id))).scalars().all() == [
            "T0",
            "T1",
            "T2",
        ]


async def test_a_failed_flush_inside_a_savepoint_raises_its_own_error(db: Database) -> None:
    await _courts(db)
    with pytest.raises(IntegrityError, match="constraint failed"):  # not "no such savepoint"
        async with db.writer() as w:
            await w.execute(select(COURTS.c.id))
            async with savepoint(w):
                w.add(Court(code="T1", name="重复法院", level=CourtLevel.basic))
                await w.flush()


def test_utc_timestamps_are_stored_as_sqlalchemys_text_and_read_back_aware() -> None:
    dialect = sqlite.dialect()
    ours = UTCDateTime().bind_processor(dialect)
    text_of = sqlite.DATETIME().bind_processor(dialect)
    read = UTCDateTime().result_processor(dialect, None)
    assert ours is not None and text_of is not None and read is not None
    for value in (
        _at(3),
        datetime(2026, 1, 1, tzinfo=UTC),  # no microseconds: still written out
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
    ):
        stored = ours(value)
        assert stored == text_of(value.astimezone(UTC).replace(tzinfo=None))
        assert read(stored) == value and read(stored).tzinfo is UTC
    assert read("2026-03-01 08:00:00+08:00") == datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    assert read("2026-03-01").tzinfo is UTC and read("2026-03-01") == datetime(
        2026, 3, 1, tzinfo=UTC
    )
    assert ours(None) is None and read(None) is None
    with pytest.raises(ValueError, match="naive"):
        ours(datetime(2026, 1, 1))


async def test_without_the_seams_it_reads_every_statement_goes_sqlalchemys_way(
    db: Database, sqlalchemy_runs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config.db, "_seams", [])
    monkeypatch.setattr(config.db, "_COMPILED_SEAMS", (*config.db._COMPILED_SEAMS, "gone"))
    ids = await _courts(db)
    sqlalchemy_runs.clear()
    async with db.reader() as r:
        assert (await r.execute(PREPARED, {"ids": ids})).scalars().all() == ids
    assert len(sqlalchemy_runs) == 1
    assert config.db._seams == [False]
