"""Simulcast: a camera published as several layers (the pages send a half-size layer and the
full picture, each as its own SSRC), each subscriber getting the best one its link carries
and the recording always the best one the publisher sends.

- :class:`Layers` learns each layer's SSRC (and its retransmission SSRC) from the RTP
  stream ID header extension the browser sends on its first packets, and keeps per layer
  its latest keyframe (:class:`~media.forward.KeyframeCache`), its bitrate and when it was
  last heard (a browser stops sending a layer its uplink cannot carry);
- :class:`RecordedStream` turns the best layer the publisher sends into one continuous
  stream for the receiver's own path (frames for the recorder, NACKs upstream), switching
  on a keyframe when that layer changes, so the recording never stops while any layer
  flows;
- :func:`choose` is the rule by which a subscriber's layer is chosen from its bandwidth
  estimate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import RtpPacket

from media import seams
from media.forward import KeyframeCache, Rebase, starts_keyframe

ACTIVE_S = 1.0  # a layer not heard from for this long is taken as paused by its publisher
RATE_WINDOW_S = 3.0  # a layer's bitrate is measured over this much (keyframes swell it)
HEADROOM = 0.9  # a subscriber gets a layer whose bitrate is at most this share of its estimate


@dataclass(eq=False)
class Layer:
    """One simulcast layer of a published video track (``index`` 0 is the lowest)."""

    rid: str
    index: int
    keyframes: KeyframeCache
    ssrc: int | None = None
    # while not recorded (asking again, as the recorded layer's receiver does)
    nacks: NackGenerator = field(default_factory=seams.RepeatingNackGenerator)
    heard: float = -1e9  # monotonic seconds of its latest packet
    first: float | None = None  # ... and of its first
    _sizes: deque[tuple[float, int]] = field(default_factory=deque)
    _bytes: int = 0
    _before: int = 0  # its bitrate before it last paused

    def note(self, packet: RtpPacket, now: float) -> None:
        if self.first is None or now - self.heard > ACTIVE_S:
            # (re)started: measured afresh, its rate before the pause standing in meanwhile
            if self.first is not None:
                self._before = self.bps(self.heard)
            self.first = now
            self._sizes.clear()
            self._bytes = 0
        self.heard = now
        size = len(packet.payload) + packet.padding_size + 12
        self._sizes.append((now, size))
        self._bytes += size
        while self._sizes and now - self._sizes[0][0] > RATE_WINDOW_S:
            self._bytes -= self._sizes.popleft()[1]

    def active(self, now: float) -> bool:
        return now - self.heard <= ACTIVE_S

    @property
    def height(self) -> int | None:
        """Its picture height, from its latest keyframe (None until one is seen, or H.264)."""
        return self.keyframes.height

    def bps(self, now: float) -> int:
        """Its bitrate over the latest window (0 once paused)."""
        if not self.active(now) or self.first is None:
            return 0
        measured = int(self._bytes * 8 / max(1.0, min(RATE_WINDOW_S, now - self.first)))
        if now - self.first < RATE_WINDOW_S:
            # just resumed: a few packets over a second would make it look almost free
            return max(measured, self._before)
        return measured


class Layers:
    """The layers of one simulcast published video track, lowest first."""

    def __init__(self, rids: Sequence[str], codec: str, rtx_ssrcs: dict[int, int]) -> None:
        self.codec = codec
        self.layers = [Layer(rid, i, KeyframeCache(codec)) for i, rid in enumerate(rids)]
        self._by_rid = {layer.rid: layer for layer in self.layers}
        self._by_ssrc: dict[int, Layer] = {}
        # retransmission SSRC → the SSRC it repairs: aiortc's own table (it unwraps with it)
        self.rtx_ssrcs = rtx_ssrcs
        self._rtx_rid: dict[int, str] = {}

    def of(self, packet: RtpPacket) -> Layer | None:
        """The layer of a media packet (RTX unwrapped), learning its SSRC from its RID."""
        layer = self._by_ssrc.get(packet.ssrc)
        if layer is None:
            rid = packet.extensions.rtp_stream_id
            layer = self._by_rid.get(rid) if rid is not None else None
            if layer is None:
                return None
            if layer.ssrc is not None:  # the browser restarted the layer on a new SSRC
                self._by_ssrc.pop(layer.ssrc, None)
                layer.nacks = seams.RepeatingNackGenerator()  # a new numbering
            layer.ssrc = packet.ssrc
            self._by_ssrc[packet.ssrc] = layer
            for rtx, repaired in list(self._rtx_rid.items()):
                if repaired == rid:
                    self.rtx_ssrcs[rtx] = packet.ssrc
        return layer

    def learn_rtx(self, packet: RtpPacket) -> None:
        """A retransmission packet: which layer's SSRC it repairs, from its repaired RID."""
        if packet.ssrc in self.rtx_ssrcs:
            return
        rid = packet.extensions.repaired_rtp_stream_id
        if rid is None or rid not in self._by_rid:
            return
        self._rtx_rid[packet.ssrc] = rid
        ssrc = self._by_rid[rid].ssrc
        if ssrc is not None:
            self.rtx_ssrcs[packet.ssrc] = ssrc

    def best(self, now: float, ceiling: int | None = None) -> Layer | None:
        """The highest layer the publisher sends now (up to the layer ``ceiling``)."""
        return next(
            (
                layer
                for layer in reversed(self.layers)
                if layer.active(now) and (ceiling is None or layer.index <= ceiling)
            ),
            None,
        )

    def ceiling(self, shown_height: int | None) -> int | None:
        """The highest layer worth sending to a subscriber that shows the picture
        ``shown_height`` device pixels tall: the lowest layer at least that tall (a gallery
        tile gets the half-size layer, a large view the full picture). None: no limit (no
        size told, or no layer that tall)."""
        if shown_height is None:
            return None
        return next(
            (
                layer.index
                for layer in self.layers
                if layer.height is not None and layer.height >= shown_height
            ),
            None,
        )

    def by_ssrc(self, ssrc: int | None) -> Layer | None:
        return self._by_ssrc.get(ssrc) if ssrc is not None else None


def choose(
    layers: Layers, budget_bps: int | None, now: float, ceiling: int | None = None
) -> Layer | None:
    """A subscriber's layer: the highest one flowing whose bitrate fits ``HEADROOM`` of its
    estimate (no estimate yet: the highest), else the lowest one flowing; none above the
    layer ``ceiling`` (:meth:`Layers.ceiling`) unless no layer under it flows."""
    flowing = [layer for layer in layers.layers if layer.active(now) and layer.ssrc is not None]
    if not flowing:
        return None
    if ceiling is not None:
        flowing = [layer for layer in flowing if layer.index <= ceiling] or flowing[:1]
    if budget_bps is None:
        return flowing[-1]
    fitting = [layer for layer in flowing if layer.bps(now) <= HEADROOM * budget_bps]
    return fitting[-1] if fitting else flowing[0]


class LayerChoice:
    """How one subscriber's layer follows its estimate over time.

    The layer being sent is kept while the estimate is at least ``KEEP`` of its bitrate (a
    keyframe swells a bitrate for a moment). Below that but above ``SHORT`` it goes down
    after ``DOWN_AFTER_S``, and only while the subscriber's reports show its link
    overflowing (``lossy``: packets lost, or a queue's round trip): a browser's delay-based
    estimate dips under mere jitter. Below ``SHORT`` it goes down at once: the estimate of
    a link far too thin falls before its receiver reports show the loss (jitter can take a
    browser's estimate that low too; waiting for loss there froze a 300 kbit/s link).

    Up needs more: a browser's REMB grows only about 8 % a second and never above about
    1.5 times what it receives, so on a lower layer it cannot show that a higher one would
    fit. After ``first_try_s`` below the best layer the subscriber is probed: sent padding
    (``padding_bps``) that keeps what it receives just under its estimate, up to the next
    layer's bitrate, so the estimate grows if the link carries it; the layer goes up once it
    fits. A probe starts only once the estimate has not fallen for ``STEADY_S`` (not while a
    thin link still holds it down). An estimate falling more than ``FALL`` from the probe's
    highest is congestion, as is a queue standing on the link (transport-cc feedback shows
    it at once, before the link overflows), and one not growing for ``STALL_S`` a link that
    carries no more:
    the padding stops, and the next probe waits twice as long, up to ``max_wait_s`` (up to
    ``QUEUED_WAIT_MAX_S`` when a queue ended it: nothing was lost, and the link may have
    grown since). Only padding is ever at stake."""

    FALL = 0.1
    KEEP = 0.8
    SHORT = 0.5
    DOWN_AFTER_S = 1.5
    GROWTH = 1.3  # what is received is kept at the estimate over this (REMB caps at ~1.5x)
    STEADY_S = 3.0  # a probe starts only after this long without the estimate falling
    STALL_S = 5.0  # ... and ends when the estimate has not grown by RISE for this long
    RISE = 0.03
    QUEUED_WAIT_MAX_S = 8.0  # the longest wait after probes that a standing queue ended

    def __init__(self, first_try_s: float = 4.0, max_wait_s: float = 120.0) -> None:
        self.first_try_s = first_try_s
        self.max_wait_s = max_wait_s
        self.wait_s = first_try_s
        self.next_try: float | None = None
        self.probe: Layer | None = None  # the layer a probe is for
        self.probe_peak = 0
        self.padding_bps = 0
        self.probes = 0
        self.failed = 0
        self.stalled = 0
        self._short_since: float | None = None
        self._last_budget: int | None = None
        self._fell_at = -1e9  # when the estimate last fell
        self._grew_at = 0.0  # when a probe's estimate last reached a new high

    def pick(
        self,
        layers: Layers,
        budget_bps: int | None,
        now: float,
        current: Layer | None = None,
        lossy: bool = True,
        queued: bool = False,
        ceiling: int | None = None,
    ) -> Layer | None:
        """The layer for now (``padding_bps`` says what to probe with); ``current``: the
        one wanted until now; ``lossy``: the subscriber's reports show its link
        overflowing lately (packets lost, or a queue's round trip); ``queued``: its
        transport-cc feedback shows a queue standing (a probe under way ends: it fills the
        link); ``ceiling``: the highest layer the subscriber shows (nothing probes above)."""
        self.padding_bps = 0
        if budget_bps is not None:
            if self._last_budget is not None and budget_bps < (1 - self.RISE) * self._last_budget:
                self._fell_at = now
            self._last_budget = budget_bps
        fit = choose(layers, budget_bps, now, ceiling)
        if fit is None:
            self.probe = None
            return None
        if (
            current is not None
            and current.index > fit.index
            and (ceiling is None or current.index <= ceiling)
            and current.active(now)
            and budget_bps is not None
        ):
            rate = current.bps(now)
            if budget_bps >= self.KEEP * rate or (not lossy and budget_bps >= self.SHORT * rate):
                self._short_since = None
                return current
            if budget_bps >= self.SHORT * rate:
                if self._short_since is None:
                    self._short_since = now
                if now - self._short_since < self.DOWN_AFTER_S:
                    return current
        self._short_since = None
        probe = self.probe
        if probe is not None and (fit.index >= probe.index or not probe.active(now)):
            self.probe = probe = None  # it fits now (or is gone)
            self.wait_s = self.first_try_s
        best = layers.best(now, ceiling)
        if best is None or fit.index >= best.index or budget_bps is None:
            self.probe = self.next_try = None
            return fit
        if probe is not None:
            fell = budget_bps < (1 - self.FALL) * self.probe_peak
            congested = queued or fell
            if congested or now - self._grew_at > self.STALL_S:
                self.probe = None  # congestion, or a link that carries no more
                if congested:
                    self.failed += 1
                else:
                    self.stalled += 1
                # a probe stopped by a queue cost the link nothing: the next one comes sooner
                longest = self.max_wait_s if fell or not queued else self.QUEUED_WAIT_MAX_S
                self.wait_s = min(longest, max(self.wait_s, self.wait_s * 2))
                self.next_try = now + self.wait_s
                return fit
            if budget_bps >= (1 + self.RISE) * self.probe_peak:
                self.probe_peak, self._grew_at = budget_bps, now
        elif self.next_try is None:
            self.next_try = now + self.wait_s
            return fit
        elif now >= self.next_try and now - self._fell_at >= self.STEADY_S:
            probe = next(
                (x for x in layers.layers[fit.index + 1 :] if x.active(now) and x.ssrc is not None),
                None,
            )
            if probe is None:
                return fit
            self.probe, self.probe_peak, self.next_try = probe, budget_bps, None
            self._grew_at = now
            self.probes += 1
        else:
            return fit
        wanted_total = min(probe.bps(now) * 1.05, budget_bps / self.GROWTH)
        self.padding_bps = max(0, int(wanted_total) - fit.bps(now))
        return fit

    def hurried(
        self,
        chosen: Layer | None,
        sending: Layer | None,
        budget_bps: int | None,
        now: float,
        lossy: bool,
    ) -> bool:
        """Whether going from ``sending`` to ``chosen`` is going down because the link
        cannot carry what is sent (it overflows, or the estimate is under ``SHORT`` of its
        rate): then the layer being sent stops now, not at the new layer's keyframe."""
        return (
            chosen is not None
            and sending is not None
            and chosen.index < sending.index
            and budget_bps is not None
            and (lossy or budget_bps < self.SHORT * sending.bps(now))
        )


class RecordedStream:
    """The best layer the publisher sends, as one continuous stream of packets for the
    receiver's own path: sequence numbers and timestamps go on across a change of layer
    (made on the new layer's keyframe, which is asked for), so aiortc's jitter buffer and
    NACK generator keep one sequence space. The first layer passes unchanged; NACKs are
    turned back into the numbers of the layer they concern (:meth:`upstream`)."""

    def __init__(
        self, layers: Layers, clock_rate: int, request_keyframe: Callable[[int], None]
    ) -> None:
        self.layers = layers
        self.request_keyframe = request_keyframe
        self.layer: Layer | None = None
        self.switches = 0
        self._rebase = Rebase(clock_rate, keep_first=True)
        # the receiver's own NACK sender (set once it is wrapped, room.py): the layers not
        # being recorded ask for their losses with it, the receiver's path not seeing them
        self.send_nack: Callable[[int, list[int]], Awaitable[None]] | None = None
        self.other_packets = 0  # packets of the layers not recorded (aiortc counts the rest)

    async def repair(self, packet: RtpPacket, layer: Layer) -> None:
        """Ask the publisher for what a layer not being recorded lost (subscribers on it
        need the retransmissions; aiortc's own NACKs cover only the recorded stream)."""
        if layer is self.layer:
            return
        self.other_packets += 1
        if self.send_nack is None:
            return
        if layer.nacks.add(packet) and layer.ssrc is not None:
            await self.send_nack(layer.ssrc, sorted(layer.nacks.missing))

    def feed(self, packet: RtpPacket, layer: Layer, ntp: int, now: float) -> RtpPacket | None:
        """The packet for the receiver's path, or None when it belongs to another layer."""
        best = self.layers.best(now)
        if best is not None and best is not self.layer:
            if layer is best and starts_keyframe(self.layers.codec, packet.payload):
                if self.layer is not None:
                    # its losses are asked for by its own generator again: started afresh,
                    # as the numbers it last saw may be minutes (and a wrap) behind
                    self.layer.nacks = seams.RepeatingNackGenerator()
                self.layer = layer
                self.switches += 1
                self._rebase.restart(packet, ntp)
            elif best.ssrc is not None:
                self.request_keyframe(best.ssrc)
        if layer is not self.layer:
            return None
        if packet.ssrc != self._rebase.source:
            # the recorded layer restarted on a new SSRC (the browser renumbered it): the
            # recording goes on from its keyframe, numbered on from where it stopped
            if not starts_keyframe(self.layers.codec, packet.payload):
                self.request_keyframe(packet.ssrc)
                return None
            self.switches += 1
            self._rebase.restart(packet, ntp)
        rebased = self._rebase.map(packet, ntp)
        if rebased is None:
            return None
        sequence_number, timestamp = rebased
        if sequence_number == packet.sequence_number and timestamp == packet.timestamp:
            return packet
        copy = RtpPacket(
            payload_type=packet.payload_type,
            marker=packet.marker,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=packet.ssrc,
            payload=packet.payload,
        )
        copy.padding_size = packet.padding_size
        copy.extensions = packet.extensions
        return copy

    def upstream(self, media_ssrc: int, lost: Sequence[int]) -> tuple[int, list[int]]:
        """A NACK of the receiver's path, in the numbers of the layer being recorded."""
        layer = self.layer
        if layer is None or layer.ssrc is None:
            return media_ssrc, list(lost)
        return layer.ssrc, [n for s in lost if (n := self._rebase.source_number(s)) is not None]
