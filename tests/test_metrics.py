"""/metrics shows what operators watch, from a real visit with media; the example alert rules
and the Grafana dashboard in config/monitoring/ use only names a real scrape has."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from aiortc.rtp import is_rtcp
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from config.db import Database, utcnow
from config.settings import Settings
from media.encoded import tap_receiver
from media.room import Relay
from media.transport import create_peer_connection
from recorder.jobs import STEP_RUNS, publish_step_runs
from recorder.models import Recording, RecordingState
from recorder.sink import RecorderSink
from tests.conftest import ROOT, MakeClient, RedisServer
from tests.helpers import login, wait_for
from tests.media_fixtures import publish_av
from tests.visits import Peer, _cookie
from web.app import create_app
from web.keys import DB, REDIS
from web.metrics import LAG_BUCKETS, SNAPSHOT_KEY, LoopLag, ServerCollector, Snapshot, refresh

MONITORING = ROOT / "config" / "monitoring"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: TestClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def metric_names(expression: str) -> set[str]:
    return set(re.findall(r"\b(?:vreception|process)_[a-z0-9_]+", expression))


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


async def _drain(track: Any, counts: dict[str, int]) -> None:
    try:
        while True:
            await track.recv()
            counts[track.kind] += 1
    except MediaStreamError:
        pass


async def test_a_visit_with_media_moves_the_metrics_the_rules_and_dashboard_use(
    make_client: MakeClient, visit: dict[str, Any]
) -> None:
    """A judge publishes camera and microphone through /visit, the admitted petitioner
    receives them: one room, two participants, packets and bytes both ways, keyframe
    requests, one recording being written; after the end no recording is being written and
    the pipeline's first step is timed. Every metric the example alert rules and the
    Grafana dashboard use is in that scrape."""
    staff = await make_client()
    await login(staff, "judge_a")
    before = await scrape(staff)
    assert value(before, "vreception_rooms") == 0
    assert value(before, "vreception_relay_packets_total", direction="in") == 0

    judge = await Peer().connect(staff, _cookie(staff))
    judge_joined = await judge.call("join", {"v": 1, "visit_id": visit["id"]})
    assert judge_joined["ok"]
    guest = await Peer().connect(staff)
    joined = await guest.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
    )
    publisher = create_peer_connection()
    publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
    publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await publisher.setLocalDescription(await publisher.createOffer())
    answer = await judge.call("publish", {"type": "offer", "sdp": publisher.localDescription.sdp})
    await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    assert (await judge.call("admit", {"participant_id": joined["participant_id"]}))["ok"]
    await guest.next("admitted")

    subscriber = create_peer_connection()
    received = {"audio": 0, "video": 0}
    tasks: list[asyncio.Task[None]] = []

    @subscriber.on("track")
    def on_track(track: Any) -> None:
        receiver = next(r for r in subscriber.getReceivers() if r.track is track)
        tap_receiver(receiver)
        tasks.append(asyncio.create_task(_drain(track, received)))

    offer = await guest.call("subscribe")
    await subscriber.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
    await subscriber.setLocalDescription(await subscriber.createAnswer())
    sdp = subscriber.localDescription.sdp
    assert (await guest.call("subscribe_answer", {"type": "answer", "sdp": sdp}))["ok"]

    async def flowing() -> bool:
        return received["video"] >= 20 and received["audio"] >= 20

    await wait_for(flowing, within=60)
    live = await scrape(staff)
    # nobody's browser reported its downlink yet: the judge is told the ceiling
    told = {"room": visit["id"], "participant": judge_joined["participant_id"]}
    assert value(live, "vreception_publisher_video_kbps", **told, source="camera") == 1500
    assert value(live, "vreception_rooms") == 1
    assert value(live, "vreception_participants") == 2
    assert value(live, "vreception_tracks", kind="video") == 1
    assert value(live, "vreception_tracks", kind="audio") == 1
    assert value(live, "vreception_recordings_writing") == 1
    assert value(live, "vreception_recordings_write_failing") == 0
    for name in (
        "vreception_relay_packets_total",
        "vreception_relay_frames_total",
        "vreception_relay_bytes_total",
    ):
        assert value(live, name, direction="in") > 0, name
        assert value(live, name, direction="out") > 0, name
    assert value(live, "vreception_relay_frames_total", direction="out") >= 40
    assert value(live, "vreception_relay_keyframe_requests_total", direction="in") > 0
    # one layer published here (aiortc peers): no layer switched, no link probed
    assert value(live, "vreception_relay_layer_switches_total") == 0
    assert value(live, "vreception_relay_probe_padding_bytes_total") == 0
    assert value(live, "vreception_relay_frame_ends_repeated_total") == 0  # no loss here
    assert value(live, "vreception_room_packets_total", room=visit["id"], direction="in") > 0
    assert value(live, "vreception_room_packets_total", room=visit["id"], direction="out") > 0
    assert value(live, "process_cpu_seconds_total") > 0
    assert value(live, "vreception_event_loop_lag_seconds_count") > 0  # measured from the start

    async def written() -> bool:
        return value(await scrape(staff), "vreception_recording_bytes_written_total") > 0

    await wait_for(written, within=30)  # the writer thread works in batches

    assert (await judge.call("end"))["ok"]

    async def processed() -> bool:
        after = await scrape(staff)
        step = (
            "vreception_pipeline_step_seconds_count",
            (("outcome", "done"), ("step", "finalize")),
        )
        return after.get(step, 0) >= 1 and value(after, "vreception_recordings_writing") == 0

    await wait_for(processed, within=120)
    after = await scrape(staff)
    assert value(after, "vreception_rooms") == 0
    assert value(after, "vreception_participants") == 0
    # counters keep what the closed room carried (they never go backwards)
    for name in ("vreception_relay_packets_total", "vreception_relay_bytes_total"):
        for direction in ("in", "out"):
            assert value(after, name, direction=direction) >= value(
                live, name, direction=direction
            ), (name, direction)
    assert value(after, "vreception_pipeline_step_seconds_sum", step="finalize", outcome="done") > 0

    scraped = {name for name, _ in [*live, *after]}  # per-room series live with their room
    for expression in rule_expressions() + dashboard_expressions():
        # `up` is Prometheus's own series of each target (whether its scrape answered)
        names = metric_names(expression) | set(re.findall(r"\bup(?=\{)", expression))
        assert names, expression
        assert names - {"up"} <= scraped, (expression, names - scraped)

    for task in tasks:
        task.cancel()
    await publisher.close()
    await subscriber.close()
    await guest.close()
    await judge.close()


async def test_a_failed_login_counts_by_reason_without_the_user_name(client: TestClient) -> None:
    before = await scrape(client)
    assert value(before, "vreception_login_failures_total", reason="bad_credentials") == 0
    answer = await client.post(
        "/api/v1/auth/login", json={"username": "judge_a", "password": "not-the-password"}
    )
    assert answer.status == 401
    after = await scrape(client)
    assert value(after, "vreception_login_failures_total", reason="bad_credentials") == 1
    assert value(after, "vreception_login_failures_total", reason="blocked") == 0
    text = await (await client.get("/metrics")).text()
    assert "judge_a" not in text


async def test_a_recording_queued_too_long_and_the_disk_are_reported(
    make_client: MakeClient, visit: dict[str, Any], migrated: Settings
) -> None:
    """The pipeline-stuck alert's figure: how long the longest-waiting recording has been
    queued; and the recordings disk's free space, as the filesystem reports it."""
    client = await make_client()
    app = client.server.app
    async with Database(migrated).writer() as db:
        db.add(
            Recording(
                visit_id=visit["other"],
                state=RecordingState.queued,
                folder=str(migrated.resolved_recordings_dir / visit["other"]),
                ended_at=utcnow() - timedelta(hours=2),
                details={},
            )
        )
    await refresh(app[SNAPSHOT_KEY], app[DB], migrated.resolved_recordings_dir)
    samples = await scrape(client)
    assert value(samples, "vreception_pipeline_queue_length") == 1
    assert value(samples, "vreception_recordings", state="queued") == 1
    waited = value(samples, "vreception_pipeline_oldest_pending_seconds")
    assert 2 * 3600 <= waited < 2 * 3600 + 600
    assert value(samples, "vreception_monitor_database_up") == 1

    usage = shutil.disk_usage(migrated.data_dir)
    ratio = value(samples, "vreception_recordings_disk_free_ratio")
    assert value(samples, "vreception_recordings_disk_size_bytes") == usage.total
    assert abs(ratio - usage.free / usage.total) < 0.01


@pytest.mark.redis
async def test_with_redis_the_step_durations_workers_publish_are_reported(
    aiohttp_server: Any, migrated: Settings, redis_server: RedisServer
) -> None:
    """With Redis the steps run in `vreception worker` processes: what they publish is in
    every node's scrape."""
    settings = migrated.model_copy(update={"redis_url": redis_server.url})
    server = await aiohttp_server(create_app(settings))
    client = TestClient(server)
    await client.start_server()
    redis = Redis.from_url(redis_server.url)
    try:
        await redis.delete(STEP_RUNS)
        first = {("finalize", "done"): (2, 3.0)}
        await publish_step_runs(redis, {}, first)  # one worker's first jobs
        later = {("finalize", "done"): (3, 4.5), ("sign", "failed"): (1, 0.25)}
        await publish_step_runs(redis, first, later)  # and its next ones: only the increase
        app = server.app
        await refresh(app[SNAPSHOT_KEY], app[DB], settings.resolved_recordings_dir, app[REDIS])
        samples = await scrape(client)
        done = {"step": "finalize", "outcome": "done"}
        assert value(samples, "vreception_pipeline_step_seconds_count", **done) == 3
        assert value(samples, "vreception_pipeline_step_seconds_sum", **done) == 4.5
        failed = {"step": "sign", "outcome": "failed"}
        assert value(samples, "vreception_pipeline_step_seconds_count", **failed) == 1
    finally:
        await redis.delete(STEP_RUNS)
        await redis.aclose()
        await client.close()


async def test_a_recording_that_cannot_be_written_is_counted(tmp_path: Path) -> None:
    """The recordings folder is a file: recording.json cannot be written, the failure is
    counted once and the visit reported failing (the write-failure alert's figures)."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    sink = RecorderSink(blocked)
    relay = Relay(sinks=[sink])
    registry = CollectorRegistry()
    try:
        relay.room("v1").start_recording()
        await asyncio.to_thread(sink.flush)
        app = web.Application()
        app[SNAPSHOT_KEY] = Snapshot()
        registry.register(ServerCollector(app, relay, sink))
        assert registry.get_sample_value("vreception_recordings_writing") == 1
        assert registry.get_sample_value("vreception_recording_write_failures_total") == 1
        assert registry.get_sample_value("vreception_recordings_write_failing") == 1
        relay.room("v1").start_recording()  # the same failure is not counted twice
        await asyncio.to_thread(sink.flush)
        assert registry.get_sample_value("vreception_recording_write_failures_total") == 1
    finally:
        await relay.close_room("v1")
        sink.close()


def _lossy(pc: Any, every: int = 7) -> None:
    """Drop every ``every``-th RTP packet (never RTCP) this connection sends."""
    transport = pc.getSenders()[0].transport
    original, sent = transport._send_rtp, [0]

    async def send(data: bytes) -> None:
        if not is_rtcp(data):
            sent[0] += 1
            if sent[0] % every == 0:
                return
        await original(data)

    transport._send_rtp = send


async def test_loss_nacks_and_keyframe_requests_are_counted_per_direction() -> None:
    """Packets lost between a publisher and the relay, and between the relay and a
    subscriber: the relay sees the first loss and NACKs it (in), the subscriber reports the
    second and NACKs it (out); a subscriber's PLI is counted (out) and passed up (in)."""
    relay = Relay()
    room = relay.room("v1")
    publisher = await publish_av(room, "p1")
    _lossy(publisher)
    subscriber = create_peer_connection()
    tasks: list[asyncio.Task[None]] = []
    received = {"audio": 0, "video": 0}

    @subscriber.on("track")
    def on_track(track: Any) -> None:
        receiver = next(r for r in subscriber.getReceivers() if r.track is track)
        tap_receiver(receiver)
        tasks.append(asyncio.create_task(_drain(track, received)))

    offer = await room.subscribe("p2")
    assert offer is not None
    await subscriber.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
    await subscriber.setLocalDescription(await subscriber.createAnswer())
    await room.answer("p2", subscriber.localDescription.sdp)
    _lossy(room.subscribers["p2"])

    async def lossy_both_ways() -> bool:
        t = room.traffic()
        return t.lost_in > 0 and t.nacks_in > 0 and t.lost_out > 0 and t.nacks_out > 0

    await wait_for(lossy_both_ways, within=60)
    video = next(r for r in subscriber.getReceivers() if r.track.kind == "video")
    before = room.traffic()
    ssrc = video.getSynchronizationSources()[0].source
    await video._send_rtcp_pli(ssrc)  # the subscriber asks for a keyframe

    async def passed_up() -> bool:
        t = room.traffic()
        return t.keyframes_out > before.keyframes_out and t.keyframes_in > before.keyframes_in

    await wait_for(passed_up, within=30)
    during = room.traffic()
    assert during.packets_in > during.lost_in and during.packets_out > during.lost_out

    await relay.close_room("v1")  # what the room carried stays in the relay's totals
    for name in ("packets_in", "packets_out", "lost_in", "lost_out", "nacks_in", "frames_in"):
        assert getattr(relay.retired, name) >= getattr(during, name), name
    for task in tasks:
        task.cancel()
    await publisher.close()
    await subscriber.close()


def test_the_alert_rules_parse_and_cover_what_operators_are_alerted_on() -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    used = {name: metric_names(rule["expr"]) for name, rule in alerts.items()}
    covered = set().union(*used.values())
    for needed in (
        "vreception_recordings_write_failing",  # recording write failure
        "vreception_recordings_disk_free_ratio",  # disk below 10 %
        "vreception_pipeline_oldest_pending_seconds",  # pipeline stuck
        "process_cpu_seconds_total",  # relay CPU high
        "vreception_event_loop_lag_seconds_bucket",  # the event loop held up
    ):
        assert needed in covered, needed
    assert "< 0.10" in alerts["VreceptionRecordingsDiskLow"]["expr"]
    # a node that is down serves no figures at all: only Prometheus's own `up` tells
    assert alerts["VreceptionNodeDown"]["expr"] == 'up{job="vreception"} == 0'
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run ./scripts/test, which installs it")
    checked = subprocess.run(
        [promtool, "check", "rules", str(MONITORING / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_held_up_event_loop_is_measured_and_a_stall_of_a_second_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    lag = LoopLag(
        Histogram("vreception_event_loop_lag_seconds", "", buckets=LAG_BUCKETS, registry=registry)
    )
    with caplog.at_level("WARNING", logger="vreception.web"):
        for seconds in (0.002, 0.3, -0.001):  # a timer cannot run early: counted as 0
            lag.observe(seconds)
        lag.observe(1.6, cpu=1.5)
    name = "vreception_event_loop_lag_seconds"
    assert registry.get_sample_value(f"{name}_count") == 4
    assert registry.get_sample_value(f"{name}_bucket", {"le": "0.005"}) == 2
    assert registry.get_sample_value(f"{name}_bucket", {"le": "1.0"}) == 3  # one stall past 1 s
    assert registry.get_sample_value(f"{name}_sum") == pytest.approx(1.902)
    assert [r.getMessage() for r in caplog.records] == [
        "event loop held up 1.6 s (its own CPU meanwhile: 1.5 s): signaling, media and pages all "
        "waited"
    ]
