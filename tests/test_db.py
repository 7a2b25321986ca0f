"""The SQLite engine: each statement is one trip to the connection's thread, and what comes
back (rows, row counts, generated ids, errors) is what the driver gives."""

from __future__ import annotations

from typing import Any

import aiosqlite
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from config.db import create_engine, create_sessionmaker
from config.settings import Settings
from scheduler.models import Court, CourtLevel


async def test_each_sqlite_statement_is_one_trip_to_the_connection_thread(
    migrated: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips: list[Any] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(fn)
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    engine = create_engine(migrated)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            await db.execute(text("SELECT 1"))  # connects and begins
            court = Court(code="T1", name="测试法院", level=CourtLevel.supreme)
            db.add(court)
            trips.clear()
            await db.flush()
            assert len(trips) == 1 and court.id is not None  # the generated id came back

            trips.clear()
            changed = await db.execute(
                update(Court).where(Court.id == court.id).values(name="改名法院")
            )
            assert len(trips) == 1 and getattr(changed, "rowcount", None) == 1

            trips.clear()
            names = (await db.execute(select(Court.name).order_by(Court.id))).scalars().all()
            assert len(trips) == 1 and names == ["改名法院"]

            with pytest.raises(IntegrityError):
                async with db.begin_nested():
                    db.add(Court(code="T1", name="另一法院", level=CourtLevel.supreme))
            assert (await db.scalar(select(Court.code).where(Court.id == court.id))) == "T1"
    finally:
        await engine.dispose()
