"""Send-side bandwidth estimation of a subscriber's connection from transport-wide congestion
control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).

Every RTP packet the relay sends a subscriber carries a number of one sequence shared by the
connection's streams (:meth:`TransportFeedback.take`); the subscriber's browser reports which
numbers arrived and when, about every 50–100 ms. From that the relay knows, per connection:

- the packets lost on the link *before* any retransmission repaired them (receiver reports
  count a repaired packet as received, so they say 0 % on a link that is overflowing);
- whether the link is overflowing: the smallest one-way delay of the last ``RECENT_S``
  stands over ``CALM_MS`` above the smallest of the last ``BASE_S`` (a queue), and either
  what was sent in the last second arrives spread over more than ``STRETCH`` times the time
  it took to send (the link delivers less than it is given), or the queue is over
  ``DEEP_MS`` and grew by ``RISING_MS`` in a second (a link given a little too much fills
  slowly). Jitter delays some packets and not others, and a longer path delays all of them
  alike; neither stretches what arrives nor keeps growing, so neither counts, where a
  browser's delay-gradient estimate (its REMB) reads 50 ± 30 ms of jitter as congestion and
  falls to a quarter;
- what it receives per second (by arrival time).

The estimate (:attr:`TransportFeedback.estimate_bps`) is driven by those as a browser's
send-side estimator is, without the delay gradient: down to ``BACK_OFF`` of what the link
delivers when it overflows (over the last ``RECENT_RATE_MS``: the half second before still
holds what arrived before a cap began) or more than ``HIGH_LOSS`` is lost; up by
``GROWTH_PER_S`` a second while it does not and under ``LOW_LOSS`` is lost, never past
``1.5 x`` what is received (padding probes, media/layers.py, raise what is received; in the
first ``STARTING_S``, before any back-off, straight to that); held otherwise, and while a
queue over ``CALM_MS`` stands (:attr:`TransportFeedback.queued`: the link carries no more
than it is given; a padding probe ends there, before the queue holds audio back or
overflows). For ``LOSS_WINDOW_S`` after a back-off only what was lost since counts.
Retransmissions to the subscriber keep to ``RESEND_SHARE`` of the estimate
(:meth:`TransportFeedback.may_retransmit`).
"""

from __future__ import annotations

import logging
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable
from struct import pack, unpack_from

log = logging.getLogger("vreception.media")

HISTORY = 8192  # numbers remembered (a power of two dividing 65536)
MIN_BPS = 30_000
MAX_BPS = 20_000_000
RECENT_S = 0.3
BASE_S = 10.0
CALM_MS = 25.0  # a queue shorter than this is no sign of overflow
STRETCH = 1.2
DEEP_MS = 150.0  # deeper than 50 ± 30 ms of jitter looks (a 300 kbit/s link holds ~300)
RISING_MS = 30.0
WINDOW_MS = 1000.0  # what arrived in this long: the stretch and the rate received
MIN_WINDOW_PACKETS = 20
HIGH_LOSS = 0.10
LOW_LOSS = 0.02
LOSS_WINDOW_S = 2.0  # a few hundred packets: 5 % random loss seldom looks like 10 %
RATE_WINDOW_MS = 500.0
# what arrived in this long: the rate a link just found overflowing delivers (the longer
# window still holds what it delivered before a cap began)
RECENT_RATE_MS = 200.0
BACK_OFF = 0.85
BACK_OFF_GAP_S = 0.3  # a queue takes a while to drain after a back-off
GROWTH_PER_S = 1.12
FIRST_S = 0.5  # the first estimate: once this long of feedback came
# losses in the first seconds are the browser's keys not yet in place, not the link's
START_GRACE_S = 2.0
# until the first back-off, and for this long at most, it rises straight to its ceiling
STARTING_S = 5.0
REPORT_EVERY_S = 1.0  # an estimate goes out this often, and at once when it falls
# retransmissions may take this share of the estimate (a burst of up to RESEND_BURST_S of it)
RESEND_SHARE = 0.15
RESEND_BURST_S = 0.5
RESEND_SIZE = 1200  # bytes a retransmission is counted as
# arrivals kept for the window's rates at most (a burst of late or forged reports cannot make
# the window, and the work on each feedback, grow without bound)
MAX_ARRIVALS = 2048
REFERENCE_WRAP = 1 << 24  # the reference time is a 24-bit count of 64 ms (≈ 12.4 days)


def parse_feedback(fci: bytes) -> tuple[int, list[float | None]]:
    """A transport-cc feedback's FCI (after the two SSRCs): its base sequence number and, for
    each number from there, the arrival in ms of the receiver's clock, or None when lost.
    Raises ValueError on a malformed one."""
    if len(fci) < 8:
        raise ValueError("transport-cc feedback too short")
    base, count = unpack_from("!HH", fci, 0)
    reference = int.from_bytes(fci[4:7], "big", signed=True)
    symbols: list[int] = []
    at = 8
    while len(symbols) < count:
        if at + 2 > len(fci):
            raise ValueError("transport-cc feedback: chunks cut short")
        (chunk,) = unpack_from("!H", fci, at)
        at += 2
        if not chunk & 0x8000:  # run length
            symbols.extend([(chunk >> 13) & 0x3] * min(chunk & 0x1FFF, count - len(symbols)))
        elif not chunk & 0x4000:  # 14 one-bit symbols
            symbols.extend((chunk >> (13 - i)) & 0x1 for i in range(14))
        else:  # 7 two-bit symbols
            symbols.extend((chunk >> (12 - 2 * i)) & 0x3 for i in range(7))
    arrival = reference * 64.0
    arrivals: list[float | None] = []
    for symbol in symbols[:count]:
        if symbol == 0:
            arrivals.append(None)
            continue
        if symbol == 1:
            if at + 1 > len(fci):
                raise ValueError("transport-cc feedback: deltas cut short")
            arrival += fci[at] * 0.25
            at += 1
        elif symbol == 2:
            if at + 2 > len(fci):
                raise ValueError("transport-cc feedback: deltas cut short")
            arrival += unpack_from("!h", fci, at)[0] * 0.25
            at += 2
        else:
            raise ValueError("transport-cc feedback: reserved status symbol")
        arrivals.append(arrival)
    return base, arrivals


def pack_feedback(base: int, arrivals: list[float | None], count: int = 0) -> bytes:
    """The FCI a receiver sends for ``arrivals`` (ms, None: lost) from number ``base``:
    two-bit status vectors, deltas rounded to 250 µs (the inverse of :func:`parse_feedback`)."""
    received = [a for a in arrivals if a is not None]
    reference = int((received[0] if received else 0.0) // 64)
    out = bytearray(pack("!HH", base, len(arrivals)))
    out += reference.to_bytes(3, "big", signed=True) + bytes([count & 0xFF])
    symbols: list[int] = []
    deltas = bytearray()
    previous = reference * 64.0
    for arrival in arrivals:
        if arrival is None:
            symbols.append(0)
            continue
        ticks = round((arrival - previous) * 4)
        previous += ticks / 4
        if 0 <= ticks <= 0xFF:
            symbols.append(1)
            deltas.append(ticks)
        else:
            symbols.append(2)
            deltas += pack("!h", ticks)
    for start in range(0, len(symbols), 7):
        chunk = 0xC000
        for i, symbol in enumerate(symbols[start : start + 7]):
            chunk |= symbol << (12 - 2 * i)
        out += pack("!H", chunk)
    out += deltas
    out += bytes(-len(out) % 4)
    return bytes(out)


def feedback_of(data: bytes) -> list[bytes]:
    """The FCI of each transport-cc feedback (RTPFB, FMT 15) in a compound RTCP packet."""
    found = []
    at = 0
    while at + 4 <= len(data):
        first, kind = data[at], data[at + 1]
        end = at + 4 + 4 * unpack_from("!H", data, at + 2)[0]
        if end > len(data):
            break
        if kind == 205 and first & 0x1F == 15 and end - at >= 20:
            body_end = end - (data[end - 1] if first & 0x20 else 0)
            found.append(data[at + 12 : body_end])
        at = end
    return found


def _arrival_rate(arrived: list[tuple[float, int]], newest: float, least_ms: float) -> int | None:
    """bit/s of (arrival ms, size) packets ending at ``newest``: the bytes after the first,
    over the span they arrived in; None when that span is under ``least_ms``."""
    start = min(a for a, _ in arrived)
    if newest - start < least_ms:
        return None
    carried = sum(size for _, size in arrived) - min(arrived)[1]
    return int(carried * 8000 / (newest - start))


class TransportFeedback:
    """One subscriber connection's transport-wide numbering and the estimate its feedback
    gives (module docstring). ``on_estimate(bps, loss)`` is told about once a second, and
    at once when the estimate falls, the loss crosses ``LOW_LOSS`` or a queue comes or goes."""

    def __init__(
        self,
        on_estimate: Callable[[int, float], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_estimate = on_estimate
        self.clock = clock
        self.estimate_bps: int | None = None
        self.loss = 0.0
        self.queue_ms = 0.0
        self.received_bps = 0
        self.recent_bps = 0  # received over the last RECENT_RATE_MS
        self.stretch = 1.0  # arrival span / send span of the last WINDOW_MS
        self.queued = False  # a queue over CALM_MS stands: the link carries no more
        self.feedbacks = 0
        self.sent_bytes = 0
        self._sent_mark = (0.0, 0)  # (when, sent_bytes) at the previous back-off log
        self.back_offs = 0
        self._next = 0
        self._numbers = array("l", [-1]) * HISTORY
        self._sent_at = array("d", [0.0]) * HISTORY  # ms
        self._sizes = array("l", [0]) * HISTORY
        self._state = bytearray(HISTORY)  # 0: not reported, 1: received, 2: lost
        self._new_stream = bytearray(HISTORY)  # 1: of a stream just begun (see take)
        self._losses: deque[tuple[float, int, int]] = deque()  # (when, lost, received)
        self._delays: deque[tuple[float, float]] = deque()  # (when, smallest of a feedback)
        self._bases: deque[tuple[float, float]] = deque()  # (second, smallest in it)
        # (arrival, sent) ms, size
        self._arrivals: deque[tuple[float, float, int]] = deque(maxlen=MAX_ARRIVALS)
        self._reference: int | None = None  # the last feedback's reference time (ticks) ...
        self._unwrapped = 0  # ... counted on across the 24-bit wrap
        self._first: float | None = None
        self._updated = 0.0
        self._backed_off = -1e9
        self._reported_bps: int | None = None
        self._reported_at = -1e9
        self._reported_lossy = False
        self._reported_queued = False
        self._queues: deque[tuple[float, float]] = deque()  # (when, queue ms)
        self._resend_credit = 0.0  # bytes
        self._lost_since = self._reported_since = 0  # since the last back-off
        self._resend_at: float | None = None
        self.resends_refused = 0

    def take(self, size: int, new_stream: bool = False) -> int:
        """The number of the next packet sent (``size`` bytes, now). ``new_stream``: the
        packet is of a stream in its first ``START_GRACE_S`` on this connection (a track
        added by renegotiation): a loss of it is no loss of the link (the browser drops
        what comes before it has set the stream up, and its feedback reports those lost)."""
        number = self._next
        self._next = (number + 1) & 0xFFFF
        i = number & (HISTORY - 1)
        self._numbers[i] = number
        self._sent_at[i] = self.clock() * 1000.0
        self._sizes[i] = size
        self._state[i] = 0
        self._new_stream[i] = new_stream
        self.sent_bytes += size
        return number

    def may_retransmit(self, now: float) -> bool:
        """Whether one more retransmission fits the budget (taken from it if so); without
        an estimate yet, always."""
        estimate = self.estimate_bps
        if estimate is None:
            return True
        rate = RESEND_SHARE * estimate / 8
        # a burst holds at least one retransmission: under 128 kbit/s half a second of the
        # share is less than one, and the thinnest links would get no repair at all
        burst = max(rate * RESEND_BURST_S, RESEND_SIZE)
        if self._resend_at is None:
            self._resend_credit = burst
        else:
            elapsed = max(0.0, now - self._resend_at)
            self._resend_credit = min(burst, self._resend_credit + rate * elapsed)
        self._resend_at = now
        if self._resend_credit < RESEND_SIZE:
            self.resends_refused += 1
            return False
        self._resend_credit -= RESEND_SIZE
        return True

    def unsent(self, number: int) -> None:
        """The packet numbered ``number`` could not be sent after all: not a loss."""
        i = number & (HISTORY - 1)
        if self._numbers[i] == number:
            self._numbers[i] = -1

    async def feedback(self, fci: bytes) -> None:
        """One feedback of the subscriber (its FCI); a malformed one is ignored."""
        try:
            base, arrivals = parse_feedback(fci)
        except ValueError:
            return
        arrivals = self._unwrap(fci, arrivals)
        now = self.clock()
        self.feedbacks += 1
        if self._first is None:
            self._first = self._updated = now
        lost = received = 0
        smallest: float | None = None
        numbers, sent_at, sizes, state = self._numbers, self._sent_at, self._sizes, self._state
        new_stream = self._new_stream
        starting = now - self._first < START_GRACE_S
        for offset, arrival in enumerate(arrivals):
            number = (base + offset) & 0xFFFF
            i = number & (HISTORY - 1)
            if numbers[i] != number:
                continue  # not sent by this side, or long forgotten
            if arrival is None:
                if starting or new_stream[i]:
                    numbers[i] = -1
                elif state[i] == 0:
                    state[i] = 2
                    lost += 1
                continue
            if state[i] == 1:
                continue
            if state[i] == 2:
                lost -= 1  # reported lost before, arrived late
            state[i] = 1
            received += 1
            delay = arrival - sent_at[i]
            if smallest is None or delay < smallest:
                smallest = delay
            self._arrivals.append((arrival, sent_at[i], sizes[i]))
        self._observe(now, lost, received, smallest)
        await self._control(now)

    def _unwrap(self, fci: bytes, arrivals: list[float | None]) -> list[float | None]:
        """The arrivals on one clock across the wrap of the 24-bit reference time (the
        browser's clock modulo about 12.4 days): read as it is, a wrap would put every later
        arrival 12 days before the earlier ones."""
        reference = int.from_bytes(fci[4:7], "big", signed=True)
        if self._reference is None:
            self._unwrapped = reference
        else:
            half = REFERENCE_WRAP >> 1
            step = ((reference - self._reference + half) % REFERENCE_WRAP) - half
            self._unwrapped += step
        self._reference = reference
        shift = (self._unwrapped - reference) * 64.0
        if not shift:
            return arrivals
        return [a + shift if a is not None else None for a in arrivals]

    def _observe(self, now: float, lost: int, received: int, smallest: float | None) -> None:
        losses = self._losses
        losses.append((now, lost, received))
        self._lost_since += lost
        self._reported_since += lost + received
        while losses and now - losses[0][0] > LOSS_WINDOW_S:
            losses.popleft()
        total_lost = sum(x[1] for x in losses)
        total = total_lost + sum(x[2] for x in losses)
        self.loss = max(0.0, total_lost / total) if total else 0.0
        if smallest is not None:
            self._delays.append((now, smallest))
            second = float(int(now))
            if self._bases and self._bases[-1][0] == second:
                if smallest < self._bases[-1][1]:
                    self._bases[-1] = (second, smallest)
            else:
                self._bases.append((second, smallest))
        while self._delays and now - self._delays[0][0] > RECENT_S:
            self._delays.popleft()
        while self._bases and now - self._bases[0][0] > BASE_S:
            self._bases.popleft()
        if self._delays and self._bases:
            recent = min(d for _, d in self._delays)
            self.queue_ms = max(0.0, recent - min(b for _, b in self._bases))
        arrivals = self._arrivals
        if arrivals:
            newest = max(a for a, _, _ in arrivals)
            while arrivals and arrivals[0][0] < newest - WINDOW_MS:
                arrivals.popleft()
            first = min(a for a, _, _ in arrivals)
            latest = [(a, size) for a, _, size in arrivals if a >= newest - RATE_WINDOW_MS]
            rate = _arrival_rate(latest, newest, RATE_WINDOW_MS / 5)
            if rate is not None:
                self.received_bps = rate
            last = [(a, size) for a, size in latest if a >= newest - RECENT_RATE_MS]
            rate = _arrival_rate(last, newest, RECENT_RATE_MS / 2)
            if rate is not None:
                self.recent_bps = rate
            if len(arrivals) >= MIN_WINDOW_PACKETS:
                sent = [t for _, t, _ in arrivals]
                self.stretch = (newest - first) / max(1.0, max(sent) - min(sent))

    async def _control(self, now: float) -> None:
        assert self._first is not None
        if self.estimate_bps is None:
            if now - self._first < FIRST_S or not self.received_bps:
                return
            self.estimate_bps = self._clamp(int(1.5 * self.received_bps))
            self._updated = now
        estimate = self.estimate_bps
        queues = self._queues
        queues.append((now, self.queue_ms))
        while now - queues[0][0] > 1.0:
            queues.popleft()
        self.queued = self.queue_ms > CALM_MS
        rising = self.queue_ms > DEEP_MS and self.queue_ms - queues[0][1] > RISING_MS
        overflowing = self.queue_ms > CALM_MS and (self.stretch > STRETCH or rising)
        # after a back-off only what was lost since counts (the window still holds what
        # made it back off, and the rate received falls as less is sent)
        recent_loss = self.loss
        if now - self._backed_off < LOSS_WINDOW_S:
            enough = self._reported_since >= MIN_WINDOW_PACKETS
            recent_loss = max(0, self._lost_since) / self._reported_since if enough else 0.0
        if overflowing or recent_loss > HIGH_LOSS:
            if now - self._backed_off >= BACK_OFF_GAP_S:
                delivered = self.received_bps
                if overflowing and self.recent_bps:
                    delivered = min(delivered, self.recent_bps)  # what the full link delivers
                estimate = min(estimate, int(BACK_OFF * delivered))
                self._backed_off = now
                self.back_offs += 1
                self._lost_since = self._reported_since = 0
                at, sent = self._sent_mark
                self._sent_mark = (now, self.sent_bytes)
                log.debug(
                    "transport-cc: back off to %d kbit/s (queue %.0f ms, stretch %.2f, "
                    "loss %.1f %%, received %d kbit/s, sent %d kbit/s since the last, "
                    "%d resends refused)",
                    estimate // 1000,
                    self.queue_ms,
                    self.stretch,
                    100 * recent_loss,
                    self.received_bps // 1000,
                    (self.sent_bytes - sent) * 8 // max(1, int((now - at) * 1000)),
                    self.resends_refused,
                )
        elif self.loss < LOW_LOSS and not self.queued:
            grown = int(estimate * GROWTH_PER_S ** min(1.0, now - self._updated))
            ceiling = int(1.5 * self.received_bps) + 10_000
            if not self.back_offs and now - self._first < STARTING_S:
                grown = ceiling  # nothing says the link is thinner than what it carries
            estimate = max(estimate, min(grown, ceiling))
        self._updated = now
        self.estimate_bps = estimate = self._clamp(estimate)
        lossy = self.loss >= LOW_LOSS
        if self.on_estimate is not None and (
            self._reported_bps is None
            or estimate < self._reported_bps
            or lossy != self._reported_lossy
            or self.queued != self._reported_queued
            or now - self._reported_at >= REPORT_EVERY_S
        ):
            self._reported_bps, self._reported_at, self._reported_lossy = estimate, now, lossy
            self._reported_queued = self.queued
            await self.on_estimate(estimate, self.loss)

    @staticmethod
    def _clamp(bps: int) -> int:
        return max(MIN_BPS, min(MAX_BPS, bps))
