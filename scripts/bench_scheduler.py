#!/usr/bin/env python3
"""Scheduler benchmark: a realistic dataset, then booking, free-slot search and day views
over HTTP with concurrent clients against a real `vreception serve` process (SQLite).

Dataset (defaults): 3,500 courts in four levels, 10,000 judges with weekly reception hours,
one reception room and one operator per basic court, ~1,000,000 past visits over a year.
The last line printed is one JSON object of figures.

    .venv/bin/python scripts/bench_scheduler.py [--visits 1000000] [--clients 8] [--seconds 30]

With ``--cache-dir DIR`` the generated dataset (a pristine copy of the database and the
figures the clients need) is kept in DIR, keyed by its size and seed, and copied for every
later run instead of generated again; migrations newer than the kept copy are applied to it
first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from benchdata import (
    PASSWORD,
    bench_dir,
    insert_courts,
    log,
    peak_rss_mb,
    percentile,
    serve,
    settle_heap,
    ts,
)

from config.settings import Settings  # benchdata put the repository root on sys.path
from scheduler.accounts import hash_password
from web.cli import migrate

TZ = ZoneInfo("Asia/Shanghai")


def generate(
    db_path: Path, n_courts: int, n_judges: int, n_visits: int, seed: int
) -> dict[str, Any]:
    """Bulk-load the dataset with sqlite3 (the schema comes from the migrations)."""
    rnd = random.Random(seed)
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    now = datetime.now(UTC)
    created = ts(now - timedelta(days=400))
    tree = insert_courts(con, n_courts, rnd, created)
    highs, mids, basics, parent_of = tree.highs, tree.mids, tree.basics, tree.parent_of
    pw = hash_password(PASSWORD)
    users: list[tuple[Any, ...]] = []
    uid = 0
    judges_of: dict[int, list[int]] = {}
    receiving = highs + mids
    for i in range(n_judges):
        uid += 1
        # intermediate courts receive most visits: put most judges there
        court = rnd.choice(mids) if i % 10 else rnd.choice(highs)
        judges_of.setdefault(court, []).append(uid)
        users.append((uid, f"judge{uid}", f"法官{uid}", "judge", court, pw, 1, created, created))
    operators = {}
    for c in basics:
        uid += 1
        operators[c] = f"op{uid}"
        users.append((uid, f"op{uid}", f"操作员{uid}", "operator", c, pw, 1, created, created))
    con.executemany(
        "INSERT INTO users (id, username, display_name, role, court_id, password_hash, active,"
        " created_at, password_changed_at) VALUES (?,?,?,?,?,?,?,?,?)",
        users,
    )
    templates = []
    for court, ids in judges_of.items():
        for j in ids:
            for wd in range(5):
                templates.append((j, court, wd, 9 * 60, 12 * 60, 30, created))
                templates.append((j, court, wd, 14 * 60, 17 * 60, 30, created))
    con.executemany(
        "INSERT INTO reception_templates (judge_id, court_id, weekday, start_minute, end_minute,"
        " slot_minutes, created_at) VALUES (?,?,?,?,?,?,?)",
        templates,
    )
    rooms = [(c, c, "第一接访室", "", 1, created) for c in basics]
    con.executemany(
        "INSERT INTO reception_rooms (id, court_id, name, location, active, created_at)"
        " VALUES (?,?,?,?,?,?)",
        rooms,
    )
    con.executemany(
        "INSERT INTO room_hours (room_id, weekday, start_minute, end_minute) VALUES (?,?,?,?)",
        [(c, wd, 8 * 60 + 30, 17 * 60 + 30) for c in basics for wd in range(5)],
    )
    n_petitioners = max(len(basics) * 20, n_visits // 5)
    petitioners = []
    petitions = []
    petitions_of: dict[int, list[int]] = {}
    for pid in range(1, n_petitioners + 1):
        court = basics[pid % len(basics)]
        petitioners.append((pid, court, f"信访人{pid}", "other", f"B{pid:09d}", "", created))
        petitions.append((pid, court, pid, f"P{pid}", "执行", "请求执行", "", created))
        petitions_of.setdefault(court, []).append(pid)
    con.executemany(
        "INSERT INTO petitioners (id, court_id, name, id_type, id_number, phone,"
        " created_at) VALUES (?,?,?,?,?,?,?)",
        petitioners,
    )
    con.executemany(
        "INSERT INTO petitions (id, court_id, petitioner_id, number, category, summary,"
        " judgment_ref, created_at) VALUES (?,?,?,?,?,?,?,?)",
        petitions,
    )
    log(
        f"{tree.rows} courts, {n_judges} judges, {len(templates)} weekly hours, "
        f"{n_petitioners} petitions"
    )
    day0 = (now - timedelta(days=365)).astimezone(TZ).date()
    batch: list[tuple[Any, ...]] = []
    for i in range(n_visits):
        pid = rnd.randint(1, n_petitioners)
        court = basics[pid % len(basics)]
        recv = parent_of[court]
        judge = rnd.choice(judges_of.get(recv) or judges_of[rnd.choice(list(judges_of))])
        day = day0 + timedelta(days=rnd.randrange(364))
        start = datetime.combine(day, datetime.min.time(), tzinfo=TZ) + timedelta(
            minutes=9 * 60 + 30 * rnd.randrange(12)
        )
        stamp = ts(start)
        batch.append(
            (
                f"{i:032x}",
                pid,
                court,
                recv,
                judge,
                court,
                "archived",
                stamp,
                ts(start + timedelta(minutes=30)),
                stamp,
                stamp,
                0,
                "",
                "",
                "",
            )
        )
        if len(batch) == 100_000:
            con.executemany(_VISIT_SQL, batch)
            batch.clear()
            log(f"visits: {i + 1}")
    if batch:
        con.executemany(_VISIT_SQL, batch)
    con.commit()
    con.execute("ANALYZE")
    con.close()
    return {
        "basics": basics,
        "parent_of": parent_of,
        "operators": operators,
        "petitions_of": petitions_of,
        "receiving": receiving,
    }


_VISIT_SQL = (
    "INSERT INTO visits (id, petition_id, court_id, receiving_court_id, judge_id, room_id, state,"
    " starts_at, ends_at, created_at, updated_at, walk_in, cancel_reason, checkin_document_type,"
    " checkin_document_masked) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _world_to_json(world: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {str(k): v for k, v in value.items()} if isinstance(value, dict) else value
        for key, value in world.items()
    }


def _world_from_json(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {int(k): v for k, v in value.items()} if isinstance(value, dict) else value
        for key, value in raw.items()
    }


def prepare(args: argparse.Namespace, settings: Settings, db_path: Path) -> dict[str, Any]:
    """Build the dataset at db_path: copied from the cache if there is one, else generated."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    cached: Path | None = None
    if args.cache_dir:
        key = f"c{args.courts}-j{args.judges}-v{args.visits}-s{args.seed}"
        cached = Path(args.cache_dir) / key
        if (cached / "world.json").exists():
            # newer migrations go into the kept copy itself, once
            migrate(Settings(data_dir=cached))
            with sqlite3.connect(cached / "vreception.db") as con:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the copy is the file alone
            db_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached / "vreception.db", db_path)
            log(f"dataset copied from {cached}")
            return _world_from_json(json.loads((cached / "world.json").read_text()))
    migrate(settings)
    world = generate(db_path, args.courts, args.judges, args.visits, args.seed)
    if cached is not None:
        cached.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(db_path, cached / "vreception.db")
        (cached / "world.json").write_text(json.dumps(_world_to_json(world)))
        log(f"dataset kept in {cached}")
    return world


def next_weekday(d: date) -> date:
    while d.weekday() > 4:
        d += timedelta(days=1)
    return d


async def client_loop(
    url: str,
    username: str,
    court: int,
    room: int,
    receiving: int,
    petitions: list[int],
    deadline: float,
    stats: dict[str, list[float]],
    counts: dict[str, int],
    rnd: random.Random,
) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=url, cookie_jar=jar) as http:
        r = await http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        csrf = (await r.json())["csrf_token"]
        headers = {"X-CSRF-Token": csrf}
        first = next_weekday(datetime.now(TZ).date() + timedelta(days=1 + rnd.randrange(20)))
        while time.monotonic() < deadline:
            t = time.perf_counter()
            r = await http.get(
                "/api/v1/free-slots",
                params={
                    "room_id": room,
                    "receiving_court_id": receiving,
                    "first": first.isoformat(),
                    "days": 14,
                    "limit": 20,
                },
            )
            slots = await r.json()
            stats["free_slots"].append((time.perf_counter() - t) * 1000)
            counts["requests"] += 1
            if r.status != 200 or not slots:
                counts["free_slots_empty"] += 1
                first = next_weekday(first + timedelta(days=14))
                continue
            slot = rnd.choice(slots[:5])
            t = time.perf_counter()
            r = await http.post(
                "/api/v1/visits",
                headers=headers,
                json={
                    "petition_id": rnd.choice(petitions),
                    "receiving_court_id": receiving,
                    "judge_id": slot["judge_id"],
                    "room_id": room,
                    "starts_at": slot["starts_at"],
                    "ends_at": slot["ends_at"],
                },
            )
            await r.read()
            stats["book"].append((time.perf_counter() - t) * 1000)
            counts["requests"] += 1
            counts[f"book_{r.status}"] += 1
            t = time.perf_counter()
            r = await http.get("/api/v1/visits", params={"day": slot["starts_at"][:10]})
            await r.read()
            stats["day_view"].append((time.perf_counter() - t) * 1000)
            counts["requests"] += 1


async def contention(
    url: str, username: str, room: int, receiving: int, petitions: list[int], n: int
) -> dict[str, int]:
    """n clients race for one slot: exactly one may win."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=url, cookie_jar=jar) as http:
        r = await http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        headers = {"X-CSRF-Token": (await r.json())["csrf_token"]}
        first = next_weekday(datetime.now(TZ).date() + timedelta(days=40))
        r = await http.get(
            "/api/v1/free-slots",
            params={
                "room_id": room,
                "receiving_court_id": receiving,
                "first": first.isoformat(),
                "days": 14,
                "limit": 1,
            },
        )
        slot = (await r.json())[0]

        async def one(pid: int) -> int:
            resp = await http.post(
                "/api/v1/visits",
                headers=headers,
                json={
                    "petition_id": pid,
                    "receiving_court_id": receiving,
                    "judge_id": slot["judge_id"],
                    "room_id": room,
                    "starts_at": slot["starts_at"],
                    "ends_at": slot["ends_at"],
                },
            )
            await resp.read()
            return resp.status

        statuses = await asyncio.gather(*(one(p) for p in petitions[:n]))
    return {str(s): statuses.count(s) for s in sorted(set(statuses))}


def double_bookings(db_path: Path) -> int:
    con = sqlite3.connect(db_path)
    active = "('scheduled','checked_in','in_lobby','in_progress')"
    total = 0
    for column in ("judge_id", "room_id"):
        total += con.execute(
            f"SELECT count(*) FROM visits a JOIN visits b ON a.{column} = b.{column} "
            f"AND a.id < b.id AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at "
            f"WHERE a.state IN {active} AND b.state IN {active}"
        ).fetchone()[0]
    total += con.execute(
        "SELECT count(*) FROM visits a JOIN petitions pa ON pa.id = a.petition_id "
        "JOIN visits b ON a.id < b.id AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at "
        f"JOIN petitions pb ON pb.id = b.petition_id AND pb.petitioner_id = pa.petitioner_id "
        f"WHERE a.state IN {active} AND b.state IN {active}"
    ).fetchone()[0]
    con.close()
    return int(total)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(args.data_dir)  # see main: bench_dir
    settings = Settings(data_dir=data_dir)
    db_path = data_dir / "vreception.db"
    t0 = time.perf_counter()
    world = await asyncio.to_thread(prepare, args, settings, db_path)
    log(f"dataset ready in {time.perf_counter() - t0:.0f} s")
    async with serve(data_dir) as server:
        url = server.url
        rnd = random.Random(args.seed)
        basics = rnd.sample(world["basics"], args.clients + 1)
        stats: dict[str, list[float]] = {"free_slots": [], "book": [], "day_view": []}
        counts: defaultdict[str, int] = defaultdict(int)
        log(f"server {server.pid} ready: {args.clients} clients for {args.seconds:.0f} s")
        settle_heap()
        started = time.monotonic()
        cpu_before = cpu_seconds(server.pid)
        deadline = started + args.seconds
        await asyncio.gather(
            *(
                client_loop(
                    url,
                    world["operators"][c],
                    c,
                    c,
                    world["parent_of"][c],
                    world["petitions_of"][c],
                    deadline,
                    stats,
                    counts,
                    random.Random(args.seed + i),
                )
                for i, c in enumerate(basics[:-1])
            )
        )
        elapsed = time.monotonic() - started
        server_cpu = cpu_seconds(server.pid) - cpu_before
        race_court = basics[-1]
        race = await contention(
            url,
            world["operators"][race_court],
            race_court,
            world["parent_of"][race_court],
            world["petitions_of"][race_court],
            args.race,
        )
        rss = peak_rss_mb(server.pid)
    return {
        "benchmark": "scheduler",
        "database": "sqlite",
        "courts": args.courts,
        "judges": args.judges,
        "past_visits": args.visits,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "book_p50_ms": round(percentile(stats["book"], 50), 2),
        "book_p99_ms": round(percentile(stats["book"], 99), 2),
        "free_slots_p50_ms": round(percentile(stats["free_slots"], 50), 2),
        "free_slots_p99_ms": round(percentile(stats["free_slots"], 99), 2),
        "day_view_p50_ms": round(percentile(stats["day_view"], 50), 2),
        "day_view_p99_ms": round(percentile(stats["day_view"], 99), 2),
        "requests_per_s": round(counts["requests"] / elapsed, 1),
        "bookings": counts["book_201"],
        "booking_conflicts_409": counts["book_409"],
        "booking_refused_other": sum(
            v
            for k, v in counts.items()
            if k.startswith("book_") and k not in ("book_201", "book_409")
        ),
        "race": race,
        "double_bookings": double_bookings(db_path),
        "max_rss_mb": round(rss, 1),
        # the server's own CPU per request: comparable on a machine shared with other work
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(1, counts["requests"]), 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "mean_book_ms": round(statistics.fmean(stats["book"]), 2) if stats["book"] else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--courts", type=int, default=3500)
    parser.add_argument("--judges", type=int, default=10_000)
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--race", type=int, default=20, help="clients racing for one slot")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", help="where to build the database (default: a temp dir)")
    parser.add_argument(
        "--cache-dir", help="keep the generated dataset here and reuse it on later runs"
    )
    args = parser.parse_args()
    with bench_dir(args.data_dir, "vr-bench-") as data_dir:
        args.data_dir = str(data_dir)
        result = asyncio.run(run(args))
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
