"""Several machines, for real: scripts/multinode brings up nginx (the repository's site file),
two server nodes, a recording worker, sharing this session's PostgreSQL and Redis. A visit
booked on one node is held through nginx with its participants landing on different nodes
and sent to the room's node; its recording is processed by the worker; a node killed with
SIGKILL leaves the other serving new visits through the same nginx address."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from config.db import Database
from config.settings import Settings
from media.transport import announce_addresses
from recorder.models import STEPS, Recording, RecordingState
from tests.conftest import ROOT, PostgresServer, RedisServer
from tests.helpers import stop_process, wait_for, wait_until
from tests.live import Client, checked_in_visit, staff_cookie
from tests.pki import CourtPKI, make_pki

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
NGINX = "/usr/sbin/nginx"


@dataclass
class Address:
    url: str


@dataclass
class Cluster:
    entry: Address  # nginx: what terminals open
    nodes: list[Address]  # through nginx, each node's public_url
    pids: list[int]  # the nodes' processes
    backends: list[tuple[str, int]]  # where nginx reaches each node
    passwords: dict[str, str]
    database_url: str
    pki: CourtPKI
    folder: Path


@pytest.fixture
def cluster(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> Iterator[Cluster]:
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: run ./scripts/bootstrap --dev, which installs it")
    pki = make_pki(tmp_path / "pki", ["court.example"], ["127.0.0.1"])
    database_url = postgres_server.create_database("vr_cluster")
    folder = tmp_path / "cluster"
    log = (tmp_path / "multinode.log").open("w")
    script = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "multinode"),
         "--database-url", database_url, "--redis-url", redis_server.url,
         "--dir", str(folder), "--port", "0",
         "--tls-cert", str(pki.cert), "--tls-key", str(pki.key)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def up() -> bool:
            assert script.poll() is None, (tmp_path / "multinode.log").read_text()
            return (folder / "cluster.json").exists()

        wait_until(up, timeout=180, what="the cluster")
        state: dict[str, Any] = json.loads((folder / "cluster.json").read_text())
        yield Cluster(
            entry=Address(state["url"]),
            nodes=[Address(node["public_url"]) for node in state["nodes"]],
            pids=[node["pid"] for node in state["nodes"]],
            backends=[
                (str(url.hostname), int(url.port or 0))
                for url in (urlsplit(node["backend"]) for node in state["nodes"])
            ],
            passwords=state["passwords"],
            database_url=database_url,
            pki=pki,
            folder=folder,
        )
    finally:
        stop_process(script, timeout=60)  # it stops nginx, the nodes and the worker
        log.close()


async def _refused(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def _recording_state(database_url: str, visit_id: str) -> RecordingState | None:
    database = Database(Settings(database_url=database_url))
    try:
        async with database.reader() as db:
            row = await db.get(Recording, visit_id)
            return None if row is None else row.state
    finally:
        await database.dispose()


async def test_a_visit_through_nginx_on_two_nodes_a_worker_and_a_node_killed(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    announce_addresses(["127.0.0.1"])
    tls = cluster.pki.client_context()
    one, two = cluster.nodes
    assert cluster.passwords, "node 1 seeds the demo data and prints the passwords"
    redis = Redis.from_url(redis_server.url)
    clients: list[Client] = []

    async def client(at: Address, cookie: str | None = None) -> Client:
        clients.append(Client(tls))
        return await clients[-1].connect(at, cookie)

    try:
        # booked on node 2; the judge logs in through nginx's one address
        visit_id, code = await checked_in_visit(two, cluster.passwords, tls)
        cookie = await staff_cookie(cluster.entry, "judge", cluster.passwords["judge"], tls)
        judge = await client(one, cookie)
        assert (await judge.call("join", {"v": 1, "visit_id": visit_id}))["ok"]
        assert await redis.get(f"vreception:room:{visit_id}") == one.url.encode()

        # the petitioner lands on node 2: sent to node 1's address on the same nginx
        landed = await client(two)
        moved = await landed.call("join", {"v": 1, "visit_id": visit_id, "code": code})
        assert moved["ok"] is False and moved["error"]["code"] == "wrong_node", moved
        assert moved["error"]["details"] == {"node": one.url}
        guest = await client(Address(moved["error"]["details"]["node"]))
        entered = await guest.call("join", {"v": 1, "visit_id": visit_id, "code": code})
        assert entered["ok"] and entered["admitted"] is False, entered
        await judge.wait_in_lobby(entered["participant_id"])
        assert (await judge.call("admit", {"participant_id": entered["participant_id"]}))["ok"]

        # media: the judge's camera reaches the petitioner through node 1's relay
        await judge.publish()
        tracks = await guest.subscribe()
        track = await asyncio.wait_for(tracks.get(), timeout=30)
        for _ in range(5):
            await asyncio.wait_for(track.recv(), timeout=30)
        assert (await judge.call("end"))["ok"]

        # the node only queued the recording: the worker processes it
        async def processed() -> bool:
            state = await _recording_state(cluster.database_url, visit_id)
            assert state is not RecordingState.failed
            return state in (RecordingState.ready, RecordingState.empty)

        await wait_for(processed, within=120)
        # node 1 queued it; each step is logged where it runs: in the worker only
        logs = {n: (cluster.folder / f"{n}.log").read_text() for n in ("node1", "node2", "worker")}
        assert f"recording {visit_id}: queued for a worker" in logs["node1"]
        for step in STEPS:
            assert f"recording {visit_id}: {step}" in logs["worker"], logs["worker"]
            assert f"recording {visit_id}: {step}" not in logs["node1"] + logs["node2"]

        # node 1 dies: nginx's address keeps serving new visits, on node 2
        for each in clients:
            await each.close()
        clients.clear()
        os.kill(cluster.pids[0], signal.SIGKILL)
        # gone (a request it had taken when it died fails: a POST is never sent twice)
        await wait_for(lambda: _refused(*cluster.backends[0]), within=30)
        visit_id, code = await checked_in_visit(cluster.entry, cluster.passwords, tls)
        cookie = await staff_cookie(cluster.entry, "judge", cluster.passwords["judge"], tls)
        judge = await client(cluster.entry, cookie)
        assert (await judge.call("join", {"v": 1, "visit_id": visit_id}))["ok"]
        assert await redis.get(f"vreception:room:{visit_id}") == two.url.encode()
        guest = await client(cluster.entry)
        entered = await guest.call("join", {"v": 1, "visit_id": visit_id, "code": code})
        assert entered["ok"], entered
        await judge.wait_in_lobby(entered["participant_id"])
        assert (await judge.call("admit", {"participant_id": entered["participant_id"]}))["ok"]
        assert (await judge.call("end"))["ok"]
        # nginx tried node 1 in turn, found it dead and took it out of the rotation
        errors = (cluster.folder / "nginx" / "error.log").read_text()
        assert "upstream server temporarily disabled while connecting to upstream" in errors
    finally:
        for each in clients:
            await each.close()
        await redis.aclose()


def test_the_site_printed_for_real_machines_routes_each_node_and_passes_nginx_t(
    tmp_path: Path,
) -> None:
    """``--print-site``: the one site file, for nodes on other machines: every node in the
    shared upstream, and one HTTPS port per node that reaches only that node."""
    printed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "multinode"), "--print-site",
         "--host", "vreception.court.example", "--port", "443", "--first-node-port", "8444",
         "--node", "10.1.2.11:8080", "--node", "10.1.2.12:8080"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert 'node 2 (10.1.2.12:8080): public_url = "https://vreception.court.example:8445"' in (
        printed
    )
    assert "server 10.1.2.11:8080 max_fails=1 fail_timeout=10s;" in printed
    assert "server 10.1.2.12:8080 max_fails=1 fail_timeout=10s;" in printed
    servers = printed.split("\nserver {")[1:]
    assert [s.split("\n")[1].strip() for s in servers] == [
        "listen 80;",
        "listen 443 ssl http2;",
        "listen 8444 ssl http2;",
        "listen 8445 ssl http2;",
    ]
    assert "proxy_pass http://vreception_node2;" in servers[3]
    assert "vreception_node1" not in servers[3] and "vreception_node" not in servers[1]

    pki = make_pki(tmp_path / "pki", ["vreception.court.example"])
    site = tmp_path / "site.conf"
    site.write_text(
        printed.replace("/etc/vreception/tls/server.crt", str(pki.cert)).replace(
            "/etc/vreception/tls/server.key", str(pki.key)
        )
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"events {{}}\nhttp {{\n  include {site};\n}}\n")
    checked = subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
