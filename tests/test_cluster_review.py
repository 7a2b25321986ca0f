"""Several nodes at once (PostgreSQL, a real redis-server): housekeeping that two nodes run
together changes each row once; a room's lease missing for a moment does not end its visit;
Redis that stops answering fails requests after a deadline instead of holding them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import socketio
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeout
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

import config.redis as config_redis
from config.audit import AuditEvent
from config.db import Database, utcnow
from config.redis import create_redis
from config.settings import Settings
from scheduler import lifecycle
from scheduler.cases.models import CaseEvent
from scheduler.models import Notification, Role, Visit, VisitState, WalkIn, WalkInStatus
from scheduler.portal.feedback import mark_overdue
from scheduler.portal.feedback_models import MessageThread, ThreadState
from scheduler.portal.models import PortalIdentity
from scheduler.scope import Actor
from scheduler.walkins import expire_walk_ins
from signaling.placement import RedisPlacement
from signaling.server import RedisManager, create_sio
from tests.conftest import PostgresServer, RedisServer
from tests.helpers import Booking, wait_for
from web.app import create_app
from web.keys import GATEWAY

LEASE = timedelta(seconds=45)  # a room's lease (signaling/placement.py)


@pytest.fixture
def settings(tmp_path: Path, postgres_server: PostgresServer) -> Settings:
    """This module's database is PostgreSQL, where nodes' transactions run in parallel."""
    name = f"vr_review_{uuid.uuid4().hex[:12]}"
    return Settings(data_dir=tmp_path / "var", database_url=postgres_server.create_database(name))


# ---------------------------------------------------------------- two nodes' housekeeping

Run = Callable[[AsyncSession], Awaitable[int]]


async def _blocked(db: Database) -> bool:
    """Whether a transaction of this database waits for a row another one locked."""
    async with db.reader() as s:
        waiting = await s.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


async def overlapping(settings: Settings, run: Run, then: Run | None = None) -> tuple[int, int]:
    """``run`` as two nodes' housekeeping overlapping (or ``run`` and then ``then``): the
    second starts while the first has done its work but not committed; the first commits
    once the second finished or waits for its rows. What each returned."""
    db = Database(settings)

    async def second() -> int:
        async with db.writer() as s:
            return await (then or run)(s)

    try:
        async with db.writer() as s:
            first = await run(s)
            other = asyncio.create_task(second())

            async def finished_or_waiting() -> bool:
                return other.done() or await _blocked(db)

            await wait_for(finished_or_waiting, within=30)
        return first, await other
    finally:
        await db.dispose()


async def _count(settings: Settings, stmt: Any) -> int:
    db = Database(settings)
    try:
        async with db.reader() as s:
            return int(await s.scalar(stmt) or 0)
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_overlapping_housekeeping_marks_an_unanswered_question_overdue_once(
    migrated: Settings, booking: Booking
) -> None:
    now = utcnow()
    case_id = booking.petitions["a0"]
    db = Database(migrated)
    try:
        async with db.writer() as s:
            who = PortalIdentity(id_key="k" * 64, id_number="X", name="王某某", phone="13800000000")
            s.add(who)
            await s.flush()
            thread = MessageThread(
                identity_id=who.id,
                court_id=booking.world.courts["basic_a"],
                petition_id=case_id,
                subject="再审申请期限",
                state=ThreadState.waiting,
                due_at=now - timedelta(hours=1),
            )
            s.add(thread)
            await s.flush()
            thread_id = thread.id
    finally:
        await db.dispose()

    first, second = await overlapping(migrated, lambda s: mark_overdue(s, now))
    assert (first, second) == (1, 0)
    overdue = select(func.count()).where(
        CaseEvent.petition_id == case_id, CaseEvent.kind == "overdue"
    )
    assert await _count(migrated, overdue) == 1
    notices = select(func.count()).where(
        Notification.user_id == booking.world.users["po_a"],
        Notification.kind == "portal_question_overdue",
    )
    assert await _count(migrated, notices) == 1
    stamped = select(MessageThread.overdue_at).where(MessageThread.id == thread_id)
    db = Database(migrated)
    try:
        async with db.reader() as s:
            assert await s.scalar(stamped) == now
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_overlapping_housekeeping_expires_a_stale_walk_in_once(
    migrated: Settings, booking: Booking
) -> None:
    now = utcnow()
    w = booking.world
    db = Database(migrated)
    try:
        async with db.writer() as s:
            entry = WalkIn(
                petition_id=booking.petitions["a0"],
                court_id=w.courts["basic_a"],
                receiving_court_id=w.courts["mid_a"],
                room_id=w.rooms["basic_a"],
                document_type="other",
                document_masked="X1****67",
                created_by=w.users["op_a"],
                created_at=now - timedelta(days=2),
            )
            s.add(entry)
            await s.flush()
            entry_id = entry.id
    finally:
        await db.dispose()

    first, second = await overlapping(migrated, lambda s: expire_walk_ins(s, migrated, now))
    assert (first, second) == (1, 0)
    audited = select(func.count()).where(
        AuditEvent.action == "visit.walk_in_expired", AuditEvent.target_id == str(entry_id)
    )
    assert await _count(migrated, audited) == 1


@pytest.mark.postgres
async def test_a_walk_in_is_either_expired_or_seated_never_both(
    migrated: Settings, booking: Booking
) -> None:
    """One node's housekeeping expires yesterday's walk-ins while another's seats the queue
    (a conditional UPDATE, scheduler/housekeeping.py): exactly one of them changes it."""
    now = utcnow()
    w = booking.world
    db = Database(migrated)
    try:
        async with db.writer() as s:
            entry = WalkIn(
                petition_id=booking.petitions["a0"],
                court_id=w.courts["basic_a"],
                receiving_court_id=w.courts["mid_a"],
                room_id=w.rooms["basic_a"],
                document_type="other",
                document_masked="X1****67",
                created_at=now - timedelta(days=2),
            )
            s.add(entry)
            await s.flush()
            entry_id = entry.id
    finally:
        await db.dispose()

    async def seat(s: AsyncSession) -> int:
        done = await s.execute(
            update(WalkIn)
            .where(WalkIn.id == entry_id, WalkIn.status == WalkInStatus.waiting)
            .values(status=WalkInStatus.assigned)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(done, "rowcount", 0))

    expired, seated = await overlapping(migrated, lambda s: expire_walk_ins(s, migrated, now), seat)
    assert expired + seated == 1
    status = select(WalkIn.status).where(WalkIn.id == entry_id)
    db = Database(migrated)
    try:
        async with db.reader() as s:
            final = await s.scalar(status)
    finally:
        await db.dispose()
    assert final is (WalkInStatus.withdrawn if expired else WalkInStatus.assigned)


# ---------------------------------------------------------------- a room's lease missing


async def _in_progress(settings: Settings, visit_id: str) -> None:
    db = Database(settings)
    try:
        async with db.writer() as s:
            v = await s.get(Visit, visit_id)
            assert v is not None and v.judge_id is not None
            judge = Actor(v.judge_id, "judge_a", Role.judge, v.receiving_court_id)
            await lifecycle.admit_petitioner(s, judge, v)
    finally:
        await db.dispose()


async def _state(settings: Settings, visit_id: str) -> VisitState:
    db = Database(settings)
    try:
        async with db.reader() as s:
            v = await s.get(Visit, visit_id)
            assert v is not None
            return v.state
    finally:
        await db.dispose()


@pytest.mark.redis
@pytest.mark.postgres
async def test_a_visit_whose_lease_is_missing_for_a_moment_is_not_ended_as_abandoned(
    aiohttp_client: Any, redis_server: RedisServer, migrated: Settings, visit: dict[str, Any]
) -> None:
    """Redis restarted: the room's lease is gone until its node renews it. Another node's
    housekeeping ends the visit only once nobody held it for more than a lease."""
    node = migrated.model_copy(update={"redis_url": redis_server.url, "secret_key": "s" * 40})
    await _in_progress(migrated, visit["id"])
    client = await aiohttp_client(create_app(node))
    gateway = client.server.app[GATEWAY]
    redis = Redis.from_url(redis_server.url)
    lease = RedisPlacement.key(visit["id"])
    try:
        await redis.delete(lease)
        quiet = timedelta(minutes=node.visit_abandon_minutes, seconds=1)  # no events since
        t0 = utcnow() + quiet
        assert await gateway.reap_abandoned(t0) == []  # no lease: maybe Redis just restarted
        assert await gateway.reap_abandoned(t0 + timedelta(seconds=30)) == []  # next run
        await redis.set(lease, b"http://node-holding-it:8080")  # its node renewed it
        assert await gateway.reap_abandoned(t0 + timedelta(seconds=60)) == []
        await redis.delete(lease)  # missing again: counted from now
        t1 = t0 + timedelta(seconds=90)
        assert await gateway.reap_abandoned(t1) == []
        assert await gateway.reap_abandoned(t1 + LEASE) == []  # a lease, not more
        assert await gateway.reap_abandoned(t1 + LEASE + timedelta(seconds=1)) == [visit["id"]]
        assert await _state(migrated, visit["id"]) is VisitState.ended
    finally:
        await redis.delete(lease)
        await redis.aclose()


async def test_embedded_a_visit_nobody_holds_is_ended_at_the_first_run(
    aiohttp_client: Any, migrated: Settings, visit: dict[str, Any]
) -> None:
    """One process holds every room: a visit in progress without one has lost it."""
    await _in_progress(migrated, visit["id"])
    client = await aiohttp_client(create_app(migrated))
    gateway = client.server.app[GATEWAY]
    quiet = timedelta(minutes=migrated.visit_abandon_minutes, seconds=1)
    assert await gateway.reap_abandoned(utcnow() + quiet) == [visit["id"]]
    assert await _state(migrated, visit["id"]) is VisitState.ended


# ---------------------------------------------------------------- Redis that stops answering


@contextlib.contextmanager
def dropping_host() -> Iterator[str]:
    """A loopback address like a Redis host that drops packets: its listen queue (backlog
    0) is kept full, so the kernel drops every further connection attempt unanswered."""
    with socket.socket() as server, socket.socket() as filler:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        filler.connect(server.getsockname())
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


@contextlib.asynccontextmanager
async def silent_host() -> AsyncIterator[str]:
    """A Redis host that accepts connections and then never answers (hung, or cut off)."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    finally:
        server.close()


@pytest.fixture
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> float:
    deadline = 0.3
    monkeypatch.setattr(config_redis, "TIMEOUT_SECONDS", deadline, raising=False)
    return deadline


async def test_redis_commands_fail_after_the_deadline_when_redis_does_not_answer(
    tmp_path: Path, short_deadline: float
) -> None:
    """Logins, joins and lease renewals use this client: a host that drops packets, or
    one that stops answering, fails them after the deadline instead of holding them."""
    with dropping_host() as url:
        redis = create_redis(Settings(data_dir=tmp_path, redis_url=url))
        assert redis is not None
        with pytest.raises(RedisTimeout):
            await asyncio.wait_for(redis.ping(), timeout=10)
        await redis.aclose()
    async with silent_host() as url:
        redis = create_redis(Settings(data_dir=tmp_path, redis_url=url))
        assert redis is not None
        with pytest.raises(RedisTimeout):
            await asyncio.wait_for(redis.ping(), timeout=10)
        await redis.aclose()


async def test_a_socketio_emit_gives_up_when_redis_does_not_answer(
    tmp_path: Path, short_deadline: float
) -> None:
    """Every emit (a notification, a room's events to another node) publishes to Redis."""
    with dropping_host() as url:
        sio = create_sio(Settings(data_dir=tmp_path, redis_url=url))
        await asyncio.wait_for(
            sio.emit("notification", {"title": "x"}, room="user:1", namespace="/notify"),
            timeout=10,
        )
    async with silent_host() as url:
        sio = create_sio(Settings(data_dir=tmp_path, redis_url=url))
        await asyncio.wait_for(
            sio.emit("notification", {"title": "x"}, room="user:1", namespace="/notify"),
            timeout=10,
        )


@pytest.mark.redis
async def test_the_socketio_listener_keeps_its_subscription_through_quiet_minutes(
    redis_server: RedisServer, short_deadline: float
) -> None:
    """The pub/sub listener waits for the next message without a deadline: a quiet spell
    many times the command deadline keeps the same subscription, and what another node
    publishes after it arrives."""
    channel = f"vr-test-{uuid.uuid4().hex[:8]}"
    node_a, node_b = (RedisManager(redis_server.url, channel=channel) for _ in range(2))
    for manager in (node_a, node_b):
        socketio.AsyncServer(async_mode="aiohttp", client_manager=manager)
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def handle_emit(message: dict[str, Any]) -> None:
        await received.put(message)

    node_a._handle_emit = handle_emit
    redis = Redis.from_url(redis_server.url)
    before = {c["id"] for c in await redis.client_list(_type="pubsub")}
    node_a.initialize()  # starts its listener
    try:

        async def subscribed() -> bool:
            return bool((await redis.pubsub_numsub(channel))[0][1] == 1)

        await wait_for(subscribed, within=10)
        (listener,) = [c for c in await redis.client_list(_type="pubsub") if c["id"] not in before]

        async def quiet_for_2s_or_gone() -> bool:  # 2 s: over six deadlines without a message
            now = {c["id"]: c for c in await redis.client_list(_type="pubsub")}
            return listener["id"] not in now or int(now[listener["id"]]["idle"]) >= 2

        await wait_for(quiet_for_2s_or_gone, within=30)
        assert listener["id"] in {c["id"] for c in await redis.client_list(_type="pubsub")}, (
            "the listener's subscription was dropped during a quiet spell"
        )
        await node_b.emit("notification", {"n": 1}, room="user:1", namespace="/notify")
        message = await asyncio.wait_for(received.get(), timeout=10)
        assert message["event"] == "notification" and message["data"] == [{"n": 1}]
    finally:
        node_a.thread.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await node_a.thread
        for manager in (node_a, node_b):
            if manager.redis is not None:
                await manager.redis.aclose()
        await redis.aclose()
