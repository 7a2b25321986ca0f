"""一案一录 across nodes: a recording whose node died and never came back, a room taken over
by another node, a node that lost a room's lease, a node starting while another still
records into the shared folder, and a worker killed in the middle of a job. PostgreSQL and a
real Redis, as a cluster runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix, retry_key_prefix
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from sqlalchemy import select

from config.audit import AuditEvent
from config.db import Database
from config.settings import Settings
from media.room import Relay
from media.transport import announce_addresses
from recorder.composite import visit_end, visit_start
from recorder.jobs import Pipeline
from recorder.manifest import verify
from recorder.models import Integrity, Recording
from recorder.sink import RecorderSink
from recorder.state import RecordingState, TrackFile, VisitRecording, load_state, save_state
from recorder.worker import JOB_LEASE_S, LEASE_LOST_EXIT
from signaling.placement import RedisPlacement
from tests.conftest import MakeClient, PostgresServer, RedisServer
from tests.helpers import login, wait_for, wait_until
from tests.media_fixtures import PacketCounter, publish_av
from tests.visits import Peer, _cookie
from web.app import create_app
from web.keys import VISITS

pytestmark = [pytest.mark.redis, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> Settings:
    """A node of a cluster: PostgreSQL and Redis (emptied: other tests share the server and
    may leave leases and jobs)."""
    with SyncRedis.from_url(redis_server.url) as redis:
        redis.flushdb()
    return Settings(
        data_dir=tmp_path / "var",
        database_url=postgres_server.create_database(f"vr_mnrec_{uuid.uuid4().hex[:8]}"),
        redis_url=redis_server.url,
        transcribe_engine="none",
        secret_key="n" * 40,
    )


# A node recording a visit, killed with SIGKILL by the test: what a node that dies leaves.
DYING_NODE = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[2])
    from media.room import Relay
    from media.transport import announce_addresses
    from recorder.sink import RecorderSink
    from tests.media_fixtures import publish_av

    async def main():
        announce_addresses(["127.0.0.1"])
        relay = Relay(sinks=[RecorderSink(sys.argv[1])])
        room = relay.room(sys.argv[3])
        room.describe("p1", "petitioner", "王某某")
        room.start_recording({})
        await publish_av(room, "p1")
        print("recording", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def written_seconds(path: Path) -> float:
    """Seconds of media in a file being written (up to its last complete frame)."""
    last = 0.0
    try:
        with av.open(str(path)) as container:
            for packet in container.demux():
                if packet.pts is not None and packet.time_base is not None:
                    last = max(last, float(packet.pts * packet.time_base))
    except (av.FFmpegError, OSError, EOFError):
        pass
    return last


def node_dies_recording(tmp_path: Path, root: Path, visit_id: str, seconds: float) -> float:
    """A node records ``visit_id`` into ``root`` until every track holds ``seconds`` of
    media, then is killed (SIGKILL: nothing closed, recording.json as it last saved it);
    returns when."""
    script = tmp_path / "dying_node.py"
    script.write_text(DYING_NODE)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root), str(ROOT), visit_id],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    folder = root / visit_id

    def written() -> float:
        state = load_state(folder)
        if state is None or len([t for t in state.tracks if t.files]) < 2:
            return 0.0
        return min(written_seconds(folder / t.files[0]) for t in state.tracks)

    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "recording"
        wait_until(lambda: written() >= seconds, timeout=60, what=f"{seconds} s written")
        os.kill(proc.pid, signal.SIGKILL)
        return time.time()
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- 1. a node that died


async def test_a_recording_whose_node_died_is_repaired_when_it_is_finalized(
    tmp_path: Path, migrated: Settings, visit: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node holding the room died and never came back: nobody runs its start-up
    recovery. recording.json still says ``recording``, each track's end as of its first
    frame. When the visit is ended (abandoned, from another node), finalize waits, sees
    nothing move, and repairs the folder itself: the files are made playable, the recording
    is marked interrupted (row and audit trail), and its duration is what the files hold,
    not the span of the tracks' first frames."""
    from concurrent.futures import ThreadPoolExecutor

    from recorder import jobs

    # the waits, not what they decide (finalize's own: a minute, then 10 s quiet)
    monkeypatch.setattr(jobs, "CLOSE_WAIT_S", 0.5, raising=False)
    monkeypatch.setattr(jobs, "QUIET_S", 0.5, raising=False)
    root = migrated.resolved_recordings_dir
    died = await asyncio.to_thread(node_dies_recording, tmp_path, root, visit["id"], 3.0)
    folder = root / visit["id"]
    stale = load_state(folder)
    assert stale is not None and stale.state is RecordingState.recording

    database = Database(migrated)
    pipeline = Pipeline(database, migrated, executor=ThreadPoolExecutor(1))
    try:
        await pipeline.recording_started(visit["id"])
        await pipeline.enqueue(visit["id"], {})
        await pipeline.wait(visit["id"])
        async with database.reader() as db:
            row = await db.get(Recording, visit["id"])
            events = (
                await db.scalars(
                    select(AuditEvent).where(
                        AuditEvent.action == "recording.interrupted",
                        AuditEvent.target_id == visit["id"],
                    )
                )
            ).all()
        assert row is not None and row.integrity == Integrity.signed.value, row and row.message
        assert row.duration_seconds is not None and row.duration_seconds >= 2.5
        assert row.interrupted_at is not None
        assert died - 2.5 <= row.interrupted_at.timestamp() <= died
        assert len(events) == 1 and events[0].detail["interrupted_at"]
        state = load_state(folder)
        assert state is not None and state.state is RecordingState.interrupted
        assert visit_end(state) - visit_start(state) >= 2.5
        for track in state.tracks:
            assert track.ended and len(track.interrupted_originals) == 1
            assert [Path(f).stem.endswith("-repaired") for f in track.files] == [True]
        with av.open(str(folder / "composite.mp4")) as composite:
            assert composite.duration is not None and composite.duration / 1e6 >= 2.5
        assert verify(folder).ok
    finally:
        await pipeline.close()
        await database.dispose()


async def second_node_records(
    root: Path, visit_id: str, seconds: float
) -> tuple[list[tuple[str, float | None]], float]:
    """Another node's recorder opens the visit's room and records a petitioner (p2) for
    ``seconds``, then stops: the interruptions it reported, and when it stopped."""
    told: list[tuple[str, float | None]] = []
    sink = RecorderSink(root)
    sink.on_interrupted = lambda *a: told.append(a)
    counter = PacketCounter()
    relay = Relay(sinks=[sink, counter])
    room = relay.room(visit_id)
    room.describe("p2", "petitioner", "王某某")
    room.start_recording()
    pc = await publish_av(room, "p2")
    try:
        await wait_for(counter.recorded(seconds, "p2"))
        room.stop_recording()
        stopped = time.time()
        await asyncio.to_thread(sink.flush)
    finally:
        await room.close()
        await pc.close()
        sink.close()
    return told, stopped


async def test_a_room_taken_over_from_a_node_that_died_repairs_its_files_first(
    tmp_path: Path,
) -> None:
    """The node holding the room died; the room opens again on another node, whose
    recorder finds the folder still marked ``recording`` by a recorder that is not itself:
    it repairs the first node's files, marks the recording interrupted at their last frames
    (and says so, for the row and the audit trail), then records on. The first node's
    tracks keep their own end, not the second node's stop."""
    announce_addresses(["127.0.0.1"])
    root = tmp_path / "recordings"
    visit_id = "7" * 32
    died = await asyncio.to_thread(node_dies_recording, tmp_path, root, visit_id, 2.0)
    first = load_state(root / visit_id)
    assert first is not None
    first_ids = {t.track_id for t in first.tracks}
    # its room's lease lapsed before another node could take it: the dead node's last save
    # is older than a live writer's would be
    long_ago = time.time() - 60
    os.utime(root / visit_id / "recording.json", (long_ago, long_ago))

    told, stopped = await second_node_records(root, visit_id, 2.0)

    state = load_state(root / visit_id)
    assert state is not None and state.state is RecordingState.queued
    assert state.interrupted_at is not None and died - 2.5 <= state.interrupted_at <= died
    assert told == [(visit_id, state.interrupted_at)]
    theirs = [t for t in state.tracks if t.track_id in first_ids]
    ours = [t for t in state.tracks if t.track_id not in first_ids]
    assert len(theirs) == 2 and len(ours) == 2
    for track in theirs:
        assert track.ended and len(track.interrupted_originals) == 1
        assert [Path(f).stem.endswith("-repaired") for f in track.files] == [True]
        assert track.wall_end is not None and died - 2.5 <= track.wall_end <= died < stopped
    for track in ours:
        assert track.wall_start is not None and track.wall_start >= died
        assert track.wall_end is not None and track.wall_end <= stopped
    assert visit_end(state) - visit_start(state) >= 4.0  # both nodes' spans and the outage


# ---------------------------------------------------------------- 2. a node starting


async def test_a_starting_node_leaves_alone_the_folders_of_rooms_held_elsewhere(
    aiohttp_server: Any, migrated: Settings, redis_server: RedisServer
) -> None:
    """A node's start-up recovery repairs the folders still marked ``recording`` on the
    shared storage, but not one whose room another node holds now (it may be writing it):
    that folder is left exactly as it is. Rooms held by nobody, or by this node before it
    restarted, are repaired as before."""
    root = migrated.resolved_recordings_dir
    ids = {"elsewhere": "a1" * 16, "nobody": "b2" * 16, "here": "c3" * 16}
    for visit_id in ids.values():
        folder = root / visit_id
        (folder / "tracks").mkdir(parents=True)
        (folder / "tracks" / "petitioner-camera-v1.webm").write_bytes(b"\x1a\x45\xdf\xa3 live")
        track = TrackFile("v1", "p1", "petitioner", "王某某", "video", "vp8", "camera",
                          ["tracks/petitioner-camera-v1.webm"], time.time())  # fmt: skip
        save_state(folder, VisitRecording(visit_id=visit_id, tracks=[track], writer="n2:1:ab"))
    redis = Redis.from_url(redis_server.url)
    try:
        await redis.set(RedisPlacement.key(ids["elsewhere"]), b"http://node-2:8445", px=60_000)
        await redis.set(RedisPlacement.key(ids["here"]), migrated.node_url.encode(), px=60_000)
        before = {
            p.relative_to(root): p.read_bytes()
            for p in (root / ids["elsewhere"]).rglob("*")
            if p.is_file()
        }
        await aiohttp_server(create_app(migrated))  # starts: its recovery has run

        after = {
            p.relative_to(root): p.read_bytes()
            for p in (root / ids["elsewhere"]).rglob("*")
            if p.is_file()
        }
        assert after == before
        for name in ("nobody", "here"):
            state = load_state(root / ids[name])
            assert state is not None and state.state is RecordingState.interrupted, name
    finally:
        await redis.aclose()


# ---------------------------------------------------------------- 3. a lost lease


async def test_two_nodes_writing_one_visit_keep_each_others_tracks(tmp_path: Path) -> None:
    """Two nodes held one visit's room for a while (the first cut off from Redis for longer
    than a lease, the second opening the room meanwhile): each saves its own tracks merged
    with those the file holds, so neither's tracks vanish whoever saves last, and each track
    keeps the end its own node wrote."""
    announce_addresses(["127.0.0.1"])
    root = tmp_path / "recordings"
    visit_id = "8" * 32
    first, second = RecorderSink(root), RecorderSink(root)
    first.save_seconds = 0.5  # its periodic save (SAVE_SECONDS), sooner
    counters = PacketCounter(), PacketCounter()
    relays = Relay(sinks=[first, counters[0]]), Relay(sinks=[second, counters[1]])
    rooms = relays[0].room(visit_id), relays[1].room(visit_id)
    rooms[0].describe("p1", "judge", "接访法官")
    rooms[1].describe("p2", "petitioner", "王某某")
    pcs = []
    try:
        rooms[0].start_recording()
        pcs.append(await publish_av(rooms[0], "p1"))
        await wait_for(counters[0].recorded(1.5, "p1"))
        rooms[1].start_recording()
        pcs.append(await publish_av(rooms[1], "p2"))
        await wait_for(counters[1].recorded(1.5, "p2"))
        rooms[1].stop_recording()  # the second node's visit part ends first
        second_stopped = time.time()
        await asyncio.to_thread(second.flush)
        ours = load_state(root / visit_id)
        assert ours is not None and {t.participant_id for t in ours.tracks} == {"p1", "p2"}

        async def first_still_records() -> bool:  # its tracks, which the takeover had ended
            state = load_state(root / visit_id)
            assert state is not None and {t.participant_id for t in state.tracks} == {"p1", "p2"}
            return state.state is RecordingState.recording and not any(
                t.ended for t in state.tracks if t.participant_id == "p1"
            )

        await wait_for(first_still_records, within=10)
        await wait_for(counters[0].recorded(3.5, "p1"))
        rooms[0].stop_recording()  # the first node learns it lost the lease: saves last
        first_stopped = time.time()
        await asyncio.to_thread(first.flush)
    finally:
        for room in rooms:
            await room.close()
        for pc in pcs:
            await pc.close()
        first.close()
        second.close()

    state = load_state(root / visit_id)
    assert state is not None and state.state is RecordingState.queued
    by_participant: dict[str, list[Any]] = {}
    for track in state.tracks:
        by_participant.setdefault(track.participant_id, []).append(track)
    assert sorted((p, len(t)) for p, t in by_participant.items()) == [("p1", 2), ("p2", 2)]
    for track in by_participant["p1"]:  # as the first node closed them: whole, its end
        assert track.ended and track.interrupted_originals == []
        assert track.wall_end is not None and second_stopped < track.wall_end <= first_stopped
        assert not Path(track.files[0]).stem.endswith("-repaired")
    for track in by_participant["p2"]:
        assert track.ended and track.wall_end is not None
        assert track.wall_end <= second_stopped


async def test_a_node_that_lost_a_rooms_lease_closes_it_and_its_pages_go_to_the_owner(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings, redis_server: RedisServer
) -> None:
    """This node was cut off from Redis for longer than a lease, and another node took the
    visit's room: at its next renewal this node finds it, closes its room (everyone told
    ``server_closing`` and removed, the recording's files closed), and closes their
    connections so the pages reconnect; joining again here, they are sent to the owner."""
    staff = await make_client()
    visits = staff.server.app[VISITS]
    visits.placement = RedisPlacement(
        Redis.from_url(redis_server.url), visits.placement.node_url, lease_seconds=0.9
    )
    redis = Redis.from_url(redis_server.url)
    peers: list[Peer] = []
    try:
        await login(staff, "judge_a")
        judge = await Peer().connect(staff, _cookie(staff))
        peers.append(judge)
        closing: asyncio.Queue[Any] = asyncio.Queue()
        judge.sio.on("server_closing", closing.put_nowait, namespace="/visit")
        assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
        guest = await Peer().connect(staff)
        peers.append(guest)
        entered = await guest.call(
            "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
        )
        assert entered["ok"], entered
        assert (await judge.call("admit", {"participant_id": entered["participant_id"]}))["ok"]
        folder = migrated.resolved_recordings_dir / visit["id"]

        async def recording() -> bool:
            state = load_state(folder)
            return state is not None and state.state is RecordingState.recording

        await wait_for(recording)

        await redis.set(RedisPlacement.key(visit["id"]), b"http://node-2:8445", px=60_000)
        await asyncio.wait_for(closing.get(), timeout=30)

        async def closed() -> bool:
            state = load_state(folder)
            return (
                visit["id"] not in visits.rooms
                and not judge.sio.connected
                and not guest.sio.connected
                and state is not None
                and state.state is RecordingState.queued
            )

        await wait_for(closed)
        again = await Peer().connect(staff, _cookie(staff))
        peers.append(again)
        moved = await again.call("join", {"v": 1, "visit_id": visit["id"]})
        assert moved["ok"] is False and moved["error"]["code"] == "wrong_node", moved
        assert moved["error"]["details"] == {"node": "http://node-2:8445"}
    finally:
        for peer in peers:
            if peer.sio.connected:
                await peer.close()
        await visits.placement.close()
        await redis.aclose()


# ---------------------------------------------------------------- 5. a worker killed


@pytest.fixture
async def queued_recording(
    migrated: Settings, visit: dict[str, Any]
) -> AsyncIterator[tuple[Database, ArqRedis, Path]]:
    """The visit ended; its recording is on the queue, its folder still marked
    ``recording`` (finalize waits for it, up to a minute: a job that runs that long)."""
    folder = migrated.resolved_recordings_dir / visit["id"]
    folder.mkdir(parents=True)
    save_state(folder, VisitRecording(visit_id=visit["id"]))
    database = Database(migrated)
    queue = await create_pool(RedisSettings.from_dsn(str(migrated.redis_url)))
    pipeline = Pipeline(database, migrated, queue=queue)
    try:
        await pipeline.recording_started(visit["id"])
        await pipeline.enqueue(visit["id"], {})
        await pipeline.wait(visit["id"])
        yield database, queue, folder
    finally:
        await pipeline.close()
        await queue.aclose()
        await database.dispose()


# `vreception worker` (web/cli.py, which loads every table's model) with a shorter lease
WORKER = "import sys, web.cli; from config.settings import load_settings; " + (
    "from recorder.worker import create_worker; "
    "create_worker(load_settings(), lease_seconds=float(sys.argv[1])).run()"
)


@pytest.fixture
def start_worker(migrated: Settings, tmp_path: Path) -> Iterator[Any]:
    """``start_worker(lease)`` → a ``vreception worker`` process whose jobs hold a lease of
    ``lease`` seconds (its log in ``worker-<n>.log``)."""
    started: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "VRECEPTION_DATA_DIR": str(migrated.data_dir),
        "DATABASE_URL": str(migrated.database_url),
        "REDIS_URL": str(migrated.redis_url),
        "VRECEPTION_SECRET_KEY": "n" * 40,
        "VRECEPTION_TRANSCRIBE_ENGINE": "none",
    }

    def start(lease: float) -> subprocess.Popen[bytes]:
        with (tmp_path / f"worker-{len(started)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", WORKER, str(lease)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def step_processes(pid: int) -> list[int]:
    """The step processes (multiprocessing's spawned children) of the worker ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid and b"spawn_main" in cmdline:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def _row(database: Database, visit_id: str) -> Recording:
    async with database.reader() as db:
        row = await db.get(Recording, visit_id)
    assert row is not None
    return row


async def test_a_job_lost_with_its_killed_worker_is_run_again_within_a_lease(
    queued_recording: tuple[Database, ArqRedis, Path],
    start_worker: Any,
    visit: dict[str, Any],
) -> None:
    """The worker running a recording's job is killed (SIGKILL: nothing in Redis cleaned
    up). Another worker runs the job again once the lease lapses (minutes, not arq's 6 h
    time limit), and signs the recording."""
    assert JOB_LEASE_S <= 600
    database, queue, folder = queued_recording
    job_id = f"recording:{visit['id']}"
    first = start_worker(2.0)

    async def running() -> bool:
        row = await _row(database, visit["id"])
        return row.state is RecordingState.processing and bool(
            await queue.exists(in_progress_key_prefix + job_id)
        )

    await wait_for(running, within=60)
    assert 0 < await queue.pttl(in_progress_key_prefix + job_id) <= 2000  # one lease
    first.kill()
    first.wait()
    # what the node's sink would have done long ago: the files closed
    save_state(folder, VisitRecording(visit_id=visit["id"], state=RecordingState.queued))
    await signed_by(start_worker(2.0), database, visit["id"], folder)


async def signed_by(worker: Any, database: Database, visit_id: str, folder: Path) -> None:
    """``worker`` (alive throughout) signs the recording, and it verifies."""

    async def signed() -> bool:
        assert worker.poll() is None, "the worker exited"
        row = await _row(database, visit_id)
        return row.integrity == Integrity.signed.value

    await wait_for(signed, within=60)
    assert verify(folder).ok


async def test_a_job_keeps_its_lease_while_it_runs_and_stops_when_it_loses_it(
    queued_recording: tuple[Database, ArqRedis, Path],
    start_worker: Any,
    visit: dict[str, Any],
) -> None:
    """A job running for several leases renews its lease: no other worker starts it
    meanwhile. A worker that could not renew its lease in time (frozen here; cut off from
    Redis alike) has lost it: the job is another worker's now, so once it runs again it
    kills its step process and exits at once, never processing the recording beside the
    other worker, which finishes it."""
    database, queue, folder = queued_recording
    job_id = f"recording:{visit['id']}"
    workers = [start_worker(1.0), start_worker(1.0)]

    async def stepping() -> bool:
        return any(step_processes(w.pid) for w in workers)

    await wait_for(stepping, within=60)
    deadline = time.monotonic() + 4.0  # four leases
    while time.monotonic() < deadline:
        assert await queue.get(retry_key_prefix + job_id) == b"1", "the job started twice"
        assert all(w.poll() is None for w in workers)
        await asyncio.sleep(0.1)

    holder = next(w for w in workers if step_processes(w.pid))
    other = next(w for w in workers if w is not holder)
    (step,) = step_processes(holder.pid)
    for pid in (holder.pid, step):
        os.kill(pid, signal.SIGSTOP)
    try:

        async def taken_up() -> bool:  # the lease lapsed: the other worker runs the job
            return await queue.get(retry_key_prefix + job_id) == b"2"

        await wait_for(taken_up, within=30)
    finally:
        for pid in (step, holder.pid):
            os.kill(pid, signal.SIGCONT)

    async def stopped() -> bool:
        return holder.poll() is not None and not alive(step)

    await wait_for(stopped, within=10)
    assert holder.returncode == LEASE_LOST_EXIT
    save_state(folder, VisitRecording(visit_id=visit["id"], state=RecordingState.queued))
    await signed_by(other, database, visit["id"], folder)


async def test_a_room_taken_from_a_node_still_writing_merges_and_repairs_nothing(
    tmp_path: Path,
) -> None:
    """The first node lost the room's lease but lives (its last save is recent): the second
    node's recorder repairs none of its files and marks nothing interrupted; the saves keep
    each other's tracks."""
    announce_addresses(["127.0.0.1"])
    root = tmp_path / "recordings"
    visit_id = "8" * 32
    await asyncio.to_thread(node_dies_recording, tmp_path, root, visit_id, 1.0)
    first = load_state(root / visit_id)
    assert first is not None
    told, _ = await second_node_records(root, visit_id, 1.0)
    state = load_state(root / visit_id)
    assert state is not None and told == [] and state.interrupted_at is None
    # the first node's tracks are not ended: the folder is still being written, not queued
    # for the pipeline (which would finalize it under that node)
    assert state.state is RecordingState.recording
    assert {t.track_id for t in first.tracks} <= {t.track_id for t in state.tracks}
    assert not list((root / visit_id / "tracks").glob("*-repaired*"))


async def test_a_recording_stopped_and_started_again_keeps_every_files_entry(
    tmp_path: Path,
) -> None:
    """The room's recording stops and starts again while the tracks go on (a rejoin while
    the room closes): each track then has two entries with one id, files before and after,
    and every save keeps both (a merge keyed by track id kept the last, the first files fell
    out of recording.json and could be signed as absent)."""
    announce_addresses(["127.0.0.1"])
    root = tmp_path / "recordings"
    visit_id = "9" * 32
    sink = RecorderSink(root)
    counter = PacketCounter()
    relay = Relay(sinks=[sink, counter])
    room = relay.room(visit_id)
    room.describe("p1", "petitioner", "王某某")
    room.start_recording()
    pc = await publish_av(room, "p1")
    try:
        await wait_for(counter.recorded(1.0, "p1"))
        room.stop_recording()
        room.start_recording()
        await wait_for(counter.recorded(2.0, "p1"))
        room.stop_recording()
        await asyncio.to_thread(sink.flush)
    finally:
        await room.close()
        await pc.close()
        sink.close()
    state = load_state(root / visit_id)
    assert state is not None
    by_id: dict[str, list[str]] = {}
    for track in state.tracks:
        by_id.setdefault(track.track_id, []).extend(track.files)
    assert len(by_id) == 2 and all(len(files) == 2 for files in by_id.values()), by_id
    on_disk = {p.name for p in (root / visit_id / "tracks").iterdir()}
    assert {Path(f).name for files in by_id.values() for f in files} == on_disk
