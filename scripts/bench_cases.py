#!/usr/bin/env python3
"""Petition case benchmark: a national dataset of cases, then registration, the supervising
court's board and a case's timeline over HTTP with concurrent clients against a real
`vreception serve` process (SQLite), and the housekeeping job's deadline scan in-process.

Dataset (defaults): the 3,500-court tree, a petition officer at every court and a leader at
every high court, 1,000,000 cases with 3,000,000 contacts (1 to 7 each), every case's timeline
(registration, each contact, triage, assignment, feedback, closing, alerts already sent),
assignments to lower courts with feedback deadlines, deadlines spread around today so that
some cases are overdue and a day's worth of reminders and alerts is due. The last line
printed is one JSON object of figures.

    .venv/bin/python scripts/bench_cases.py [--cases 1000000] [--clients 4] [--seconds 30]
        [--data-dir DIR]   (reuses the dataset in DIR when it was built with the same sizes)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import shutil
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from bench_scheduler import cpu_seconds
from benchdata import (
    PASSWORD,
    CourtTree,
    bench_dir,
    insert_courts,
    load_average,
    log,
    login,
    peak_rss_mb,
    percentile,
    serve,
    settle_heap,
    ts,
)

from config.db import create_engine, create_sessionmaker  # benchdata put the root on sys.path
from config.settings import Settings
from scheduler.accounts import hash_password
from scheduler.cases.service import scan_deadlines
from scheduler.cases.words import CHANNEL_BITS, Channel
from web.cli import migrate

MANIFEST = "bench-cases.json"
CATEGORIES = (
    "criminal_appeal",
    "civil_retrial",
    "admin_retrial",
    "enforcement",
    "state_compensation",
    "other",
)
CHANNELS = tuple(c.value for c in Channel)
# state → (share of cases, node); assigned and reported cases are handled below their
# registering court, which supervises them
STATES = {
    "registered": (8, "triage"),
    "guided": (10, "done"),
    "handling": (20, "handling"),
    "assigned": (25, "feedback"),
    "reported": (5, "review"),
    "resolved": (20, "followup"),
    "terminated": (12, "done"),
}
NODE_DAYS = {"triage": (3, 1), "handling": (60, 7), "feedback": (30, 5), "review": (7, 2)}
NODE_DAYS["followup"] = (30, 5)

PETITION_SQL = (
    "INSERT INTO petitions (id, court_id, petitioner_id, number, category, summary, judgment_ref,"
    " created_by, created_at, channel, original_court, people_count, state, track, procedure,"
    " mode, handler_court_id, responsible_id, supervising_court_id, flagged, leader_id, node,"
    " due_at, reminded_at, overdue_at, contact_count, channels, closed_at, updated_at)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
CONTACT_SQL = (
    "INSERT INTO case_contacts (petition_id, court_id, channel, occurred_at, summary,"
    " people_count, repeat, visit_id, registered_by, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
EVENT_SQL = (
    "INSERT INTO case_events (petition_id, at, kind, actor_id, actor_name, court_id, text,"
    " detail) VALUES (?,?,?,?,?,?,?,?)"
)
ASSIGNMENT_SQL = (
    "INSERT INTO case_assignments (petition_id, from_court_id, to_court_id, deadline, state,"
    " instructions, result, assigned_by, assigned_at, reported_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
)


def identity_key(number: str) -> str:
    # as scheduler.cases.service.identity_key(IdType.passport, number)
    return hashlib.sha256(f"passport|{number}".encode()).hexdigest()


def generate(db_path: Path, args: argparse.Namespace, now: datetime) -> dict[str, Any]:
    """Bulk-load the dataset with sqlite3 (the schema comes from the migrations)."""
    rnd = random.Random(args.seed)
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-1000000")
    created = ts(now - timedelta(days=800))
    tree = insert_courts(con, args.courts, rnd, created)
    pw = hash_password(PASSWORD)
    officer: dict[int, int] = {}
    users: list[tuple[Any, ...]] = []
    for court in [1, *tree.highs, *tree.mids, *tree.basics]:
        uid = len(users) + 1
        officer[court] = uid
        users.append((uid, f"po{court}", f"信访专员{court}", "petition_officer", court))
    for court in tree.highs:
        uid = len(users) + 1
        users.append((uid, f"ld{court}", f"院领导{court}", "leader", court))
    con.executemany(
        "INSERT INTO users (id, username, display_name, role, court_id, password_hash, active,"
        " created_at, password_changed_at) VALUES (?,?,?,?,?,?,1,?,?)",
        [(*u, pw, created, created) for u in users],
    )
    children: dict[int, list[int]] = defaultdict(list)
    for child, parent in tree.parent_of.items():
        children[parent].append(child)
    states = list(STATES)
    weights = [STATES[s][0] for s in states]
    # contacts per case: 1 each, and the rest spread at random (at most 7 per case)
    n = args.cases
    extra = [0] * (n + 1)
    spread = max(0, round(n * (args.contacts_per_case - 1)))
    placed = 0
    while placed < spread:
        i = rnd.randint(1, n)
        if extra[i] < 6:
            extra[i] += 1
            placed += 1
    petitioners: list[tuple[Any, ...]] = []
    petitions: list[tuple[Any, ...]] = []
    refs: list[tuple[Any, ...]] = []
    contacts: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    assignments: list[tuple[Any, ...]] = []
    counts: defaultdict[str, int] = defaultdict(int)
    registering = tree.basics * 7 + tree.mids * 8 + tree.highs * 10  # mostly basic courts
    span = 720 * 86400

    def flush() -> None:
        con.executemany(
            "INSERT INTO petitioners (id, court_id, name, id_type, id_number, phone, created_by,"
            " created_at) VALUES (?,?,?,?,?,?,?,?)",
            petitioners,
        )
        con.executemany(PETITION_SQL, petitions)
        con.executemany(
            "INSERT INTO case_refs (petition_id, number, identity_key) VALUES (?,?,?)", refs
        )
        con.executemany(CONTACT_SQL, contacts)
        con.executemany(ASSIGNMENT_SQL, assignments)
        con.executemany(EVENT_SQL, events)
        counts["contacts"] += len(contacts)
        counts["events"] += len(events)
        counts["assignments"] += len(assignments)
        for rows in (petitioners, petitions, refs, contacts, events, assignments):
            rows.clear()

    for pid in range(1, n + 1):
        state = rnd.choices(states, weights)[0]
        node = STATES[state][1]
        court = rnd.choice(registering)
        handler, supervising = court, None
        if state in ("assigned", "reported"):
            if not children.get(court):  # a basic court registered it: its parent assigns
                court = tree.parent_of[court]
            handler, supervising = rnd.choice(children[court]), court
        counts[state] += 1
        po = officer[court]
        reg_at = now - timedelta(seconds=rnd.randrange(span))
        id_number = f"E{pid:09d}"
        number = f"（2024）B{court}信{pid:07d}"
        case_no = f"(2023)B{court}执{pid}号"
        category = rnd.choice(CATEGORIES)
        channel = rnd.choice(CHANNELS)
        k = 1 + extra[pid]
        # when the case entered its current node, and that node's deadline
        due = reminded = overdue = closed = None
        entered = reg_at
        if node in NODE_DAYS:
            days, warn = NODE_DAYS[node]
            # deadlines spread from 90 days ago to 60 days ahead (open cases)
            due_dt = now + timedelta(seconds=rnd.randrange(-90 * 86400, 60 * 86400))
            entered = max(reg_at, due_dt - timedelta(days=days))
            due_dt = entered + timedelta(days=days)
            due = ts(due_dt)
            # alerts of earlier days were sent; today's are left to the scan
            if due_dt < now - timedelta(days=1):
                overdue = ts(due_dt + timedelta(hours=rnd.randrange(1, 24)))
                reminded = ts(due_dt - timedelta(days=warn))
            elif due_dt - timedelta(days=warn) < now - timedelta(days=1):
                reminded = ts(due_dt - timedelta(days=warn) + timedelta(hours=1))
        if state in ("guided", "terminated", "resolved"):
            closed = ts(entered)
        at = ts(entered)
        track = "petition"
        if state == "guided":
            track = "litigation"
        elif node == "triage":
            track = "undecided"
        petitioners.append((pid, court, f"信访人{pid}", "passport", id_number, "", po, ts(reg_at)))
        chs = [channel] + [rnd.choice(CHANNELS) for _ in range(k - 1)]  # of each contact
        petitions.append(
            (
                pid,
                court,
                pid,
                number,
                category,
                "请求依法处理原案执行问题",
                case_no,
                po,
                ts(reg_at),
                channel,
                f"第{court}人民法院",
                1,
                state,
                track,
                "retrial" if state == "guided" else "",
                None if node == "triage" or state == "guided" else "careful",
                handler,
                officer[handler] if state not in ("registered", "assigned") else None,
                supervising,
                0,
                None,
                node if not (state == "resolved" and rnd.random() < 0.5) else "done",
                due,
                reminded,
                overdue,
                k,
                sum({CHANNEL_BITS[Channel(c)] for c in chs}),
                closed,
                at,
            )
        )
        refs.append((pid, case_no, identity_key(id_number)))
        events.append(
            (pid, ts(reg_at), "registered", po, f"po{court}", court, f"登记信访件 {number}", "{}")
        )
        when = reg_at
        for j in range(k):
            if j:
                when = when + (entered - reg_at) / k
            stamp = ts(when)
            ch = chs[j]
            contacts.append((pid, court, ch, stamp, "来信反映执行问题", 1, j > 0, None, po, stamp))
            events.append((pid, stamp, "contact", po, f"po{court}", court, ch, "{}"))
        if node != "triage":
            events.append((pid, at, "triaged", po, f"po{court}", court, "分流", "{}"))
        if supervising is not None:
            assert due is not None
            reported = ts(entered) if state == "reported" else None
            assignments.append(
                (
                    pid,
                    supervising,
                    handler,
                    due,
                    "reported" if reported else "open",
                    "请依法处理并限期反馈",
                    "已处理" if reported else "",
                    po,
                    at,
                    reported,
                )
            )
            events.append((pid, at, "assigned", po, f"po{court}", court, "交办", "{}"))
            if reported:
                events.append((pid, at, "reported", officer[handler], "", handler, "反馈", "{}"))
        if state in ("guided", "resolved", "terminated"):
            kind = {"guided": "triaged", "resolved": "resolved", "terminated": "terminated"}
            events.append((pid, at, kind[state], po, f"po{court}", court, "办结", "{}"))
        if overdue is not None:
            events.append((pid, overdue, "overdue", None, "系统", handler, "已超期", "{}"))
        if len(petitions) == 50_000:
            flush()
            log(f"cases: {pid}")
    flush()
    con.commit()
    log("analyze")
    con.execute("ANALYZE")
    con.close()
    return {
        "courts": tree.rows,
        "users": len(users),
        "cases": n,
        **counts,
        "tree": {"highs": tree.highs, "parent_of": tree.parent_of},
    }


def pick_high_court(tree: CourtTree, around: int = 150) -> tuple[int, int]:
    """The high court whose number of courts below is nearest ``around``."""
    sizes = {h: len(tree.below(h)) for h in tree.highs}
    high = min(sizes, key=lambda h: (abs(sizes[h] - around), h))
    return high, sizes[high]


async def register_loop(
    url: str,
    court: int,
    deadline: float,
    stats: dict[str, list[float]],
    counts: dict[str, int],
    rnd: random.Random,
    case_ids: list[int],
) -> None:
    """A clerk registering letters (a new matter each time, some repeats) and opening cases
    of their court."""
    async with aiohttp.ClientSession(
        base_url=url, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as http:
        headers = await login(http, f"po{court}")
        serial = 0
        while time.monotonic() < deadline:
            serial += 1
            number = f"BN{court}-{rnd.randrange(10**9)}-{serial}"
            body = {
                "channel": rnd.choice(CHANNELS),
                "petitioners": [
                    {"name": "王五", "id_type": "passport", "id_number": number, "phone": ""}
                ],
                "people_count": 1,
                "category": rnd.choice(CATEGORIES),
                "summary": "请求依法处理原案执行问题",
                "original_numbers": [f"(2024)B{court}执{serial}号"],
                "original_court": f"第{court}人民法院",
            }
            t = time.perf_counter()
            r = await http.post("/api/v1/cases", json=body, headers=headers)
            answer = await r.json()
            stats["register"].append((time.perf_counter() - t) * 1000)
            counts["requests"] += 1
            counts[f"register_{r.status}"] += 1
            if r.status == 201:
                case_ids.append(int(answer["case"]["id"]))
            target = rnd.choice(case_ids) if case_ids else None
            if target is None:
                continue
            t = time.perf_counter()
            r = await http.get(f"/api/v1/cases/{target}")
            await r.read()
            stats["timeline"].append((time.perf_counter() - t) * 1000)
            counts["requests"] += 1
            counts[f"timeline_{r.status}"] += 1


async def board_loop(
    url: str,
    username: str,
    deadline: float,
    stats: dict[str, list[float]],
    counts: dict[str, int],
    sizes: dict[str, int],
) -> None:
    """The supervising court's officer watching the board."""
    async with aiohttp.ClientSession(
        base_url=url, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as http:
        await login(http, username)
        while time.monotonic() < deadline:
            t = time.perf_counter()
            r = await http.get("/api/v1/cases/board")
            body = await r.json()
            stats["board"].append((time.perf_counter() - t) * 1000)
            counts["requests"] += 1
            counts[f"board_{r.status}"] += 1
            if r.status == 200:
                sizes["board_courts"] = len(body["courts"])
                sizes["board_cases"] = sum(len(c["cases"]) for c in body["courts"])


async def timeline_loop(
    url: str,
    username: str,
    case_ids: list[int],
    deadline: float,
    stats: dict[str, list[float]],
    counts: dict[str, int],
    rnd: random.Random,
) -> None:
    """The supervising court opening the cases below it."""
    async with aiohttp.ClientSession(
        base_url=url, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as http:
        await login(http, username)
        while time.monotonic() < deadline:
            t = time.perf_counter()
            r = await http.get(f"/api/v1/cases/{rnd.choice(case_ids)}")
            await r.read()
            stats["timeline"].append((time.perf_counter() - t) * 1000)
            counts["requests"] += 1
            counts[f"timeline_{r.status}"] += 1


def cases_of(db_path: Path, courts: list[int], limit: int, rnd: random.Random) -> list[int]:
    con = sqlite3.connect(db_path)
    marks = ",".join("?" * len(courts))
    ids = [
        int(r[0])
        for r in con.execute(
            f"SELECT id FROM petitions WHERE handler_court_id IN ({marks})", courts
        )
    ]
    con.close()
    return rnd.sample(ids, min(limit, len(ids)))


async def overdue_scan(settings: Settings, now: datetime) -> dict[str, Any]:
    """The housekeeping job's deadline scan, batch after batch, until nothing is left."""
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    totals: defaultdict[str, int] = defaultdict(int)
    batches = 0
    started = time.perf_counter()
    try:
        while True:
            async with sessions() as db, db.begin():
                got = await scan_deadlines(db, settings, now)
            batches += 1
            totals["reminded"] += got.reminded
            totals["overdue"] += got.overdue
            totals["escalated"] += got.escalated
            if not (got.reminded or got.overdue):
                break
    finally:
        await engine.dispose()
    return {"seconds": time.perf_counter() - started, "batches": batches, **totals}


@dataclass
class Dataset:
    settings: Settings
    db_path: Path
    world: dict[str, Any]
    now: datetime  # the generation time the deadlines are spread around


def prepare(args: argparse.Namespace) -> Dataset:
    """Build the dataset, or reuse the one in --data-dir built with the same sizes; each run
    starts from the dataset as generated (a run registers cases)."""
    data_dir = Path(args.data_dir)  # see main: bench_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir)
    db_path = data_dir / "vreception.db"
    pristine = data_dir / "pristine.db"
    manifest = data_dir / MANIFEST
    wanted = {
        "cases": args.cases,
        "contacts_per_case": args.contacts_per_case,
        "courts": args.courts,
        "seed": args.seed,
    }
    known = json.loads(manifest.read_text()) if manifest.exists() else {}
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    if known.get("args") == wanted and pristine.exists():
        log(f"reusing the dataset in {data_dir}")
        # a dataset built by an older version is upgraded as a court's database would be:
        # by the migrations (once; the pristine copy keeps the upgraded schema)
        for suffix in ("-wal", "-shm"):
            Path(f"{pristine}{suffix}").unlink(missing_ok=True)
        migrate(Settings(data_dir=data_dir, database_url=f"sqlite+aiosqlite:///{pristine}"))
        shutil.copyfile(pristine, db_path)
        return Dataset(settings, db_path, known["world"], datetime.fromisoformat(known["now"]))
    for stale in (db_path, pristine, manifest):
        stale.unlink(missing_ok=True)
    t0 = time.perf_counter()
    migrate(settings)
    now = datetime.now(UTC)
    world = generate(db_path, args, now)
    shutil.copyfile(db_path, pristine)
    manifest.write_text(
        json.dumps({"args": wanted, "world": world, "now": now.isoformat()}, ensure_ascii=False)
    )
    log(f"dataset ready in {time.perf_counter() - t0:.0f} s")
    return Dataset(settings, db_path, world, now)


async def run(args: argparse.Namespace, data: Dataset) -> dict[str, Any]:
    world, db_path = data.world, data.db_path
    tree = CourtTree(highs=world["tree"]["highs"], mids=[], basics=[])
    tree.parent_of = {int(k): v for k, v in world["tree"]["parent_of"].items()}
    high, n_below = pick_high_court(tree)
    rnd = random.Random(args.seed)
    below = tree.below(high)
    lower = [c for c in below if not tree.below(c)]  # basic courts under the high court
    watched = cases_of(db_path, below, 5000, rnd)
    load_before = load_average()
    stats: dict[str, list[float]] = {"register": [], "board": [], "timeline": []}
    counts: defaultdict[str, int] = defaultdict(int)
    sizes: dict[str, int] = {}
    async with serve(data.settings.data_dir) as server:
        settle_heap()
        cpu_before = cpu_seconds(server.pid)
        started = time.monotonic()
        deadline = started + args.seconds
        clerks = rnd.sample(lower, max(1, args.clients - 2))
        await asyncio.gather(
            board_loop(server.url, f"po{high}", deadline, stats, counts, sizes),
            timeline_loop(
                server.url, f"po{high}", watched, deadline, stats, counts, random.Random(1)
            ),
            *(
                register_loop(
                    server.url,
                    c,
                    deadline,
                    stats,
                    counts,
                    random.Random(args.seed + i),
                    cases_of(db_path, [c], 50, rnd),
                )
                for i, c in enumerate(clerks)
            ),
        )
        elapsed = time.monotonic() - started
        server_cpu = cpu_seconds(server.pid) - cpu_before
        rss = peak_rss_mb(server.pid)
    load_after = load_average()
    log("overdue scan")
    scan = await overdue_scan(data.settings, data.now)
    return {
        "benchmark": "cases",
        "database": "sqlite",
        "courts": world["courts"],
        "cases": world["cases"],
        "contacts": world["contacts"],
        "timeline_events": world["events"],
        "assignments": world["assignments"],
        "board_court": high,
        "board_courts_below": n_below,
        "board_rows": sizes.get("board_cases"),
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": counts["requests"],
        "requests_per_s": round(counts["requests"] / elapsed, 1),
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(1, counts["requests"]), 2),
        "registered": counts["register_201"],
        "register_refused": sum(
            v for k, v in counts.items() if k.startswith("register_") and k != "register_201"
        ),
        "errors": sum(
            v
            for k, v in counts.items()
            if k.startswith(("board_", "timeline_")) and not k.endswith("_200")
        ),
        "register_p50_ms": round(percentile(stats["register"], 50), 2),
        "register_p99_ms": round(percentile(stats["register"], 99), 2),
        "board_p50_ms": round(percentile(stats["board"], 50), 2),
        "board_p99_ms": round(percentile(stats["board"], 99), 2),
        "timeline_p50_ms": round(percentile(stats["timeline"], 50), 2),
        "timeline_p99_ms": round(percentile(stats["timeline"], 99), 2),
        "overdue_scan_s": round(scan["seconds"], 2),
        "overdue_scan": {k: v for k, v in scan.items() if k != "seconds"},
        "max_rss_mb": round(rss, 1),
        "load_before": load_before,
        "load_after": load_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--contacts-per-case", type=float, default=3.0)
    parser.add_argument("--courts", type=int, default=3500)
    parser.add_argument(
        "--clients", type=int, default=4, help="a board watcher, a case reader, the rest clerks"
    )
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", help="where to build (or find) the dataset")
    args = parser.parse_args()
    if args.clients < 3:
        parser.error("--clients: at least 3 (a board watcher, a case reader and a clerk)")
    with bench_dir(args.data_dir, "vr-bench-cases-") as data_dir:
        args.data_dir = str(data_dir)
        result = asyncio.run(run(args, prepare(args)))
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
