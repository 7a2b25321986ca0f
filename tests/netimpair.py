"""An impaired link between this host and a network namespace, in user space.

The kernels this runs on have no netem, iptables or nft, so the link is a small program
(``python -m tests.netimpair``) forwarding IP packets between two TUN devices: one on the
host, holding the host's address of a point-to-point pair in a private 10.x.y.0/24, and one
inside the namespace, holding the namespace's address; it is the namespace's only route to
the host. Each direction (``down``: host → namespace, ``up``: namespace → host) applies, in
this order:

- ``outage``: every packet is dropped while it is on;
- ``loss``: each packet is dropped with this probability;
- ``rate_kbps``: a token bucket (burst ``burst_bytes``) drains a drop-tail queue that holds
  at most ``queue_ms`` of traffic at that rate, as a thin access link's buffer does;
- ``delay_ms`` ± ``jitter_ms``: each packet leaves the bucket and waits a delay drawn
  uniformly from [delay − jitter, delay + jitter]. Packets keep their order (a packet never
  overtakes the one before it: its departure is at least the previous packet's), as on a
  single link whose queueing delay varies, unless ``reorder`` is set.

:class:`Direction` is the whole policy, driven by the times it is given (no clock of its
own), so unit tests run it on made-up times; the forwarder process runs it in real time.
The test (or benchmark) changes the impairments while the link runs through a Unix socket
(:meth:`ImpairedLink.set`), e.g. to start and stop an outage.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import heapq
import json
import os
import random
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tests.netns import Namespace, namespace_created, plan_namespace

ROOT = Path(__file__).resolve().parent.parent
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000
MTU = 1500


@dataclass(frozen=True)
class Impairment:
    """What one direction of the link does to packets (the default: nothing)."""

    rate_kbps: float = 0.0  # 0: no cap
    burst_bytes: int = 3000
    queue_ms: float = 300.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0  # probability, 0..1
    outage: bool = False
    reorder: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be a probability in [0, 1], not {self.loss}")
        if self.rate_kbps < 0 or self.delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f"rate, delay and jitter cannot be negative: {self}")
        if self.jitter_ms > self.delay_ms:
            raise ValueError(f"jitter ({self.jitter_ms} ms) exceeds the delay ({self.delay_ms} ms)")
        if self.burst_bytes < MTU:
            raise ValueError(f"a burst below one packet ({MTU} bytes) never lets one through")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Impairment:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown impairment fields: {sorted(unknown)}")
        return cls(**data)


CLEAN = Impairment()


@dataclass
class Counters:
    received: int = 0
    forwarded: int = 0
    lost: int = 0  # dropped by ``loss``
    outage: int = 0  # dropped during an outage
    overflow: int = 0  # dropped by a full rate queue
    forwarded_bytes: int = 0


@dataclass
class Direction:
    """One direction of the link: packets offered at given times, released when due."""

    impairment: Impairment = CLEAN
    rng: random.Random = field(default_factory=random.Random)
    counters: Counters = field(default_factory=Counters)
    _queue: deque[bytes] = field(default_factory=deque)  # waiting for tokens
    _queued_bytes: int = 0
    _tokens: float = 0.0
    _tokens_at: float | None = None
    _delayed: list[tuple[float, int, bytes]] = field(default_factory=list)  # heap
    _seq: int = 0
    _last_release: float = 0.0

    def configure(self, impairment: Impairment, now: float) -> None:
        self._refill(now)
        self.impairment = impairment
        if impairment.outage:  # the link is down: nothing in flight gets through either
            self.counters.outage += len(self._queue) + len(self._delayed)
            self._queue.clear()
            self._queued_bytes = 0
            self._delayed.clear()

    def offer(self, packet: bytes, now: float) -> None:
        """A packet that entered this direction at ``now``."""
        imp = self.impairment
        self.counters.received += 1
        if imp.outage:
            self.counters.outage += 1
            return
        if imp.loss and self.rng.random() < imp.loss:
            self.counters.lost += 1
            return
        if imp.rate_kbps:
            limit = max(imp.rate_kbps * 1000 / 8 * imp.queue_ms / 1000, MTU)
            if self._queued_bytes + len(packet) > limit:
                self.counters.overflow += 1
                return
            self._queue.append(packet)
            self._queued_bytes += len(packet)
            self._drain(now)
        else:
            self._delay(packet, now)

    def _refill(self, now: float) -> None:
        imp = self.impairment
        if self._tokens_at is None:
            self._tokens = float(imp.burst_bytes)
        elif imp.rate_kbps:
            elapsed = max(0.0, now - self._tokens_at)
            self._tokens = min(
                float(imp.burst_bytes), self._tokens + elapsed * imp.rate_kbps * 1000 / 8
            )
        else:
            self._tokens = float(imp.burst_bytes)
        self._tokens_at = now

    def _drain(self, now: float) -> None:
        self._refill(now)
        uncapped = not self.impairment.rate_kbps  # the cap was lifted: the queue goes at once
        while self._queue and (uncapped or self._tokens >= len(self._queue[0])):
            packet = self._queue.popleft()
            self._queued_bytes -= len(packet)
            self._tokens -= len(packet)
            self._delay(packet, now)

    def _delay(self, packet: bytes, now: float) -> None:
        imp = self.impairment
        delay = imp.delay_ms
        if imp.jitter_ms:
            delay += self.rng.uniform(-imp.jitter_ms, imp.jitter_ms)
        release = now + delay / 1000
        if not imp.reorder:
            release = max(release, self._last_release)
        self._last_release = release
        self._seq += 1
        heapq.heappush(self._delayed, (release, self._seq, packet))

    def due(self, now: float) -> list[bytes]:
        """The packets to put on the wire at ``now``, in order."""
        if self._queue:
            self._drain(now)
        out: list[bytes] = []
        while self._delayed and self._delayed[0][0] <= now:
            packet = heapq.heappop(self._delayed)[2]
            self.counters.forwarded += 1
            self.counters.forwarded_bytes += len(packet)
            out.append(packet)
        return out

    def next_due(self) -> float | None:
        """When :meth:`due` next has something to release (None: nothing waits)."""
        times: list[float] = []
        if self._delayed:
            times.append(self._delayed[0][0])
        if self._queue and self._tokens_at is not None and self.impairment.rate_kbps:
            missing = len(self._queue[0]) - self._tokens
            times.append(self._tokens_at + max(0.0, missing) / (self.impairment.rate_kbps * 125))
        return min(times) if times else None


# ------------------------------------------------------------------ the forwarder process


def _open_tun(name: str) -> int:
    """A TUN device (IP packets, no extra header) in the calling thread's namespace."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def _enter_namespace(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def serve(netns: str, host_tun: str, ns_tun: str, control: str, seed: int | None) -> None:
    """Forward between ``host_tun`` (made here, on the host) and ``ns_tun`` (made inside
    ``netns``) until SIGTERM; prints ``ready`` once both devices and the control socket exist."""
    host_fd = _open_tun(host_tun)
    _enter_namespace(netns)
    ns_fd = _open_tun(ns_tun)
    rng = random.Random(seed)
    directions = {
        "down": (Direction(rng=random.Random(rng.random())), ns_fd),  # host → namespace
        "up": (Direction(rng=random.Random(rng.random())), host_fd),  # namespace → host
    }
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(control)
    server.listen(4)
    server.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(host_fd, selectors.EVENT_READ, "down")
    sel.register(ns_fd, selectors.EVENT_READ, "up")
    sel.register(server, selectors.EVENT_READ, "control")
    outage = Outage()
    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    while not stop:
        pending = [d.next_due() for d, _ in directions.values()]
        waits = [t for t in (*pending, outage.until) if t is not None]
        timeout = max(0.0, min(waits) - time.monotonic()) if waits else 1.0
        for key, _ in sel.select(timeout):
            now = time.monotonic()
            if key.data == "control":
                _answer(server, directions, outage, now)
                continue
            direction = directions[key.data][0]
            while True:  # drain every datagram this wake-up
                try:
                    packet = os.read(key.fd, 65535)
                except BlockingIOError:
                    break
                direction.offer(packet, now)
        now = time.monotonic()
        if outage.until is not None and now >= outage.until:
            for name, (direction, _) in directions.items():
                direction.configure(outage.saved[name], now)
            outage.until, outage.ended_at = None, time.time()
        for direction, out_fd in directions.values():
            for packet in direction.due(now):
                with suppress(OSError):  # the device went down: the packet is lost
                    os.write(out_fd, packet)


@dataclass
class Outage:
    """A timed total outage the forwarder ends by itself (both directions)."""

    until: float | None = None  # monotonic time it ends
    saved: dict[str, Impairment] = field(default_factory=dict)  # what the link did before
    ended_at: float | None = None  # wall-clock time the last one ended

    def start(
        self, seconds: float, directions: dict[str, tuple[Direction, int]], now: float
    ) -> None:
        if seconds <= 0:
            raise ValueError(f"an outage lasts a positive time, not {seconds} s")
        if self.until is None:
            self.saved = {name: d.impairment for name, (d, _) in directions.items()}
        for name, (direction, _) in directions.items():
            direction.configure(replace(self.saved[name], outage=True), now)
        self.until, self.ended_at = now + seconds, None


def _answer(
    server: socket.socket,
    directions: dict[str, tuple[Direction, int]],
    outage: Outage,
    now: float,
) -> None:
    try:
        conn, _ = server.accept()
    except OSError:
        return
    with conn, suppress(OSError):  # a caller that went away gets no answer
        conn.settimeout(5)
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        try:
            request = json.loads(data or b"{}")
            for name, settings in (request.get("set") or {}).items():
                if name not in directions:
                    raise ValueError(f"no direction {name!r} (down, up)")
                directions[name][0].configure(Impairment.from_dict(settings), now)
            if "outage_s" in request:
                outage.start(float(request["outage_s"]), directions, now)
            reply: dict[str, Any] = {
                "ok": True,
                "outage_ended_at": outage.ended_at,
                "counters": {n: asdict(d.counters) for n, (d, _) in directions.items()},
            }
        except (ValueError, TypeError) as exc:
            reply = {"ok": False, "error": str(exc)}
        conn.sendall(json.dumps(reply).encode() + b"\n")


# ------------------------------------------------------------------ the test's side


@dataclass
class ImpairedLink:
    """A running impaired link; ``namespace`` is where the far end lives."""

    namespace: Namespace
    control: Path
    proc: subprocess.Popen[str]

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.control))
            s.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        reply: dict[str, Any] = json.loads(data)
        if not reply.get("ok"):
            raise ValueError(reply.get("error", reply))
        return reply

    def set(self, down: Impairment | None = None, up: Impairment | None = None) -> None:
        """Change one or both directions now (None: leave that direction as it is)."""
        changes = {k: asdict(v) for k, v in (("down", down), ("up", up)) if v is not None}
        self._call({"set": changes})

    def both(self, impairment: Impairment) -> None:
        self.set(down=impairment, up=impairment)

    def outage(self, seconds: float) -> None:
        """Drop everything both ways for ``seconds``; the link then does what it did before
        (timed by the forwarder: :meth:`outage_ended_at` says when it ended)."""
        self._call({"outage_s": seconds})

    def outage_ended_at(self) -> float | None:
        """Wall-clock time (``time.time()``) the last outage ended; None while it lasts."""
        ended = self._call({})["outage_ended_at"]
        return None if ended is None else float(ended)

    def counters(self) -> dict[str, Counters]:
        got = self._call({})["counters"]
        return {name: Counters(**values) for name, values in got.items()}


def tun_problem() -> str | None:
    """Why this machine cannot make TUN devices (None: it can)."""
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun does not exist (no TUN support in this kernel or container)"
    try:
        fd = _open_tun("vrtunprobe0")
    except OSError as exc:
        return f"a TUN device cannot be made here: {exc}"
    os.close(fd)
    return None


@contextmanager
def impaired_namespace(tag: str = "vi", seed: int | None = None) -> Iterator[ImpairedLink]:
    """A network namespace whose only way to the host is an impaired link (clean until
    :meth:`ImpairedLink.set`); removed, with everything running inside it, on exit."""
    ns = plan_namespace(tag)
    with namespace_created(ns), tempfile.TemporaryDirectory(prefix="vr-netimpair-") as tmp:
        control = Path(tmp) / "control.sock"
        command = [sys.executable, "-m", "tests.netimpair", "--netns", ns.name]
        command += ["--host-tun", ns.host_interface, "--ns-tun", ns.interface]
        command += ["--control", str(control)]
        if seed is not None:
            command += ["--seed", str(seed)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"the impaired link did not start (exit {proc.wait(10)})")
            host_side = ("addr", "add", f"{ns.host_address}/32", "peer", f"{ns.address}/32")
            subprocess.run(["ip", *host_side, "dev", ns.host_interface], check=True)
            subprocess.run(["ip", "link", "set", ns.host_interface, "up"], check=True)
            pair = ("peer", f"{ns.host_address}/32")
            for args in (
                ("addr", "add", f"{ns.address}/32", *pair, "dev", ns.interface),
                ("link", "set", ns.interface, "up"),
                ("link", "set", "lo", "up"),
            ):
                subprocess.run(["ip", "-n", ns.name, *args], check=True, capture_output=True)
            yield ImpairedLink(ns, control, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--netns", required=True)
    parser.add_argument("--host-tun", required=True)
    parser.add_argument("--ns-tun", required=True)
    parser.add_argument("--control", required=True)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    serve(args.netns, args.host_tun, args.ns_tun, args.control, args.seed)


if __name__ == "__main__":
    main()
