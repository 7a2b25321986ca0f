"""What the benchmarks share: the national court tree bulk-loaded with sqlite3, a real
`vreception serve` process on a free port, and the figures (percentiles, peak memory).

Used by scripts/bench_scheduler.py and scripts/bench_cases.py; run as scripts, they import it
by its name (a script's own directory is first on sys.path).
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the benchmarks import the application after this module
    sys.path.insert(0, str(ROOT))
PASSWORD = "Bench-Passw0rd!"
STAMP = "%Y-%m-%d %H:%M:%S.%f"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def ts(d: datetime) -> str:
    """A timestamp as the schema stores it (naive UTC)."""
    return d.astimezone(UTC).replace(tzinfo=None).strftime(STAMP)


@dataclass
class CourtTree:
    """The courts inserted: ids by level, and each lower court's parent."""

    highs: list[int]
    mids: list[int]
    basics: list[int]
    parent_of: dict[int, int] = field(default_factory=dict)
    rows: int = 0

    def below(self, court: int) -> list[int]:
        """The courts below ``court`` (not including it)."""
        children: dict[int, list[int]] = {}
        for child, parent in self.parent_of.items():
            children.setdefault(parent, []).append(child)
        out: list[int] = []
        todo = [court]
        while todo:
            for child in children.get(todo.pop(), []):
                out.append(child)
                todo.append(child)
        return out


def insert_courts(
    con: sqlite3.Connection, n_courts: int, rnd: random.Random, created: str
) -> CourtTree:
    """The supreme court, 32 high courts, ~11.5% intermediate and the rest basic courts
    (3,500 by default, like the national tree), each lower court under a random parent."""
    n_high = 32
    n_mid = max(1, int(n_courts * 0.115))
    n_basic = n_courts - 1 - n_high - n_mid
    courts: list[tuple[Any, ...]] = [(1, "SPC", "最高人民法院", "supreme", None, created)]
    highs = list(range(2, 2 + n_high))
    mids = list(range(highs[-1] + 1, highs[-1] + 1 + n_mid))
    basics = list(range(mids[-1] + 1, mids[-1] + 1 + n_basic))
    tree = CourtTree(highs=highs, mids=mids, basics=basics)
    courts += [(c, f"H{c}", f"第{c}高级人民法院", "high", 1, created) for c in highs]
    for c in highs:
        tree.parent_of[c] = 1
    for c in mids:
        tree.parent_of[c] = rnd.choice(highs)
        parent = tree.parent_of[c]
        courts.append((c, f"M{c}", f"第{c}中级人民法院", "intermediate", parent, created))
    for c in basics:
        tree.parent_of[c] = rnd.choice(mids)
        courts.append((c, f"B{c}", f"第{c}基层人民法院", "basic", tree.parent_of[c], created))
    con.executemany(
        "INSERT INTO courts (id, code, name, level, parent_id, created_at) VALUES (?,?,?,?,?,?)",
        courts,
    )
    tree.rows = len(courts)
    return tree


@contextmanager
def bench_dir(given: str | None, prefix: str) -> Iterator[Path]:
    """The benchmark's data directory: ``given`` (kept), or a new temporary one removed at
    the end (a dataset is ~0.8-2.5 GB: left behind, a few dozen runs filled the disk)."""
    if given:
        yield Path(given)
        return
    made = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settle_heap() -> None:
    """Keep the collector off what the bench built before measuring: a dataset's manifest
    makes every full collection of the bench process a 100+ ms pause, which its clients
    would record as the server's latency."""
    gc.collect()
    gc.freeze()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared: figures need them)."""
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    output: deque[str] = field(default_factory=lambda: deque(maxlen=200))

    @property
    def pid(self) -> int:
        return self.process.pid


@asynccontextmanager
async def serve(data_dir: Path) -> AsyncIterator[Server]:
    """A real `vreception serve` on the data dir (SQLite), ready when this yields; stopped
    with SIGTERM after."""
    port = free_port()
    env = {
        **os.environ,
        "VRECEPTION_DATA_DIR": str(data_dir),
        "VRECEPTION_PORT": str(port),
        "VRECEPTION_LOG_LEVEL": "WARNING",
        "VRECEPTION_HOUSEKEEPING_SECONDS": "3600",
        "VRECEPTION_LOGIN_MAX_FAILURES_PER_ADDRESS": "10000",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(url=f"http://127.0.0.1:{port}", process=process)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            server.output.append(line)
            if "listening on" in line:
                break
        # keep reading its output (a full pipe would stall the server), the last lines kept
        threading.Thread(target=server.output.extend, args=(process.stdout,), daemon=True).start()
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(server.url + "/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


async def login(http: aiohttp.ClientSession, username: str) -> dict[str, str]:
    """Log a bench user in on ``http`` (its cookie jar keeps the session); the CSRF header."""
    r = await http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    body = await r.json()
    if r.status != 200:
        raise RuntimeError(f"login {username}: {r.status} {body}")
    return {"X-CSRF-Token": body["csrf_token"]}
