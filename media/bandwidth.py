"""Bandwidth feedback: what each publisher is told it may send.

The relay's receivers do not estimate bandwidth themselves (aiortc's delay-based estimator
reads jitter and the relay's own event-loop delays as congestion and collapses the
publisher's bitrate; :func:`media.seams.stop_receive_estimator`). Instead each subscriber's
browser estimates its own downlink and sends the relay REMB; the relay keeps the latest one
per subscriber per track (:class:`BandwidthReport`, on the subscriber's ForwardTrack) and
tells the publisher of each video track the smallest of its subscribers' recent estimates,
or ``ceiling`` when none has a recent one (nobody watching: the recording gets the full
picture). :class:`PublisherFeedback` sends it every ``interval`` seconds, and at once (at
most every ``min_gap`` seconds) when it falls by more than ``drop``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger("vreception.media")

REPORT_MAX_AGE_S = 5.0  # a subscriber's estimate older than this no longer counts
INTERVAL_S = 1.0
MIN_GAP_S = 0.25
DROP = 0.2  # a fall of more than this share is sent at once


@dataclass(frozen=True)
class BandwidthReport:
    """A subscriber's latest estimate of what it can receive: ``bps`` at ``at`` (monotonic
    seconds)."""

    bps: int
    at: float


class PublisherFeedback:
    """The REMB one published video track's publisher gets.

    ``reports()``: each subscriber's latest estimate for this track (its share of its
    connection). ``send(bps)``: sends it; False when it could not go out yet (the receiver
    has not started), so it is tried again.
    """

    def __init__(
        self,
        send: Callable[[int], Awaitable[bool]],
        reports: Callable[[], Iterable[BandwidthReport]],
        ceiling_bps: int,
        clock: Callable[[], float] = time.monotonic,
        interval: float = INTERVAL_S,
        max_age: float = REPORT_MAX_AGE_S,
        min_gap: float = MIN_GAP_S,
        on_estimate: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.send = send
        self.reports = reports
        self.ceiling_bps = ceiling_bps
        self.clock = clock
        self.interval = interval
        self.max_age = max_age
        self.min_gap = min_gap
        self.on_estimate = on_estimate  # told of each estimate and each tick
        self.last_bps: int | None = None  # the latest REMB sent, and when
        self.last_at = 0.0
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def target(self, now: float) -> int:
        """The smallest recent subscriber estimate, never above the ceiling."""
        fresh = [r.bps for r in self.reports() if now - r.at <= self.max_age]
        return min([self.ceiling_bps, *fresh])

    async def report(self) -> None:
        """A subscriber sent a new estimate: a large fall goes to the publisher at once."""
        if self.on_estimate is not None:
            await self.on_estimate()
        now = self.clock()
        bps = self.target(now)
        if (
            self.last_bps is not None
            and bps < (1 - DROP) * self.last_bps
            and now - self.last_at >= self.min_gap
        ):
            await self._send(bps, now)

    async def tick(self) -> None:
        """The periodic REMB (due every ``interval``)."""
        if self.on_estimate is not None:
            await self.on_estimate()
        now = self.clock()
        if self.last_bps is None or now - self.last_at >= self.interval * 0.9:
            await self._send(self.target(now), now)

    async def _send(self, bps: int, now: float) -> None:
        if await self.send(bps):
            self.last_bps, self.last_at = bps, now
            self.sent += 1

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="remb")

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a transport closing under it: the track ends soon
                log.debug("REMB not sent", exc_info=True)
            await asyncio.sleep(self.interval if self.last_bps is not None else 0.1)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
