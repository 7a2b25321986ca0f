"""Simulcast: layers learnt from their RIDs, the recording on the best layer the publisher
sends (one continuous stream across a change of layer), each subscriber on the layer its
estimate carries (down at once, up on trial), and the SDP that turns simulcast on."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable

from aiortc.rtp import RtcpPsfbPacket, RtcpReceiverInfo, RtcpRrPacket, RtpPacket

from media import seams
from media.forward import (
    ForwardTrack,
    PictureIds,
    Rebase,
    ntp_now,
    starts_keyframe,
    vp8_keyframe_height,
    vp8_picture_fields,
)
from media.layers import LayerChoice, Layers, RecordedStream, choose
from media.transport import accept_simulcast, simulcast_rids
from tests.test_forward import FakeWire, _asks

SECOND = 1 << 32


async def _until_async(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.01)


def _vp8(keyframe: bool, pid: int, tl0: int, start: bool = True) -> bytes:
    """A VP8 payload: descriptor with a 15-bit picture ID and TL0PICIDX, then the frame tag."""
    descriptor = [0x90 if start else 0x80, 0xC0, 0x80 | pid >> 8, pid & 0xFF, tl0]
    return bytes([*descriptor, 0x00 if keyframe else 0x01, 0, 0])


def _packet(
    ssrc: int, seq: int, ts: int, payload: bytes, rid: str | None = None, marker: int = 1
) -> RtpPacket:
    packet = RtpPacket(
        payload_type=96, marker=marker, sequence_number=seq & 0xFFFF, timestamp=ts, ssrc=ssrc
    )
    packet.payload = payload
    packet.extensions.rtp_stream_id = rid
    return packet


def _about(measured: int, expected: int) -> bool:
    """Within 10 kbit/s (a layer's bitrate is measured from its packets)."""
    return abs(measured - expected) <= 10_000


def _layers() -> tuple[Layers, dict[int, int]]:
    rtx: dict[int, int] = {}
    return Layers(["l", "f"], "vp8", rtx), rtx


def test_layers_learn_their_ssrcs_and_retransmission_ssrcs_from_rids() -> None:
    layers, rtx = _layers()
    assert layers.of(_packet(10, 1, 0, b"x")) is None  # no RID yet: unknown
    repair = _packet(99, 5, 0, b"xx")
    repair.extensions.repaired_rtp_stream_id = "f"
    layers.learn_rtx(repair)  # before the layer's own SSRC is known
    full = layers.of(_packet(20, 1, 0, b"x", rid="f"))
    low = layers.of(_packet(10, 1, 0, b"x", rid="l"))
    assert full is not None and full.rid == "f" and full.index == 1
    assert low is not None and low.ssrc == 10
    assert layers.of(_packet(20, 2, 0, b"x")) is full  # the RID is no longer needed
    assert rtx == {99: 20}


def test_a_layer_is_paused_once_not_heard_from_and_its_bitrate_measured() -> None:
    layers, _ = _layers()
    low = layers.of(_packet(10, 1, 0, b"x", rid="l"))
    assert low is not None
    for i in range(10):
        low.note(_packet(10, i, 0, bytes(988)), 100.0 + i * 0.1)
    assert low.active(101.0) and low.bps(101.0) == 10 * 1000 * 8
    assert not low.active(102.5) and low.bps(102.5) == 0
    assert layers.best(101.0) is low and layers.best(102.5) is None


def _flowing(layers: Layers, now: float, kbps: dict[str, int]) -> None:
    """Ten packets a second of each layer named, up to ``now``: for the last 3 s, or on
    from where the last call left it when that is less than 10 s ago (it kept flowing)."""
    for layer in layers.layers:
        if layer.rid in kbps:
            layer.ssrc = layer.ssrc or {"l": 10, "f": 20}[layer.rid]
            size = kbps[layer.rid] * 1000 // 8 // 10
            steps = 30 if now - layer.heard > 10 else round((now - layer.heard) * 10)
            for i in range(steps):
                at = now - (steps - 1 - i) * 0.1
                layer.note(_packet(layer.ssrc, i, 0, bytes(size - 12)), at)


def test_a_subscriber_gets_the_highest_layer_its_estimate_carries() -> None:
    layers, _ = _layers()
    _flowing(layers, 50.0, {"l": 150, "f": 700})
    low, full = layers.layers
    assert choose(layers, None, 50.0) is full
    assert choose(layers, 1_000_000, 50.0) is full
    assert choose(layers, 700_000, 50.0) is low  # no headroom left
    assert choose(layers, 50_000, 50.0) is low  # the lowest, even when it does not fit
    _flowing(layers, 60.0, {"l": 150})  # the publisher paused its full layer
    assert choose(layers, 1_000_000, 60.0) is low


def test_a_subscriber_goes_down_at_once_and_up_after_a_probe_that_backs_off_on_congestion() -> None:
    layers, _ = _layers()
    low, full = layers.layers
    choice = LayerChoice(first_try_s=10, max_wait_s=40)
    now = 100.0
    _flowing(layers, now, {"l": 150, "f": 700})
    assert choice.pick(layers, 2_000_000, now) is full and choice.padding_bps == 0
    assert choice.pick(layers, 250_000, now, full) is low  # far below: down at once
    _flowing(layers, now + 5, {"l": 150, "f": 700})
    assert choice.pick(layers, 235_000, now + 5, low) is low and choice.padding_bps == 0
    _flowing(layers, now + 11, {"l": 150, "f": 700})
    assert choice.pick(layers, 235_000, now + 11, low) is low and choice.probes == 1
    # padding keeps what it receives at the estimate / 1.3, so the estimate can grow
    assert _about(choice.padding_bps, 235_000 * 10 // 13 - 150_000)
    _flowing(layers, now + 12, {"l": 150, "f": 700})
    assert choice.pick(layers, 520_000, now + 12, low) is low
    assert _about(choice.padding_bps, 400_000 - 150_000)
    _flowing(layers, now + 13, {"l": 150, "f": 700})
    assert choice.pick(layers, 760_000, now + 13, low) is low  # not quite there
    assert _about(choice.padding_bps, 760_000 * 10 // 13 - 150_000)
    _flowing(layers, now + 14, {"l": 150, "f": 700})
    assert choice.pick(layers, 680_000, now + 14, low) is low and choice.padding_bps == 0
    assert choice.failed == 1 and choice.next_try == now + 14 + 20  # fell: twice as long
    _flowing(layers, now + 35, {"l": 150, "f": 700})
    assert choice.pick(layers, 300_000, now + 35, low) is low and choice.probes == 1
    _flowing(layers, now + 37, {"l": 150, "f": 700})
    assert choice.pick(layers, 300_000, now + 37, low) is low and choice.probes == 1
    _flowing(layers, now + 38, {"l": 150, "f": 700})
    assert choice.pick(layers, 300_000, now + 38, low) is low  # steady for 3 s: probing
    assert choice.probes == 2 and choice.padding_bps > 0
    _flowing(layers, now + 41, {"l": 150, "f": 700})
    assert choice.pick(layers, 900_000, now + 41, low) is full  # it fits: up, no padding
    assert choice.probe is None and choice.padding_bps == 0 and choice.wait_s == 10


def test_a_probe_waits_for_a_steady_estimate_and_ends_when_it_stalls() -> None:
    layers, _ = _layers()
    low, full = layers.layers
    choice = LayerChoice(first_try_s=2)
    _flowing(layers, 10.0, {"l": 150, "f": 700})
    assert choice.pick(layers, 200_000, 10.0, full) is low
    for t, bps in ((12.5, 190_000), (13.5, 180_000), (14.5, 185_000)):  # a thin link's sawtooth
        _flowing(layers, t, {"l": 150, "f": 700})
        assert choice.pick(layers, bps, t, low) is low and choice.probes == 0
    _flowing(layers, 16.6, {"l": 150, "f": 700})
    assert choice.pick(layers, 186_000, 16.6, low) is low and choice.probes == 1
    for t in (18.0, 20.0, 21.0):  # the estimate does not grow: the link carries no more
        _flowing(layers, t, {"l": 150, "f": 700})
        assert choice.pick(layers, 187_000, t, low) is low and choice.probe is not None
    _flowing(layers, 22.0, {"l": 150, "f": 700})
    assert choice.pick(layers, 187_000, 22.0, low) is low
    assert choice.probe is None and choice.stalled == 1 and choice.padding_bps == 0
    assert choice.next_try == 22.0 + 4  # twice as long


def probing(choice: LayerChoice) -> bool:
    return choice.probe is not None


def test_a_probe_ends_as_soon_as_a_queue_stands_on_the_link() -> None:
    """Transport-cc feedback shows the padding filling the link before the estimate falls:
    the padding stops there, not once the queue overflowed."""
    layers, _ = _layers()
    low, _full = layers.layers
    choice = LayerChoice(first_try_s=2)
    _flowing(layers, 10.0, {"l": 150, "f": 700})
    assert choice.pick(layers, 300_000, 10.0, low) is low and choice.probes == 0
    _flowing(layers, 15.0, {"l": 150, "f": 700})
    assert choice.pick(layers, 300_000, 15.0, low) is low and choice.probes == 1
    _flowing(layers, 16.0, {"l": 150, "f": 700})
    assert choice.pick(layers, 340_000, 16.0, low, lossy=False) is low
    assert choice.padding_bps > 0  # still growing, no queue
    _flowing(layers, 16.5, {"l": 150, "f": 700})
    assert choice.pick(layers, 345_000, 16.5, low, lossy=False, queued=True) is low
    assert not probing(choice) and choice.padding_bps == 0 and choice.failed == 1
    assert choice.next_try == 16.5 + 4  # twice as long
    now = 16.5
    for failed in range(2, 6):  # ended by a queue each time: the waits stop at 8 s
        now = choice.next_try + 0.1
        _flowing(layers, now, {"l": 150, "f": 700})
        assert choice.pick(layers, 345_000, now, low, lossy=False) is low
        assert probing(choice)
        _flowing(layers, now + 0.5, {"l": 150, "f": 700})
        choice.pick(layers, 345_000, now + 0.5, low, lossy=False, queued=True)
        assert choice.failed == failed and choice.wait_s == min(8.0, 2 * 2**failed)
    now = choice.next_try + 0.1
    _flowing(layers, now, {"l": 150, "f": 700})
    choice.pick(layers, 345_000, now, low, lossy=False)
    assert probing(choice)
    _flowing(layers, now + 1, {"l": 150, "f": 700})
    choice.pick(layers, 200_000, now + 1, low, lossy=True)  # the estimate fell: a real loss
    assert choice.wait_s == 16.0


def test_a_small_shortfall_goes_down_only_when_it_lasts() -> None:
    layers, _ = _layers()
    low, full = layers.layers
    choice = LayerChoice()
    _flowing(layers, 10.0, {"l": 150, "f": 700})
    assert choice.pick(layers, 740_000, 10.0, full) is full  # fits whole: kept
    assert choice.pick(layers, 600_000, 10.0, full) is full  # over 80 %: kept
    _flowing(layers, 15.0, {"l": 150, "f": 700})
    assert choice.pick(layers, 600_000, 15.0, full) is full  # ... for as long as it lasts
    assert choice.pick(layers, 500_000, 15.0, full) is full  # a keyframe's swell, maybe
    _flowing(layers, 16.0, {"l": 150, "f": 700})
    assert choice.pick(layers, 500_000, 16.0, full) is full
    _flowing(layers, 16.6, {"l": 150, "f": 700})
    assert choice.pick(layers, 500_000, 16.6, full) is low  # 1.6 s short: down


def test_rebase_keeps_the_first_sources_numbers_and_continues_across_a_new_one() -> None:
    rebase = Rebase(90000, keep_first=True)
    first = _packet(1, 65534, 1000, b"x")
    rebase.restart(first, 0)
    assert rebase.map(first, 0) == (65534, 1000)
    assert rebase.map(_packet(1, 1, 4000, b"x"), SECOND // 10) == (1, 4000)
    assert rebase.source_number(1) == 1 and rebase.source_number(65534) == 65534
    second = _packet(2, 500, 77, b"x")
    rebase.restart(second, SECOND // 10 + SECOND)
    assert rebase.map(second, SECOND // 10 + SECOND) == (2, 4000 + 90000)
    assert rebase.map(_packet(2, 499, 0, b"x"), 0) is None  # before the new source began
    assert rebase.source_number(3) == 501 and rebase.source_number(1) is None


def _feed(
    layers: Layers, recorded: RecordedStream, packet: RtpPacket, at: float
) -> RtpPacket | None:
    """A publisher's packet arriving at ``at``: what the receiver's path (the recording)
    gets of it."""
    layer = layers.of(packet)
    assert layer is not None
    layer.note(packet, at)
    return recorded.feed(packet, layer, int(at * SECOND), at)


def test_the_recording_follows_the_best_layer_as_one_continuous_stream() -> None:
    layers, _ = _layers()
    asked: list[int] = []
    recorded = RecordedStream(layers, 90000, _asks(asked, 0))
    fed: list[RtpPacket] = []
    now, ntp = 10.0, 10 * SECOND

    def send(ssrc: int, seq: int, ts: int, key: bool, rid: str, at: float) -> None:
        out = _feed(layers, recorded, _packet(ssrc, seq, ts, _vp8(key, seq, 0), rid=rid), at)
        if out is not None:
            fed.append(out)

    send(10, 100, 0, True, "l", now)
    send(20, 7000, 50, False, "f", now)  # the best layer, but not a keyframe: asked for
    assert asked == [20] and [p.ssrc for p in fed] == [10]
    send(20, 7001, 3050, True, "f", now + 0.1)
    send(10, 101, 3000, False, "l", now + 0.1)  # no longer recorded
    send(20, 7002, 6050, False, "f", now + 0.2)
    assert [(p.ssrc, p.sequence_number) for p in fed] == [(10, 100), (20, 101), (20, 102)]
    assert fed[1].timestamp - fed[0].timestamp >= 9000 * 1 - 1  # 0.1 s on
    # the publisher stops sending its full layer: the recording goes on with the low one
    for i in range(20):
        send(10, 102 + i, 6000 + i * 3000, i == 15, "l", now + 0.3 + i * 0.1)
    assert asked[-1] == 10
    recorded_numbers = [p.sequence_number for p in fed]
    assert recorded_numbers == list(range(100, 100 + len(fed)))  # one sequence space
    assert fed[-1].ssrc == 10 and recorded.switches == 3
    # a NACK of the continuous stream goes upstream in the low layer's own numbers
    assert recorded.upstream(10, [recorded_numbers[-1]]) == (10, [102 + 19])
    assert ntp  # the clock the test used


def test_the_recording_goes_on_at_once_when_a_layer_that_lost_a_packet_is_left() -> None:
    """The full layer loses a packet and stops (congestion) before its retransmission
    comes; the recording changes to the low layer at its keyframe. The receiver's jitter
    buffer (the recorder's frames) gives that keyframe at once, not once the gap has been
    pushed out by 512 more packets (tens of seconds of a low layer)."""
    layers, _ = _layers()
    recorded = RecordedStream(layers, 90000, _asks([], 0))
    buffer = seams.LowLatencyJitterBuffer(capacity=512, is_video=True)
    buffer.keyframe = functools.partial(starts_keyframe, "vp8")
    frames: list[int] = []
    now = 10.0

    def send(ssrc: int, seq: int, ts: int, key: bool, rid: str, at: float) -> None:
        out = _feed(layers, recorded, _packet(ssrc, seq, ts, _vp8(key, seq, 0), rid=rid), at)
        if out is not None:
            out._data = out.payload  # type: ignore[attr-defined]  # as aiortc depacketizes
            frame = buffer.add(out)[1]
            if frame is not None:
                frames.append(frame.timestamp)

    send(20, 7000, 0, True, "f", now)
    send(20, 7002, 6000, False, "f", now + 0.066)  # 7001 lost
    assert frames == [0]
    # the full layer stops; the low one's keyframe takes over the recording
    for i in range(3):
        send(10, 100 + i, 9000 + i * 3000, i == 1, "l", now + 2 + i * 0.1)
    assert recorded.layer is not None and recorded.layer.rid == "l"
    assert len(frames) == 3 and buffer.skipped == 1  # the keyframe and the frame after it


def test_the_recording_goes_on_numbered_on_when_its_layer_restarts_on_a_new_ssrc() -> None:
    """The browser restarts the recorded layer on a new SSRC (its numbers and timestamps
    start afresh): the recording waits for that SSRC's keyframe (asked for) and goes on in
    the same sequence space, instead of mapping the new numbers with the old SSRC's
    reference (a jump the jitter buffer would reset on, or packets dropped as too old)."""
    layers, _ = _layers()
    asked: list[int] = []
    recorded = RecordedStream(layers, 90000, _asks(asked, 0))
    fed: list[RtpPacket] = []
    now = 10.0

    def send(ssrc: int, seq: int, ts: int, key: bool, at: float) -> None:
        out = _feed(layers, recorded, _packet(ssrc, seq, ts, _vp8(key, seq, 0), rid="f"), at)
        if out is not None:
            fed.append(out)

    send(20, 7000, 0, True, now)
    send(20, 7001, 3000, False, now + 0.033)
    send(30, 100, 500_000, False, now + 0.066)  # renumbered; not a keyframe: asked for
    assert asked == [30] and len(fed) == 2
    send(30, 101, 503_000, True, now + 0.1)
    send(30, 102, 506_000, False, now + 0.133)
    assert [p.sequence_number for p in fed] == [7000, 7001, 7002, 7003]
    assert 0 < fed[2].timestamp - fed[1].timestamp <= 9000  # moved on by the time passed
    assert fed[3].timestamp - fed[2].timestamp == 3000
    assert recorded.upstream(30, [7003]) == (30, [102])  # a NACK in the new SSRC's numbers


def test_picture_ids_go_on_across_a_change_of_layer() -> None:
    pictures = PictureIds()
    buf = bytearray(_vp8(True, 300, 9))
    pictures.rewrite(buf, 0)
    assert vp8_picture_fields(bytes(buf)) == (2, 15, 4) and buf[2:5] == bytes([0x81, 0x2C, 9])
    other = _vp8(True, 32760, 200)
    pictures.restart(other)
    buf = bytearray(b"hdr" + other)
    pictures.rewrite(buf, 3)
    assert (buf[5] & 0x7F) << 8 | buf[6] == 301 and buf[7] == 10
    late = bytearray(_vp8(False, 32761, 200))  # numbers wrap on
    pictures.rewrite(late, 0)
    assert (late[2] & 0x7F) << 8 | late[3] == 302


async def _layered_copy() -> tuple[Layers, list[int], ForwardTrack, FakeWire]:
    """A subscriber's copy of a two-layer VP8 track, sending; the keyframes it asks for."""
    layers, _ = _layers()
    asked: list[int] = []
    track = ForwardTrack("video", "vp8", 90000, _asks(asked, 0))
    track.layered(layers, LayerChoice())
    fake = FakeWire()
    await track.start_sending(fake.wire, 100, "1")
    return layers, asked, track, fake


async def test_a_subscriber_copy_sends_its_wanted_layer_and_switches_on_its_keyframe() -> None:
    layers, asked, track, fake = await _layered_copy()
    base = ntp_now()  # a cached keyframe is recent by the relay's clock

    async def send(ssrc: int, seq: int, key: bool, rid: str, at: int) -> None:
        packet = _packet(ssrc, seq, seq * 3000, _vp8(key, seq, seq), rid=rid)
        layer = layers.of(packet)
        assert layer is not None
        layer.note(packet, time.monotonic())
        layer.keyframes.add(packet, base + at)
        await track.forward(packet, base + at, 0)

    await send(20, 1, True, "f", 0)  # no choice made yet: the best layer flowing
    await send(10, 1, True, "l", 0)
    await send(20, 2, False, "f", SECOND // 30)
    assert [p.sequence_number - fake.sent[0].sequence_number for p in fake.sent] == [0, 1]
    low = layers.layers[0]
    await track.want(low)  # its keyframe is recent: replayed at once
    await send(20, 3, False, "f", 2 * SECOND // 30)  # the old layer stops
    await send(10, 2, False, "l", 2 * SECOND // 30)
    sent = fake.sent
    assert [p.sequence_number - sent[0].sequence_number for p in sent] == [0, 1, 2, 3]
    assert track.layer is low and track.switches == 1
    pids = [vp8_picture_fields(p.payload) for p in sent]
    assert all(f[1] == 15 for f in pids)
    numbers = [(p.payload[2] & 0x7F) << 8 | p.payload[3] for p in sent]
    assert numbers == [1, 2, 3, 4]  # the low layer's own IDs (1, 2) go on from the full's
    layers.layers[1].keyframes.packets = []  # no recent keyframe of the full layer
    await track.want(layers.layers[1])  # asked for
    await send(20, 60, False, "f", 3 * SECOND)
    assert asked[-1] == 20 and track.layer is low


async def test_going_down_in_a_hurry_stops_the_old_layer_at_its_frame_end_until_the_keyframe() -> (
    None
):
    """A link that cannot carry the layer being sent: its packets stop at the end of the
    frame under way (so audio behind it gets through) until the lower layer's keyframe;
    the numbers the subscriber sees have no gap."""
    layers, asked, track, fake = await _layered_copy()
    base = ntp_now()

    async def send(ssrc: int, seq: int, key: bool, rid: str, marker: int = 1) -> None:
        packet = _packet(ssrc, seq, seq * 3000, _vp8(key, seq, seq), rid=rid, marker=marker)
        layer = layers.of(packet)
        assert layer is not None
        layer.note(packet, time.monotonic())
        await track.forward(packet, base + seq * SECOND // 30, 0)

    await send(20, 1, True, "f")
    await send(10, 1, True, "l")  # an old keyframe of the low layer, not cached
    await send(20, 2, False, "f", marker=0)  # a frame under way...
    low = layers.layers[0]
    await track.want(low, drop_current=True)
    assert asked[-1] == 10  # its keyframe asked for
    await send(20, 3, False, "f")  # ... ends
    await send(20, 4, False, "f")  # the next frame of the full layer: not sent
    await send(20, 5, False, "f")
    await send(10, 6, True, "l")  # the low layer's keyframe
    await send(10, 7, False, "l")
    sent = fake.sent
    assert [p.ssrc == sent[0].ssrc for p in sent] == [True] * 5
    assert [p.sequence_number - sent[0].sequence_number for p in sent] == [0, 1, 2, 3, 4]
    assert [p.timestamp for p in sent][2] != [p.timestamp for p in sent][3]
    assert track.layer is low and track.switches == 1

    # without the hurry (or going up) the layer being sent goes on until the keyframe
    layers.layers[1].keyframes.packets = []
    await track.want(layers.layers[1])
    await send(10, 8, False, "l")
    await send(20, 9, False, "f")
    assert len(fake.sent) == 6 and track.layer is low


async def test_a_probe_sends_padding_on_the_retransmission_stream() -> None:
    numbers = iter(range(7, 100))
    fake = FakeWire(rtx=(0xABCD, 97), next_rtx_number=lambda: next(numbers))
    track = ForwardTrack("video", "vp8", 90000, _asks([], 0))
    await track.start_sending(fake.wire, 96, "1")
    track.pad(1_000_000)
    await _until_async(lambda: len(fake.sent) >= 10)
    track.pad(0)
    padding = fake.sent[:10]
    assert {(p.ssrc, p.payload_type) for p in padding} == {(0xABCD, 97)}
    assert [p.sequence_number for p in padding] == list(range(7, 17))
    assert all(p.payload == b"" and p.padding_size == 255 for p in padding)
    assert all(p.extensions.abs_send_time is not None for p in padding)
    assert {p.extensions.mid for p in padding} == {"1"}
    assert not any(isinstance(v, bytes) for v in fake.wire.history.values())  # not kept
    await _until_async(lambda: track._padder is None)
    sent = len(fake.sent)
    await asyncio.sleep(0.1)
    assert len(fake.sent) == sent  # stopped


def test_an_offers_simulcast_layers_are_read_and_accepted_in_the_answer() -> None:
    offer = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "a=mid:0",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
            "a=mid:1",
            "a=rid:l send",
            "a=rid:f send",
            "a=rid:x recv",
            "a=simulcast:send l;f;~p",
            "",
        ]
    )
    assert simulcast_rids(offer) == {"1": ["l", "f"]}
    answer = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\nm=video 9 X 96\r\na=mid:1\r\na=sendonly\r\n"
    accepted = accept_simulcast(answer, {"1": ["l", "f"]})
    video = accepted.split("m=video")[1]
    assert "a=rid:l recv\r\na=rid:f recv\r\na=simulcast:recv l;f\r\n" in video
    assert "a=rid" not in accepted.split("m=video")[0]
    assert accepted.endswith("\r\n")
    single = "v=0\r\nm=video 9 X 96\r\na=mid:0\r\na=rid:f send\r\na=simulcast:send f\r\n"
    assert simulcast_rids(single) == {}  # one layer is no simulcast


def _nacking(layers: Layers) -> tuple[RecordedStream, list[tuple[int, list[int]]]]:
    """A recorded stream of ``layers`` and the NACKs its layers not recorded send."""
    recorded = RecordedStream(layers, 90000, _asks([], 0))
    nacks: list[tuple[int, list[int]]] = []

    async def send_nack(ssrc: int, lost: list[int]) -> None:
        nacks.append((ssrc, lost))

    recorded.send_nack = send_nack
    return recorded, nacks


async def test_losses_of_a_layer_not_recorded_are_asked_for_in_its_own_numbers() -> None:
    layers, _ = _layers()
    recorded, nacks = _nacking(layers)
    full = layers.of(_packet(20, 1, 0, _vp8(True, 1, 1), rid="f"))
    low = layers.of(_packet(10, 50, 0, _vp8(True, 1, 1), rid="l"))
    assert full is not None and low is not None
    full.note(_packet(20, 1, 0, b""), 1.0)
    assert recorded.feed(_packet(20, 1, 0, _vp8(True, 1, 1)), full, SECOND, 1.0) is not None
    for seq in (50, 51, 54, 53):
        await recorded.repair(_packet(10, seq, 0, b"x"), low)
    await recorded.repair(_packet(20, 9, 0, b"x"), full)  # the recorded one: aiortc's own
    assert nacks == [(10, [52, 53])]


def test_without_loss_only_a_far_lower_estimate_takes_a_subscriber_down() -> None:
    layers, _ = _layers()
    low, full = layers.layers
    choice = LayerChoice()
    _flowing(layers, 10.0, {"l": 150, "f": 700})
    assert choice.pick(layers, 450_000, 10.0, full, lossy=False) is full  # jitter, maybe
    _flowing(layers, 13.0, {"l": 150, "f": 700})
    assert choice.pick(layers, 450_000, 13.0, full, lossy=False) is full  # ... for long
    assert choice.pick(layers, 450_000, 13.0, full, lossy=True) is full
    _flowing(layers, 14.6, {"l": 150, "f": 700})
    assert choice.pick(layers, 450_000, 14.6, full, lossy=True) is low  # losing: too thin
    choice = LayerChoice()
    assert choice.pick(layers, 300_000, 14.6, full, lossy=False) is low  # far too thin


def test_a_receiver_report_gives_the_share_lost_and_the_round_trip_of_the_senders_ssrc() -> None:
    arrival = 0x1234 << 48 | 0x56789ABC << 16  # NTP; its middle 32 bits are 0x56789ABC
    lsr = 0x56789ABC - 0x8000 - 0x4000  # the SR went 0.75 s ago, held 0.25 s (0x4000/65536)
    block = RtcpReceiverInfo(
        ssrc=0x1234, fraction_lost=64, packets_lost=9, highest_sequence=1, jitter=0,
        lsr=lsr, dlsr=0x4000,
    )  # fmt: skip
    other = RtcpReceiverInfo(
        ssrc=0x9, fraction_lost=255, packets_lost=9, highest_sequence=1, jitter=0, lsr=0, dlsr=0
    )
    report = RtcpRrPacket(ssrc=1, reports=[other, block])
    assert seams.reception_of(report, 0x1234, arrival) == (0.25, 0.5)
    assert seams.reception_of(report, 0x9, arrival) == (255 / 256, None)  # no SR yet
    assert seams.reception_of(report, 0x5, arrival) is None
    assert seams.reception_of(RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=2), 0x1234, 0) is None
    # a forwarded stream's sender report carries its last packet's time as its LSR, which
    # may be long before the report went out: measured from when it was sent (0.3 s ago,
    # held 0.25 s by the receiver) the round trip is 0.05 s, whatever the LSR says
    sent = (lsr, time.time() - 0.3)
    _, rtt = seams.reception_of(report, 0x1234, arrival, sent) or (0, None)
    assert rtt is not None and 0.04 <= rtt <= 0.2, rtt
    assert seams.reception_of(report, 0x1234, arrival, (lsr + 1, 0.0)) == (0.25, 0.5)  # older


def test_a_copy_is_congested_by_recent_loss_or_a_queues_round_trip() -> None:
    track = ForwardTrack("video", "vp8", 90000, _asks([], 0))
    assert not track.congested(100.0)
    track.loss, track.rtt = (0.01, 99.0), (0.15, 99.0)  # jitter: neither
    assert not track.congested(100.0)
    track.loss = (0.05, 99.0)
    assert track.congested(100.0) and not track.congested(105.0)  # old news after 5 s
    track.loss, track.rtt = (0.0, 99.0), (0.6, 99.0)
    assert track.congested(100.0)


def test_going_down_is_hurried_only_when_the_link_cannot_carry_the_layer_being_sent() -> None:
    layers, _ = _layers()
    now = time.monotonic()
    low, full = layers.layers
    full.bps = lambda now: 700_000  # type: ignore[method-assign]
    choice = LayerChoice()
    assert choice.hurried(low, full, 300_000, now, lossy=False)  # under half its rate
    assert choice.hurried(low, full, 500_000, now, lossy=True)  # overflowing
    assert not choice.hurried(low, full, 500_000, now, lossy=False)  # a shortfall: wait
    assert not choice.hurried(full, low, 300_000, now, lossy=True)  # going up
    assert not choice.hurried(low, full, None, now, lossy=True)  # no estimate


def _vp8_keyframe(width: int, height: int) -> bytes:
    """A VP8 keyframe's first packet: descriptor (S bit, partition 0), frame tag, start code
    and the picture's size (RFC 6386 §9.1)."""
    tag = bytes([0x00, 0x00, 0x00])  # P bit clear: a keyframe
    size = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    return bytes([0x10]) + tag + b"\x9d\x01\x2a" + size + bytes(20)


def test_a_vp8_keyframe_gives_its_layers_picture_height() -> None:
    assert vp8_keyframe_height(_vp8_keyframe(640, 480)) == 480
    assert vp8_keyframe_height(_vp8_keyframe(320, 240)[:9]) is None  # cut short
    assert vp8_keyframe_height(_vp8(False, 1, 1)) is None  # a delta frame has no size
    layers, _ = _layers()
    low = layers.of(_packet(10, 1, 0, _vp8_keyframe(320, 240), rid="l"))
    assert low is not None
    assert [layer.height for layer in layers.layers] == [None, None]  # learnt when cached
    low.keyframes.add(_packet(10, 1, 0, _vp8_keyframe(320, 240), rid="l"), ntp_now())
    assert [layer.height for layer in layers.layers] == [240, None]
    low.keyframes.add(_packet(10, 2, 3000, _vp8(False, 2, 2), rid="l"), ntp_now())
    assert [layer.height for layer in layers.layers] == [240, None]  # until its next keyframe


def _sized(layers: Layers, heights: dict[str, int]) -> None:
    for layer in layers.layers:
        if layer.rid in heights:
            keyframe = _vp8_keyframe(heights[layer.rid] * 4 // 3, heights[layer.rid])
            layer.keyframes.add(_packet(layer.ssrc or 0, 1, 0, keyframe), ntp_now())


def test_a_subscriber_showing_small_pictures_gets_the_lowest_layer_that_tall_and_no_probe() -> None:
    layers, _ = _layers()
    low, full = layers.layers
    now = 100.0
    _flowing(layers, now, {"l": 150, "f": 700})
    assert layers.ceiling(200) is None  # no size known yet: no limit
    _sized(layers, {"l": 240, "f": 480})
    assert [layers.ceiling(h) for h in (None, 0, 200, 240, 241, 480, 900)] == [
        None,
        0,
        0,
        0,
        1,
        1,
        None,  # shown larger than every layer: what its link carries
    ]
    assert choose(layers, 5_000_000, now, ceiling=0) is low
    assert layers.best(now, ceiling=0) is low
    choice = LayerChoice(first_try_s=4)
    assert choice.pick(layers, 5_000_000, now, ceiling=None) is full
    # its tile became small: down at once, though the link carries the full picture
    assert choice.pick(layers, 5_000_000, now, full, lossy=False, ceiling=0) is low
    for later in (5, 10, 20, 40):  # never probed up: padding for a layer not wanted
        _flowing(layers, now + later, {"l": 150, "f": 700})
        assert choice.pick(layers, 300_000, now + later, low, lossy=False, ceiling=0) is low
        assert choice.padding_bps == 0 and choice.probes == 0
    # the full layer paused: the one flowing, whatever the tile
    _flowing(layers, now + 50, {"f": 700})
    assert choose(layers, None, now + 50, ceiling=0) is full


async def test_a_copy_shown_small_starts_on_the_lowest_layer_tall_enough() -> None:
    layers, _, track, fake = await _layered_copy()
    _sized(layers, {"l": 240, "f": 480})
    track.shown_height = 230  # a gallery tile, before any layer is chosen
    base = ntp_now()
    for seq, (ssrc, rid) in enumerate([(20, "f"), (10, "l")], 1):
        packet = _packet(ssrc, seq, seq * 3000, _vp8(True, seq, seq), rid=rid)
        layer = layers.of(packet)
        assert layer is not None
        layer.note(packet, time.monotonic())
        await track.forward(packet, base, 0)
    assert track.wanted is layers.layers[0]
    assert len(fake.sent) == 1 and track.layer is layers.layers[0]  # the full layer's not sent


def test_a_layer_that_resumes_is_not_taken_for_almost_free() -> None:
    """The publisher resumes its full layer after a pause (its uplink recovered): for the
    seconds its bitrate is measured afresh, its rate before the pause stands in, so a
    subscriber on a 300 kbit/s link stays on the low layer instead of being sent the full
    picture it cannot carry (a freeze, and a hurried fall back, on every resume)."""
    layers, _ = _layers()
    low, full = layers.layers
    _flowing(layers, 50.0, {"l": 150, "f": 700})
    assert choose(layers, 300_000, 50.0) is low
    _flowing(layers, 56.0, {"l": 150})  # the full layer paused for 5 s
    full.note(_packet(20, 900, 0, bytes(8738)), 56.1)  # ... and resumes: one packet so far
    assert full.active(56.2) and full.bps(56.2) >= 600_000
    assert choose(layers, 300_000, 56.2) is low
    assert LayerChoice().pick(layers, 300_000, 56.2, low, lossy=False) is low


async def test_a_layer_no_longer_recorded_asks_for_its_own_losses_afresh() -> None:
    """The full layer is recorded for a while (its losses are aiortc's to ask for), then
    the recording goes back to it after the low layer: the low layer's own generator starts
    afresh, asking for exactly what it loses, not for numbers seen before its last turn."""
    layers, _ = _layers()
    recorded, nacks = _nacking(layers)
    now = 10.0

    def packet(ssrc: int, seq: int, key: bool, rid: str) -> RtpPacket:
        return _packet(ssrc, seq, seq * 3000, _vp8(key, seq & 0x7FFF, 0), rid=rid)

    def send(ssrc: int, seq: int, key: bool, rid: str, at: float) -> RtpPacket | None:
        return _feed(layers, recorded, packet(ssrc, seq, key, rid), at)

    async def low_packet(seq: int, at: float) -> None:
        low = packet(10, seq, False, "l")
        if _feed(layers, recorded, low, at) is None:
            layer = layers.of(low)
            assert layer is not None
            await recorded.repair(low, layer)

    assert send(10, 100, True, "l", now) is not None  # the low layer recorded first
    assert send(20, 5000, True, "f", now + 0.01) is not None  # then the full one
    for i in range(1, 5):
        await low_packet(100 + i, now + 0.01 * i)  # seen by the low layer's own generator
    # the full layer pauses; the low layer is recorded again, for 40,000 packets
    assert send(10, 200, True, "l", now + 2) is not None
    for seq in range(201, 40_200, 1000):
        send(10, seq, False, "l", now + 2 + seq / 100_000)
    # the full layer is back and recorded: the low layer asks for its own losses again
    assert send(20, 6000, True, "f", now + 3) is not None
    nacks.clear()
    for seq in (40_300, 40_301, 40_303):
        await low_packet(seq, now + 3.1)
    assert nacks == [(10, [40_302])], nacks
