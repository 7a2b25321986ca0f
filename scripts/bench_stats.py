#!/usr/bin/env python3
"""Statistics benchmark: the dashboard, the XLSX export and the monthly PDF report (the
whole country, last month) over HTTP against a real `vreception serve` process (SQLite),
over a generated dataset.

Dataset (defaults): 3,500 courts in four levels, 1,000,000 cases, 3,000,000 contacts and
500,000 visits over two years (tests/statsdata.py, the generator of the statistics tests).
The last line printed is one JSON object of figures.

    .venv/bin/python scripts/bench_stats.py [--cases 1000000] [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from benchdata import (
    PASSWORD,
    bench_dir,
    insert_courts,
    load_average,
    log,
    login,
    peak_rss_mb,
    percentile,
    serve,
    ts,
)

from config.db import Database, utcnow  # benchdata put the repository root on sys.path
from config.settings import Settings
from scheduler.accounts import hash_password
from scheduler.stats import figures
from scheduler.stats import report as monthly
from tests.statsdata import generate
from web.cli import migrate

TZ = ZoneInfo("Asia/Shanghai")


def court_tree(con: sqlite3.Connection, n_courts: int, seed: int) -> dict[str, Any]:
    """The national court tree (scripts/benchdata.py), an admin and a leader of one
    intermediate court."""
    created = ts(datetime.now(UTC) - timedelta(days=800))
    tree = insert_courts(con, n_courts, random.Random(seed), created)
    pw = hash_password(PASSWORD)
    con.executemany(
        "INSERT INTO users (id, username, display_name, role, court_id, password_hash, active,"
        " created_at, password_changed_at) VALUES (?,?,?,?,?,?,?,?,?)",
        [
            (1, "admin", "管理员", "admin", None, pw, 1, created, created),
            (2, "leader", "院领导", "leader", tree.mids[0], pw, 1, created, created),
        ],
    )
    con.commit()
    return {"courts": [1, *tree.highs, *tree.mids, *tree.basics]}


async def timed_gets(
    url: str, username: str, path: str, params: dict[str, str], n: int
) -> list[float]:
    jar = aiohttp.CookieJar(unsafe=True)
    out = []
    async with aiohttp.ClientSession(base_url=url, cookie_jar=jar) as http:
        await login(http, username)
        for _ in range(n):
            t0 = time.perf_counter()
            async with http.get(path, params=params) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            out.append(time.perf_counter() - t0)
    return out


async def refresh_stale(settings: Settings, months: Sequence[str]) -> int:
    """Recompute those of ``months`` past their allowance (stats_refresh_seconds for the
    current and the previous month), as housekeeping does; returns how many."""
    database = Database(settings)
    try:
        async with database.reader() as db:
            max_age = timedelta(seconds=settings.stats_refresh_seconds)
            stale = await figures.stale_months(db, months, utcnow(), max_age, TZ)
        return await figures.refresh_months(database, stale, TZ)
    finally:
        await database.dispose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(args.data_dir)  # see main: bench_dir
    settings = Settings(data_dir=data_dir)
    db_path = data_dir / "vreception.db"
    t0 = time.perf_counter()
    fresh = not db_path.exists()
    await asyncio.to_thread(migrate, settings)  # a dataset of an older schema is brought up
    if fresh:
        con = sqlite3.connect(db_path)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=OFF")
        world = court_tree(con, args.courts, args.seed)
        start = datetime.now(UTC) - timedelta(days=730)
        generate(
            con,
            world["courts"],
            cases=args.cases,
            contacts=args.contacts,
            visits=args.visits,
            start=start,
            days=725,
            seed=args.seed,
        )
        con.execute("ANALYZE")
        con.close()
    con = sqlite3.connect(db_path)
    mid = con.execute("SELECT court_id FROM users WHERE username = 'leader'").fetchone()[0]
    con.close()
    log(f"dataset ready in {time.perf_counter() - t0:.0f} s ({data_dir})")
    now = datetime.now(UTC).astimezone(TZ)
    last = f"{now.year:04d}-{now.month:02d}"
    y, m = divmod(now.year * 12 + now.month - 1 - 11, 12)
    period = {"from": f"{y:04d}-{m + 1:02d}", "to": last}
    py, pm = divmod(now.year * 12 + now.month - 2, 12)
    last_month = f"{py:04d}-{pm + 1:02d}"  # the last whole month
    # the months the monthly report of the last month reads (its trend reaches back a year)
    report_months = figures.parse_period(
        figures.shift_month(last_month, 1 - monthly.TREND_MONTHS), last_month, TZ
    ).months
    # the monthly store the dashboard and the report read, as housekeeping keeps it: the
    # months it lacks (or holds over a day old), then the current month again, timed on
    # its own
    database = Database(settings)
    try:
        months = figures.parse_period(period["from"], period["to"], TZ).months
        async with database.reader() as db:
            missing = await figures.stale_months(
                db, {*months, *report_months}, datetime.now(UTC), timedelta(days=1), TZ
            )
        t0 = time.perf_counter()
        await figures.refresh_months(database, missing, TZ)
        log(f"{len(missing)} months stored in {time.perf_counter() - t0:.1f} s")
        # what housekeeping does every stats_refresh_seconds: the current and the previous
        # month (recomputed here whatever their age; the figure is the time per month)
        t0 = time.perf_counter()
        recent = await figures.refresh_due(database, TZ, timedelta(0))
        refresh_s = (time.perf_counter() - t0) / max(recent, 1)
    finally:
        await database.dispose()
    log(f"{recent} recent months recomputed, {refresh_s:.1f} s each")
    async with serve(data_dir) as server:
        country = await timed_gets(server.url, "admin", "/api/v1/stats", period, args.requests)
        log(f"country: {[round(x * 1000) for x in country]} ms")
        court = await timed_gets(server.url, "leader", "/api/v1/stats", period, args.requests)
        log(f"court {mid}: {[round(x * 1000) for x in court]} ms")
        xlsx = await timed_gets(
            server.url, "admin", "/api/v1/stats/export", {**period, "format": "xlsx"}, 1
        )
        # the recent months past their allowance by now: brought up to date first, as
        # housekeeping does in the background, so that the report itself is timed
        log(f"{await refresh_stale(settings, report_months)} months refreshed")
        report = await timed_gets(
            server.url, "admin", "/api/v1/stats/report", {"month": last_month}, 1
        )
        log(f"monthly report {last_month}: {report[0]:.1f} s")
        rss = peak_rss_mb(server.pid)
    return {
        "cases": args.cases,
        "contacts": args.contacts,
        "visits": args.visits,
        "courts": args.courts,
        "period": period,
        "dashboard_country_p99_ms": round(percentile(country, 99) * 1000, 1),
        "dashboard_court_p99_ms": round(percentile(court, 99) * 1000, 1),
        "xlsx_export_s": round(xlsx[0], 2),
        "stats_refresh_month_s": round(refresh_s, 2),
        "monthly_report_s": round(report[0], 2),
        "report_month": last_month,
        "max_rss_mb": round(rss, 1),
        "load_average": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--courts", type=int, default=3500)
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=3_000_000)
    parser.add_argument("--visits", type=int, default=500_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--data-dir", help="reuse a dataset generated before")
    args = parser.parse_args()
    with bench_dir(args.data_dir, "vr-bench-stats-") as data_dir:
        args.data_dir = str(data_dir)
        result = asyncio.run(run(args))
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
