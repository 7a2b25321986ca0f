"""What ``/metrics`` shows operators beyond HTTP requests: the relay's rooms and traffic, the
recorder, the post-visit pipeline, the recordings' disk and login failures.

Values are gathered when Prometheus scrapes, from counters that already exist (media/room.py,
media/stats.py, recorder/sink.py, recorder/jobs.py). A scrape never waits for the database
or the disk: a background task reads the pipeline's rows and the disk's free space every
``REFRESH_SECONDS`` and the collector reports that snapshot. config/monitoring/ has alert
rules and a Grafana dashboard built on these names (tests/test_metrics.py keeps them true).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from sqlalchemy import func, select

from config.db import Database
from media.room import Relay, Room
from media.stats import Traffic
from recorder.jobs import StepRuns, read_step_runs
from recorder.models import Recording, RecordingState
from recorder.sink import RecorderSink
from web.keys import DB, PIPELINE, REDIS, SETTINGS

log = logging.getLogger("vreception.web")

REFRESH_SECONDS = 5.0
PENDING = (RecordingState.queued, RecordingState.processing)
# why a login failed: a wrong name or password, a disabled account, too many attempts
LOGIN_FAILURE_REASONS = ("bad_credentials", "inactive", "blocked")

LOGIN_FAILURES = web.AppKey("metric_login_failures", Counter)

# The event loop carries the signaling, the relay's media and every page request: how late
# it wakes is how long all of them waited. Pages say 连接中断 after 1.5 s without a ping.
LAG_INTERVAL_S = 0.25
LAG_WARN_S = 1.0
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopLag:
    """Measures how late the event loop runs a timer (every ``LAG_INTERVAL_S``): each
    delay goes to the ``vreception_event_loop_lag_seconds`` histogram, and one of
    ``LAG_WARN_S`` or more is logged (what held the loop: too many visits on one node,
    or a blocking call)."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram

    def observe(self, lag: float, cpu: float | None = None) -> None:
        """One timer ``lag`` seconds late; ``cpu``: the loop's own CPU seconds meanwhile
        (near the lag: its own work held it; far below: the machine did not run it)."""
        lag = max(0.0, lag)
        self.histogram.observe(lag)
        if lag >= LAG_WARN_S:
            log.warning(
                "event loop held up %.1f s%s: signaling, media and pages all waited",
                lag,
                "" if cpu is None else f" (its own CPU meanwhile: {cpu:.1f} s)",
            )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, cpu = loop.time() + LAG_INTERVAL_S, time.thread_time()
            await asyncio.sleep(LAG_INTERVAL_S)
            self.observe(loop.time() - due, time.thread_time() - cpu)


LOOP_LAG = web.AppKey("metric_loop_lag", LoopLag)


def count_login_failure(app: web.Application, reason: str) -> None:
    """One failed login (per reason only: never the user name, which would be a label)."""
    app[LOGIN_FAILURES].labels(reason).inc()


@dataclass
class Snapshot:
    """The slow figures, as of ``taken`` (monotonic time; 0: never)."""

    taken: float = 0.0
    database_up: bool = False
    states: dict[str, int] = field(default_factory=dict)
    oldest_pending: datetime | None = None  # when the longest-waiting recording was queued
    disk_free: int | None = None
    disk_total: int | None = None
    step_runs: StepRuns = field(default_factory=dict)  # run by workers (with Redis)


SNAPSHOT_KEY = web.AppKey("metric_snapshot", Snapshot)


def disk_usage(path: Path) -> tuple[int, int]:
    """(free bytes for unprivileged writers, size) of the filesystem holding ``path``, which
    may not exist yet (its nearest existing parent)."""
    probe = path.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return usage.free, usage.total


async def refresh(
    snapshot: Snapshot, database: Database, recordings: Path, redis: Redis | None = None
) -> None:
    """Read the pipeline's rows, the workers' step durations and the disk into ``snapshot``."""
    try:
        snapshot.disk_free, snapshot.disk_total = await asyncio.to_thread(disk_usage, recordings)
    except OSError as exc:
        log.warning("metrics: cannot read the recordings disk: %s", exc)
        snapshot.disk_free = snapshot.disk_total = None
    try:
        async with database.reader() as db:
            counted = await db.execute(
                select(Recording.state, func.count()).group_by(Recording.state)
            )
            states = {RecordingState(state).value: int(n) for state, n in counted.all()}
            since = await db.execute(
                select(Recording.ended_at, Recording.updated_at).where(Recording.state.in_(PENDING))
            )
            waiting = [ended or updated for ended, updated in since.all()]
    except Exception as exc:
        log.warning("metrics: database not reachable: %s", exc)
        snapshot.database_up = False
    else:
        snapshot.database_up = True
        snapshot.states = states
        snapshot.oldest_pending = min(waiting) if waiting else None
    if redis is not None:
        try:
            snapshot.step_runs = await read_step_runs(redis)
        except Exception as exc:
            log.warning("metrics: cannot read the workers' step durations: %s", exc)
    snapshot.taken = time.monotonic()


async def _refresher(app: web.Application) -> AsyncIterator[None]:
    snapshot = app[SNAPSHOT_KEY]
    recordings = app[SETTINGS].resolved_recordings_dir

    async def loop() -> None:
        while True:
            await refresh(snapshot, app[DB], recordings, app[REDIS])
            await asyncio.sleep(REFRESH_SECONDS)

    tasks = [
        asyncio.create_task(loop(), name="metrics-refresh"),
        asyncio.create_task(app[LOOP_LAG].run(), name="metrics-loop-lag"),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _legs(name: str, doc: str, inbound: int, outbound: int) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["direction"])
    family.add_metric(["in"], inbound)
    family.add_metric(["out"], outbound)
    return family


class ServerCollector(Collector):
    """The relay, the recorder, the pipeline and the disk, at scrape time (no I/O here)."""

    def __init__(self, app: web.Application, relay: Relay, sink: RecorderSink) -> None:
        self.app, self.relay, self.sink = app, relay, sink

    def collect(self) -> Iterator[Metric]:
        yield from self._relay()
        yield from self._recorder()
        yield from self._pipeline()
        yield from self._disk()

    def _relay(self) -> Iterator[Metric]:
        rooms = list(self.relay.rooms.values())
        yield GaugeMetricFamily("vreception_rooms", "Rooms open on this relay", len(rooms))
        yield GaugeMetricFamily(
            "vreception_participants",
            "Participants with a media connection on this relay",
            sum(len(room.participants) for room in rooms),
        )
        tracks = GaugeMetricFamily("vreception_tracks", "Published tracks live", labels=["kind"])
        for kind in ("audio", "video"):
            live = sum(1 for r in rooms for t in list(r.tracks.values()) if t.kind == kind)
            tracks.add_metric([kind], live)
        yield tracks
        yield from self._bandwidth(rooms)
        per_room = CounterMetricFamily(
            "vreception_room_packets",
            "RTP packets of each open room (in: from publishers, out: to subscribers)",
            labels=["room", "direction"],
        )
        total = self.relay.retired.copy()
        for room in rooms:
            traffic = room.traffic()
            total.add(traffic)
            per_room.add_metric([room.visit_id, "in"], traffic.packets_in)
            per_room.add_metric([room.visit_id, "out"], traffic.packets_out)
        yield per_room
        yield from self._traffic(total)

    @staticmethod
    def _bandwidth(rooms: list[Room]) -> Iterator[Metric]:
        """What each publisher is told it may send, and what each subscriber last reported."""
        told = GaugeMetricFamily(
            "vreception_publisher_video_kbps",
            "Video bitrate each publisher was last told it may send (REMB: the smallest of its "
            "subscribers' recent reports, or media_max_video_kbps)",
            labels=["room", "participant", "source"],
        )
        reported = GaugeMetricFamily(
            "vreception_subscriber_video_kbps",
            "What each subscriber's browser last reported it can receive (REMB), per published "
            "video track it receives",
            labels=["room", "participant", "publisher", "source"],
        )
        for room in rooms:
            for track in list(room.tracks.values()):
                labels = [room.visit_id, track.participant_id, str(track.source)]
                if track.feedback is not None and track.feedback.last_bps is not None:
                    told.add_metric(labels, track.feedback.last_bps / 1000)
                for participant_id, forward in list(track.forwards.items()):
                    if forward.bandwidth is not None:
                        reported.add_metric(
                            [room.visit_id, participant_id, *labels[1:]],
                            forward.bandwidth.bps / 1000,
                        )
        yield told
        yield reported

    @staticmethod
    def _traffic(t: Traffic) -> Iterator[Metric]:
        yield _legs(
            "vreception_relay_packets",
            "RTP packets (in: received from publishers, out: sent to subscribers)",
            t.packets_in,
            t.packets_out,
        )
        yield _legs("vreception_relay_frames", "Encoded frames relayed", t.frames_in, t.frames_out)
        yield _legs(
            "vreception_relay_bytes", "Media payload bytes (bitrate: rate × 8)", t.bytes_in,
            t.bytes_out,
        )  # fmt: skip
        yield _legs(
            "vreception_relay_packets_lost",
            "RTP packets lost (in: from publishers, out: as subscribers report)",
            t.lost_in,
            t.lost_out,
        )
        yield _legs(
            "vreception_relay_nacks",
            "NACKs (in: sent by the relay to publishers, out: received from subscribers)",
            t.nacks_in,
            t.nacks_out,
        )
        yield _legs(
            "vreception_relay_keyframe_requests",
            "Keyframe requests (in: sent to publishers, out: received from subscribers)",
            t.keyframes_in,
            t.keyframes_out,
        )
        yield CounterMetricFamily(
            "vreception_relay_layer_switches",
            "Simulcast: times a subscriber was moved to another layer of a camera",
            t.layer_switches,
        )
        yield CounterMetricFamily(
            "vreception_relay_probe_padding_bytes",
            "Simulcast: padding sent to subscribers to probe whether their link takes more",
            t.padding_bytes_out,
        )
        yield CounterMetricFamily(
            "vreception_relay_frame_ends_repeated",
            "Video frames whose last packet was sent twice (RTX, at once) to a subscriber "
            "whose link loses packets",
            t.frame_ends_repeated,
        )

    def _recorder(self) -> Iterator[Metric]:
        sink = self.sink
        yield GaugeMetricFamily(
            "vreception_recordings_writing", "Visits being recorded now", sink.recording_visits
        )
        yield GaugeMetricFamily(
            "vreception_recordings_write_failing",
            "Visits whose recording cannot be written now",
            sink.failing_visits,
        )
        yield GaugeMetricFamily(
            "vreception_recording_files_open", "Track files open for writing", sink.open_files
        )
        yield CounterMetricFamily(
            "vreception_recording_write_failures",
            "Recording write failures (once per track until it writes again)",
            sink.write_failures,
        )
        yield CounterMetricFamily(
            "vreception_recording_bytes_written",
            "Media bytes written into recordings",
            sink.bytes_written,
        )

    def _pipeline(self) -> Iterator[Metric]:
        snapshot = self.app[SNAPSHOT_KEY]
        age = time.monotonic() - snapshot.taken if snapshot.taken else float("nan")
        yield GaugeMetricFamily(
            "vreception_monitor_snapshot_age_seconds",
            "Age of the database and disk figures below",
            age,
        )
        yield GaugeMetricFamily(
            "vreception_monitor_database_up",
            "1 if the last read of the database for these metrics worked",
            1 if snapshot.database_up else 0,
        )
        states = GaugeMetricFamily(
            "vreception_recordings", "Recordings by state (whole install)", labels=["state"]
        )
        for state in RecordingState:
            states.add_metric([state.value], snapshot.states.get(state.value, 0))
        yield states
        yield GaugeMetricFamily(
            "vreception_pipeline_queue_length",
            "Recordings queued for or in processing (whole install)",
            sum(snapshot.states.get(s.value, 0) for s in PENDING),
        )
        oldest = snapshot.oldest_pending
        waited = 0.0
        if oldest is not None:
            waited = max(0.0, time.time() - oldest.timestamp())
        yield GaugeMetricFamily(
            "vreception_pipeline_oldest_pending_seconds",
            "How long the longest-waiting queued or processing recording has waited (0: none)",
            waited,
        )
        steps = SummaryMetricFamily(
            "vreception_pipeline_step_seconds",
            "Pipeline step durations (outcome: done or failed): run here, and with Redis by "
            "the workers (whole install)",
            labels=["step", "outcome"],
        )
        runs: dict[tuple[str, str], tuple[int, float]] = dict(snapshot.step_runs)
        pipeline = self.app.get(PIPELINE)
        for key, (count, seconds) in (pipeline.step_runs if pipeline else {}).items():
            before = runs.get(key, (0, 0.0))  # with Redis nothing runs here: no overlap
            runs[key] = (before[0] + count, before[1] + seconds)
        for (step, outcome), (count, seconds) in sorted(runs.items()):
            steps.add_metric([step, outcome], count, seconds)
        yield steps

    def _disk(self) -> Iterator[Metric]:
        snapshot = self.app[SNAPSHOT_KEY]
        if snapshot.disk_free is None or not snapshot.disk_total:
            return
        yield GaugeMetricFamily(
            "vreception_recordings_disk_free_bytes",
            "Free space on the filesystem holding the recordings",
            snapshot.disk_free,
        )
        yield GaugeMetricFamily(
            "vreception_recordings_disk_size_bytes",
            "Size of the filesystem holding the recordings",
            snapshot.disk_total,
        )
        yield GaugeMetricFamily(
            "vreception_recordings_disk_free_ratio",
            "Free share (0–1) of the filesystem holding the recordings",
            snapshot.disk_free / snapshot.disk_total,
        )


def install(
    app: web.Application, registry: CollectorRegistry, relay: Relay, sink: RecorderSink
) -> None:
    """Register the collectors and the login-failure counter; start the refresher."""
    ProcessCollector(registry=registry)  # process_cpu_seconds_total: the relay's CPU
    app[LOGIN_FAILURES] = Counter(
        "vreception_login_failures",
        "Failed logins by reason",
        ["reason"],
        registry=registry,
    )
    for reason in LOGIN_FAILURE_REASONS:
        app[LOGIN_FAILURES].labels(reason)  # every series exists from the start (at 0)
    app[LOOP_LAG] = LoopLag(
        Histogram(
            "vreception_event_loop_lag_seconds",
            "How late the server's event loop ran a timer (signaling, media and pages wait "
            "as long)",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
    )
    app[SNAPSHOT_KEY] = Snapshot()
    registry.register(ServerCollector(app, relay, sink))
    app.cleanup_ctx.append(_refresher)
