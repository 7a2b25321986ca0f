"""The relay's own estimate of a subscriber's connection from transport-cc feedback
(media/congestion.py): the feedback format, and the estimate on simulated links — a thin
link and heavy loss bring it down, jitter and a longer path do not."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from struct import pack

import pytest

from media.congestion import (
    BACK_OFF,
    MAX_ARRIVALS,
    TransportFeedback,
    feedback_of,
    pack_feedback,
    parse_feedback,
)

# ------------------------------------------------------------------ the format


def test_feedback_round_trips_arrivals_losses_and_large_deltas() -> None:
    arrivals: list[float | None] = [1000.0, 1000.25, None, 1010.0, None, None, 1200.5, 1100.0]
    base, parsed = parse_feedback(pack_feedback(65530, arrivals, count=3))
    assert base == 65530
    assert parsed == arrivals  # 250 µs steps are exact; a negative delta is a large one


def test_run_length_and_one_bit_vector_chunks_are_read() -> None:
    # base 10, 20 packets: a run of 6 received (small deltas), then a one-bit vector of 14
    fci = pack("!HH", 10, 20) + (100).to_bytes(3, "big") + b"\x00"
    fci += pack("!H", (1 << 13) | 6)  # run length: symbol 1 (small delta), 6 packets
    fci += pack("!H", 0x8000 | int("10101010101010", 2))  # 1-bit vector: received every other
    fci += bytes([4] * 6) + bytes([8] * 7)  # 1 ms apart, then 2 ms apart
    base, parsed = parse_feedback(fci)
    assert base == 10 and len(parsed) == 20
    assert parsed[:6] == [6400.0 + i for i in range(1, 7)]
    assert parsed[6::2] == [6406.0 + 2 * i for i in range(1, 8)]
    assert parsed[7::2] == [None] * 7


@pytest.mark.parametrize(
    "fci",
    [
        b"\x00\x01",  # too short
        pack("!HH", 0, 5) + bytes(4),  # chunks missing
        pack("!HH", 0, 2) + bytes(4) + pack("!H", 0xC000 | (1 << 12) | (1 << 10)),  # no deltas
        pack("!HH", 0, 1) + bytes(4) + pack("!H", 0xC000 | (3 << 12)) + bytes(2),  # reserved
    ],
)
def test_a_malformed_feedback_is_refused(fci: bytes) -> None:
    with pytest.raises(ValueError):
        parse_feedback(fci)


def test_feedback_is_found_in_a_compound_rtcp_packet_and_nothing_else() -> None:
    fci = pack_feedback(7, [5.0, None, 6.0])
    receiver_report = bytes([0x80, 201]) + pack("!HL", 1, 0x1234)
    nack = bytes([0x81, 205]) + pack("!HLL", 3, 1, 2) + pack("!HH", 9, 0)
    transport_cc = bytes([0x8F, 205]) + pack("!HLL", 2 + len(fci) // 4, 1, 2) + fci
    assert feedback_of(receiver_report + nack + transport_cc) == [fci]
    assert feedback_of(receiver_report + nack) == []
    assert feedback_of(transport_cc[:-4]) == []  # cut short: not read past its end


# ------------------------------------------------------------------ on a simulated link


@dataclass
class Link:
    """A one-way link: a rate cap with a drop-tail buffer, then a delay ± jitter that
    keeps packets in order (as tests/netimpair.py does), then random loss."""

    rate_bps: float | None = None
    buffer_bytes: int = 11_000
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    _free_at: float = 0.0  # ms: when the cap has sent what it holds
    _last_out: float = 0.0

    def send(self, at_ms: float, size: int) -> float | None:
        """When a packet sent at ``at_ms`` arrives, or None when it is lost."""
        start = at_ms
        if self.rate_bps is not None:
            queued_bytes = max(0.0, self._free_at - at_ms) * self.rate_bps / 8000
            if queued_bytes + size > self.buffer_bytes:
                return None
            start = max(at_ms, self._free_at) + size * 8000 / self.rate_bps
            self._free_at = start
        delay = self.delay_ms + self.rng.uniform(-self.jitter_ms, self.jitter_ms)
        out = max(start + delay, self._last_out)
        self._last_out = out
        if self.rng.random() < self.loss:
            return None
        return out + 3.0  # a base one-way delay


class Bed:
    """A sender pacing ``bps`` of 1,000-byte packets through a :class:`Link` into a
    :class:`TransportFeedback`, its receiver reporting every 100 ms."""

    def __init__(self) -> None:
        self.now_ms = 0.0
        self.estimates: list[tuple[float, int, float]] = []

        async def told(bps: int, loss: float) -> None:
            self.estimates.append((self.now_ms, bps, loss))

        self.feedback = TransportFeedback(told, clock=lambda: self.now_ms / 1000)
        self._pending: list[tuple[int, float | None]] = []

    async def run(self, link: Link, seconds: float, bps: float | None = None) -> None:
        end = self.now_ms + seconds * 1000
        next_report = self.now_ms + 100
        while self.now_ms < end:
            rate = bps if bps is not None else self.feedback.estimate_bps or 500_000
            interval = 1000 * 8000 / rate
            number = self.feedback.take(1000)
            self._pending.append((number, link.send(self.now_ms, 1000)))
            self.now_ms += interval
            while self.now_ms >= next_report:
                await self._report(next_report)
                next_report += 100

    async def _report(self, at_ms: float) -> None:
        """Everything up to the newest packet arrived by ``at_ms`` (later ones wait)."""
        arrived = [i for i, (_, a) in enumerate(self._pending) if a is not None and a <= at_ms]
        if not arrived:
            return
        last = arrived[-1]
        reported = self._pending[: last + 1]
        self._pending = self._pending[last + 1 :]
        arrivals = [a if a is not None and a <= at_ms else None for _, a in reported]
        await self.feedback.feedback(pack_feedback(reported[0][0], arrivals))


async def test_a_thin_link_brings_the_estimate_under_what_it_carries_within_a_second() -> None:
    bed = Bed()
    await bed.run(Link(), 5, bps=700_000)
    before = bed.feedback.estimate_bps
    assert before is not None and before >= 700_000
    started = bed.now_ms
    await bed.run(Link(rate_bps=300_000), 1, bps=700_000)
    fallen = [(t, bps) for t, bps, _ in bed.estimates if t > started and bps <= 300_000]
    assert fallen, bed.estimates[-5:]
    assert fallen[0][1] >= 0.75 * BACK_OFF * 300_000  # about what the link delivers
    assert bed.feedback.back_offs >= 1


async def test_the_first_back_off_on_a_capped_link_lands_under_what_it_carries() -> None:
    """The rate received over the last half second still holds what arrived before the
    cap: backing off from it left the estimate above the link, the full layer on."""
    bed = Bed()
    await bed.run(Link(), 5, bps=700_000)
    await bed.run(Link(rate_bps=300_000), 0.4, bps=700_000)
    assert bed.feedback.back_offs == 1
    assert bed.feedback.estimate_bps is not None
    assert 0.7 * 300_000 <= bed.feedback.estimate_bps <= 300_000


async def test_jitter_never_brings_the_estimate_down() -> None:
    bed = Bed()
    await bed.run(Link(), 4, bps=600_000)
    before = bed.feedback.estimate_bps
    assert before is not None and before > 600_000
    await bed.run(Link(delay_ms=50, jitter_ms=30), 20, bps=600_000)
    assert bed.feedback.back_offs == 0
    estimates = [bps for _, bps, _ in bed.estimates]
    assert estimates == sorted(estimates)  # it never fell
    assert bed.feedback.estimate_bps is not None and bed.feedback.estimate_bps >= before


async def test_a_longer_path_costs_at_most_a_dip_of_a_few_seconds() -> None:
    """A path 150 ms longer at once looks like a queue filling until it stops growing."""
    bed = Bed()
    await bed.run(Link(), 6, bps=500_000)
    before = bed.feedback.estimate_bps
    assert before is not None
    await bed.run(Link(delay_ms=150), 2, bps=500_000)
    assert bed.feedback.back_offs <= 4
    backed_off = bed.feedback.back_offs
    await bed.run(Link(delay_ms=150), 8, bps=500_000)
    assert bed.feedback.back_offs == backed_off  # once it stopped growing: no more
    assert bed.feedback.estimate_bps is not None and bed.feedback.estimate_bps >= 500_000


async def test_heavy_loss_brings_it_down_and_light_loss_holds_it() -> None:
    bed = Bed()
    await bed.run(Link(), 4, bps=600_000)
    await bed.run(Link(loss=0.05), 5, bps=600_000)
    held = bed.feedback.estimate_bps
    assert bed.feedback.back_offs == 0
    assert 0.02 <= bed.feedback.loss <= 0.10
    await bed.run(Link(loss=0.05), 3, bps=600_000)
    assert bed.feedback.estimate_bps == held  # neither up nor down
    await bed.run(Link(loss=0.3), 2, bps=600_000)
    assert bed.feedback.back_offs >= 1
    assert bed.feedback.estimate_bps is not None and bed.feedback.estimate_bps < 0.8 * 600_000


async def test_it_grows_no_further_than_half_again_what_the_link_carries() -> None:
    bed = Bed()
    await bed.run(Link(), 2, bps=400_000)
    first = bed.feedback.estimate_bps
    assert first is not None
    await bed.run(Link(), 5, bps=400_000)
    assert bed.feedback.estimate_bps is not None
    assert bed.feedback.estimate_bps <= 1.5 * 400_000 + 10_000 + 1
    assert bed.feedback.estimate_bps >= first


async def test_a_queue_standing_on_the_link_is_told_at_once_and_holds_the_estimate() -> None:
    """Padding raises what a subscriber receives towards its estimate (media/layers.py):
    once a 300 kbit/s link is given more than it carries, the estimate stops growing and
    the queue is reported (a probe ends there) well before the link's buffer overflows."""
    bed = Bed()
    link = Link(rate_bps=300_000)
    await bed.run(link, 11, bps=150_000)  # the lower layer alone, for a while

    def queued() -> bool:
        return bed.feedback.queued

    assert not queued()
    told = len(bed.estimates)
    while not queued():
        assert bed.now_ms < 30_000, "no queue seen"
        assert bed.feedback.estimate_bps is not None
        await bed.run(link, 0.1, bps=bed.feedback.estimate_bps / 1.3)
    queued_at, held = bed.now_ms, bed.feedback.estimate_bps
    assert held is not None
    assert bed.estimates[-1][0] == queued_at and len(bed.estimates) > told  # told at once
    assert 0.9 * 300_000 <= held / 1.3 <= 1.25 * 300_000  # what it found the link carries
    assert bed.feedback.back_offs == 0 and bed.feedback.loss == 0
    assert bed.feedback.queue_ms < 100  # of the ~290 ms the buffer holds
    await bed.run(link, 0.5, bps=held / 1.3)  # while the queue stands, no growth
    assert queued() and bed.feedback.estimate_bps == held


async def test_a_number_never_sent_is_no_loss_and_a_late_arrival_undoes_one() -> None:
    now = [0.0]
    feedback = TransportFeedback(clock=lambda: now[0])
    await feedback.feedback(pack_feedback(feedback.take(1000), [0.0]))
    now[0] = 5.0  # past the first seconds, whose losses do not count
    numbers = [feedback.take(1000) for _ in range(10)]
    feedback.unsent(numbers[3])
    arrivals: list[float | None] = [float(i) for i in range(10)]
    arrivals[3] = None
    await feedback.feedback(pack_feedback(numbers[0], arrivals))
    assert feedback.loss == 0
    arrivals[5] = None
    numbers = [feedback.take(1000) for _ in range(10)]
    await feedback.feedback(pack_feedback(numbers[0], arrivals[:6]))
    assert feedback.loss > 0
    await feedback.feedback(pack_feedback(numbers[5], [5.5, 6.0, 7.0, 8.0, 9.0]))
    lost, reported = 1, 9 + 10  # 5 came late: only 3 stays lost (of the last 2 s)
    assert feedback.loss == pytest.approx(lost / reported)


async def test_losses_in_the_first_seconds_do_not_count() -> None:
    now = [0.0]
    feedback = TransportFeedback(clock=lambda: now[0])
    numbers = [feedback.take(1000) for _ in range(10)]
    await feedback.feedback(pack_feedback(numbers[0], [None] * 5 + [1.0] * 5))
    assert feedback.loss == 0
    now[0] = 3.0
    numbers = [feedback.take(1000) for _ in range(10)]
    await feedback.feedback(pack_feedback(numbers[0], [None] * 5 + [2.0] * 5))
    assert feedback.loss == pytest.approx(5 / 10)  # these count


async def test_after_a_back_off_only_what_was_lost_since_brings_it_down_again() -> None:
    """The loss window still holds what made it back off, and what is received falls with
    what is sent: counting that again walked the estimate down to a fraction of the link."""
    bed = Bed()
    await bed.run(Link(), 4, bps=600_000)
    await bed.run(Link(loss=0.4), 0.5, bps=600_000)
    assert bed.feedback.back_offs >= 1
    backed_off, estimate = bed.feedback.back_offs, bed.feedback.estimate_bps
    await bed.run(Link(), 1.5, bps=200_000)  # clean again, and the sender sends less
    assert bed.feedback.back_offs == backed_off
    assert bed.feedback.estimate_bps is not None and estimate is not None
    assert bed.feedback.estimate_bps >= estimate


def test_retransmissions_keep_to_a_share_of_the_estimate() -> None:
    feedback = TransportFeedback()
    assert all(feedback.may_retransmit(0.0) for _ in range(100))  # no estimate yet
    feedback.estimate_bps = 800_000  # 15 %: 15 kB/s, a burst of half a second
    allowed = sum(feedback.may_retransmit(1.0) for _ in range(100))
    assert allowed == 7500 // 1200
    assert not feedback.may_retransmit(1.0)
    assert sum(feedback.may_retransmit(2.0) for _ in range(100)) == 6  # refilled
    assert feedback.resends_refused > 0


async def test_the_browsers_reference_time_wrapping_keeps_the_window_and_the_rate() -> None:
    """The feedback's 24-bit reference time (the browser's clock, 64 ms ticks) wraps every
    12.4 days: across the wrap the window of arrivals stays one second long and the rate
    received follows the stream (read as it is, every later arrival would be 12 days before
    the earlier ones: the window would grow for good and the rate stay frozen)."""
    now_ms = 0.0
    feedback = TransportFeedback(clock=lambda: now_ms / 1000)
    wrap_ms, half_ms = (1 << 24) * 64.0, (1 << 23) * 64.0
    browser_ms = half_ms - 3_000.0  # the browser's clock, 3 s before the wrap
    pending: list[tuple[int, float]] = []
    sizes: list[int] = []

    async def run(seconds: float, bps: int) -> None:
        nonlocal now_ms, browser_ms, pending
        end, next_report = now_ms + seconds * 1000, now_ms + 100
        while now_ms < end:
            pending.append((feedback.take(1000), browser_ms + 20))
            step = 1000 * 8000 / bps
            now_ms += step
            browser_ms += step
            if now_ms >= next_report:
                next_report += 100
                arrivals = [a for _, a in pending]
                shift = -wrap_ms if arrivals[0] >= half_ms else 0.0  # as it is on the wire
                await feedback.feedback(pack_feedback(pending[0][0], [a + shift for a in arrivals]))
                pending = []
                sizes.append(len(feedback._arrivals))

    await run(10, 500_000)
    assert max(sizes) < 200, max(sizes)  # one second of 62.5 packets a second, and no more
    assert abs(feedback.received_bps - 500_000) < 50_000, feedback.received_bps
    assert feedback.stretch < 1.5
    await run(5, 250_000)
    assert abs(feedback.received_bps - 250_000) < 30_000, feedback.received_bps
    assert max(sizes) < 200


async def test_a_forged_reference_time_cannot_make_the_window_grow() -> None:
    """One feedback claiming an arrival far in the future (a broken or hostile page), then
    ordinary ones: the arrivals kept stay bounded."""
    now_ms = 0.0
    feedback = TransportFeedback(clock=lambda: now_ms / 1000)
    number = feedback.take(1000)
    await feedback.feedback(pack_feedback(number, [5_000_000.0]))
    for i in range(400):
        numbers = [feedback.take(1000) for _ in range(8)]
        now_ms += 100
        await feedback.feedback(pack_feedback(numbers[0], [now_ms + j for j in range(8)]))
        assert len(feedback._arrivals) <= MAX_ARRIVALS, i


def test_a_thin_link_still_gets_its_share_of_retransmissions() -> None:
    """Below 128 kbit/s half a second of the 15 % share is less than one retransmission:
    the share still comes, one at a time (the thinnest links need repair the most)."""
    feedback = TransportFeedback()
    feedback.estimate_bps = 100_000  # 15 %: 1,875 bytes a second
    allowed = sum(feedback.may_retransmit(i / 10) for i in range(100))  # 10 s, 10 a second
    assert 14 <= allowed <= 17, allowed
