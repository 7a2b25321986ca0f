"""A generated petition dataset for the statistics tests and scripts/bench_stats.py:
cases, contacts, visits and decided-case counts over an existing court tree, bulk-loaded
with sqlite3 into a migrated database (the schema comes from the migrations)."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from scheduler.cases.words import CaseCategory, CaseState, Channel

STAMP = "%Y-%m-%d %H:%M:%S.%f"
CLOSED_STATES = ("guided", "resolved", "terminated")
STATES = [s.value for s in CaseState]
CHANNELS = [c.value for c in Channel]
CATEGORIES = [c.value for c in CaseCategory]
_BATCH = 100_000


def ts(d: datetime) -> str:
    return d.astimezone(UTC).replace(tzinfo=None).strftime(STAMP)


def generate(
    con: sqlite3.Connection,
    court_ids: Sequence[int],
    *,
    cases: int,
    contacts: int,
    visits: int,
    start: datetime,
    days: int,
    seed: int,
    first_id: int = 1,
) -> None:
    """Insert ``cases`` cases (one petitioner each) at ``court_ids``, ``contacts`` contacts
    (the first of every case, then repeats), ``visits`` visits and a decided count for every
    court and month, all between ``start`` and ``start + days``."""
    rnd = random.Random(seed)
    span = days * 86400
    now = ts(start)
    petitioners: list[tuple[Any, ...]] = []
    petitions: list[tuple[Any, ...]] = []
    created: list[tuple[int, int, datetime]] = []
    for i in range(cases):
        pid = first_id + i
        court = court_ids[rnd.randrange(len(court_ids))]
        at = start + timedelta(seconds=rnd.randrange(span))
        state = rnd.choice(STATES)
        closed = at + timedelta(days=rnd.randrange(1, 90)) if state in CLOSED_STATES else None
        due = at + timedelta(days=rnd.randrange(5, 60)) if rnd.random() < 0.9 else None
        handler = court_ids[rnd.randrange(len(court_ids))] if rnd.random() < 0.3 else None
        petitioners.append((pid, court, f"信访人{pid}", "other", f"S{pid:09d}", "", now))
        petitions.append(
            (
                pid,
                court,
                pid,
                f"P{pid}",
                rnd.choice(CATEGORIES),
                "请求",
                "",
                ts(at),
                rnd.choice(CHANNELS),
                state,
                handler,
                ts(due) if due else None,
                ts(closed) if closed else None,
                # the deadline that ran when it closed (按期办结率 reads this one)
                ts(due) if due and closed else None,
            )
        )
        created.append((pid, court, at))
        if len(petitions) >= _BATCH:
            _flush_cases(con, petitioners, petitions)
    _flush_cases(con, petitioners, petitions)
    rows: list[tuple[Any, ...]] = []
    for i in range(contacts):
        pid, court, at = created[i] if i < cases else created[rnd.randrange(cases)]
        repeat = i >= cases
        when = at if not repeat else at + timedelta(seconds=rnd.randrange(span // 4))
        where = court if rnd.random() < 0.8 else court_ids[rnd.randrange(len(court_ids))]
        rows.append((pid, where, rnd.choice(CHANNELS), ts(when), "", 1, repeat, ts(when)))
        if len(rows) >= _BATCH:
            _flush(con, _CONTACT_SQL, rows)
    _flush(con, _CONTACT_SQL, rows)
    for i in range(visits):
        pid, court, at = created[rnd.randrange(cases)]
        booked = at + timedelta(hours=rnd.randrange(0, 24 * 10))
        begins = booked + timedelta(hours=rnd.randrange(1, 24 * 14))
        kind = "meeting" if rnd.random() < 0.05 else "reception"
        stamp = ts(begins)
        rows.append(
            (
                f"s{first_id + i:031x}",
                pid,
                court,
                court,
                "ended",
                stamp,
                ts(begins + timedelta(minutes=30)),
                ts(booked),
                ts(booked),
                kind,
            )
        )
        if len(rows) >= _BATCH:
            _flush(con, _VISIT_SQL, rows)
    _flush(con, _VISIT_SQL, rows)
    months = sorted({ts(start + timedelta(days=d))[:7] for d in range(0, days + 31, 28)})
    con.executemany(
        "INSERT OR REPLACE INTO court_case_counts (court_id, month, decided_count) VALUES (?,?,?)",
        [(c, m, rnd.randrange(50, 500)) for c in court_ids for m in months],
    )
    con.commit()


def _flush_cases(
    con: sqlite3.Connection, petitioners: list[tuple[Any, ...]], petitions: list[tuple[Any, ...]]
) -> None:
    _flush(
        con,
        "INSERT INTO petitioners (id, court_id, name, id_type, id_number, phone, created_at)"
        " VALUES (?,?,?,?,?,?,?)",
        petitioners,
    )
    _flush(con, _PETITION_SQL, petitions)


def _flush(con: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        con.executemany(sql, rows)
        rows.clear()


_PETITION_SQL = (
    "INSERT INTO petitions (id, court_id, petitioner_id, number, category, summary,"
    " judgment_ref, created_at, channel, state, handler_court_id, due_at, closed_at,"
    " closed_due_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_CONTACT_SQL = (
    "INSERT INTO case_contacts (petition_id, court_id, channel, occurred_at, summary,"
    " people_count, repeat, created_at) VALUES (?,?,?,?,?,?,?,?)"
)
_VISIT_SQL = (
    "INSERT INTO visits (id, petition_id, court_id, receiving_court_id, state, starts_at,"
    " ends_at, created_at, updated_at, kind, walk_in, cancel_reason, checkin_document_type,"
    " checkin_document_masked) VALUES (?,?,?,?,?,?,?,?,?,?,0,'','','')"
)
