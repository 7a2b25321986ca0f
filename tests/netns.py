"""A second machine on this host: a network namespace joined to the host by a veth pair.

The namespace gets its own address in a private 10.x.y.0/24 that the test makes here and
nowhere else: the host side of the pair holds ``host_address``, the namespace ``address``.
The namespace has its own loopback (no path to the host's 127.0.0.1) and no default route,
so what runs inside reaches the host only through the veth pair, as a terminal in a
reception room reaches the court's server over the network.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def netns_problem() -> str | None:
    """Why this machine cannot make network namespaces (None: it can)."""
    if shutil.which("ip") is None:
        return "iproute2 (the ip command) is not installed"
    if os.geteuid() != 0:
        return "making a network namespace (ip netns add) needs root"
    probe = "vrprobe" + secrets.token_hex(3)
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add is not permitted here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass(frozen=True)
class Namespace:
    """A network namespace and the veth pair that joins it to the host."""

    name: str
    host_interface: str
    interface: str
    host_address: str  # the host's address on this network (where servers listen)
    address: str  # the namespace's own address
    prefix_length: int = 24

    def command(self, *args: str) -> list[str]:
        """``args`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, check=check, timeout=60
        )

    def wrapper(self, path: Path, program: str, env: Mapping[str, str] | None = None) -> Path:
        """An executable script that runs ``program`` (with its arguments) inside the
        namespace, e.g. a browser for Playwright's ``executable_path``."""
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        path.write_text(
            "#!/bin/sh\n"
            f"exec ip netns exec {shlex.quote(self.name)} env {assignments} "
            f'{shlex.quote(program)} "$@"\n'
        )
        path.chmod(0o755)
        return path

    def can_connect(self, host: str, port: int) -> bool:
        """Whether a TCP connection from inside the namespace to ``host:port`` succeeds."""
        code = (
            "import socket,sys\n"
            "try:\n"
            f"    socket.create_connection(({host!r}, {port}), timeout=5).close()\n"
            "except OSError:\n"
            "    sys.exit(1)\n"
        )
        return self.run("python3", "-c", code, check=False).returncode == 0

    def pids(self) -> list[int]:
        out = _ip("netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split()]


def _used_networks() -> list[ipaddress.IPv4Network]:
    used: list[ipaddress.IPv4Network] = []
    routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all").stdout or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if dst and dst != "default":
            try:
                used.append(ipaddress.IPv4Network(dst, strict=False))
            except ValueError:
                continue
    addresses = json.loads(_ip("-j", "-4", "addr").stdout or "[]")
    for link in addresses:
        for info in link.get("addr_info", []):
            used.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", False))
    return used


def _free_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    for _ in range(200):
        candidate = ipaddress.IPv4Network(
            f"10.{random.randint(100, 199)}.{random.randint(0, 255)}.0/24"
        )
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise RuntimeError("no free 10.x.y.0/24 for a test network")


def plan_namespace(tag: str) -> Namespace:
    """Names and addresses for a new namespace on a fresh private /24 (nothing made yet)."""
    suffix = secrets.token_hex(3)
    subnet = _free_subnet()
    return Namespace(
        name=f"{tag}{suffix}",
        host_interface=f"{tag}h{suffix}"[:15],
        interface=f"{tag}n{suffix}"[:15],
        host_address=str(subnet[1]),
        address=str(subnet[2]),
        prefix_length=subnet.prefixlen,
    )


@contextmanager
def namespace_created(ns: Namespace) -> Iterator[Namespace]:
    """The namespace ``ns`` made; removed on exit with every process still running inside
    it and the host's end of its link."""
    _ip("netns", "add", ns.name)
    try:
        yield ns
    finally:
        for pid in ns.pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _ip("link", "del", ns.host_interface, check=False)
        _ip("netns", "del", ns.name, check=False)


@contextmanager
def network_namespace(tag: str = "vr") -> Iterator[Namespace]:
    """A namespace joined to the host by a veth pair on a fresh private /24; removed (with
    every process still running inside it) on exit."""
    ns = plan_namespace(tag)
    with namespace_created(ns):
        _ip("link", "add", ns.host_interface, "type", "veth", "peer", "name", ns.interface)
        _ip("link", "set", ns.interface, "netns", ns.name)
        _ip("addr", "add", f"{ns.host_address}/{ns.prefix_length}", "dev", ns.host_interface)
        _ip("link", "set", ns.host_interface, "up")
        inside: Sequence[Sequence[str]] = (
            ("addr", "add", f"{ns.address}/{ns.prefix_length}", "dev", ns.interface),
            ("link", "set", ns.interface, "up"),
            ("link", "set", "lo", "up"),
        )
        for args in inside:
            _ip("-n", ns.name, *args)
        yield ns


def staff_in_call(
    page: Any, origin: str, username: str, password: str, visit_id: str, joined: str = "1"
) -> None:
    """Log ``page`` in from the page itself (so the browser's own name resolution and
    certificate trust apply, as on a court's network) and open the visit's call view, until
    it has joined (``joined="1"``) or, a meeting's invitee before its host, waits for them
    (``joined="waiting"``)."""
    page.goto(origin + "/login")
    status = page.evaluate(
        """async ([username, password]) => (await fetch("/api/v1/auth/login", {
            method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify({username, password}),
        })).status""",
        [username, password],
    )
    assert status == 200
    page.goto(origin + f"/call/{visit_id}")
    ready = "body[data-waiting='1']" if joined == "waiting" else "body[data-joined='1']"
    page.wait_for_selector(ready, timeout=60_000)
