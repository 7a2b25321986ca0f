"""The relay's jitter buffer lets a frame go as soon as it is complete."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from media.seams import LowLatencyJitterBuffer


def _packet(seq: int, ts: int, marker: bool, data: bytes) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, marker=marker)
    packet._data = data  # type: ignore[attr-defined]  # the depayloaded bytes, as aiortc sets
    return packet


def test_video_frame_leaves_at_its_marker_even_out_of_order() -> None:
    buffer = LowLatencyJitterBuffer(capacity=128, is_video=True)
    assert buffer.add(_packet(100, 3000, False, b"a"))[1] is None
    assert buffer.add(_packet(102, 3000, True, b"c"))[1] is None  # 101 still missing
    frame = buffer.add(_packet(101, 3000, False, b"b"))[1]
    assert frame is not None and frame.data == b"abc" and frame.timestamp == 3000
    single = buffer.add(_packet(103, 6000, True, b"d"))[1]  # one-packet frame: at once
    assert single is not None and single.data == b"d"


def test_a_frame_without_marker_ends_at_the_next_timestamp() -> None:
    buffer = LowLatencyJitterBuffer(capacity=128, is_video=True)
    assert buffer.add(_packet(1, 10, False, b"x"))[1] is None
    frame = buffer.add(_packet(2, 20, False, b"y"))[1]
    assert frame is not None and frame.data == b"x" and frame.timestamp == 10


def test_audio_packets_leave_at_once() -> None:
    buffer = LowLatencyJitterBuffer(capacity=16)
    for seq in range(5):
        frame = buffer.add(_packet(seq, seq * 960, False, bytes([seq])))[1]
        assert frame is not None and frame.data == bytes([seq])


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _keyframe_start(payload: bytes) -> bool:
    return payload == b"K"


def test_video_goes_on_at_a_keyframe_after_a_gap_without_waiting() -> None:
    """A change of simulcast layer (or a loss never repaired) leaves a gap before the new
    layer's keyframe: the keyframe's frame leaves as soon as it is complete, not once 512
    packets have overflowed the buffer."""
    buffer = LowLatencyJitterBuffer(capacity=512, is_video=True)
    buffer.keyframe = _keyframe_start
    assert buffer.add(_packet(1, 100, True, b"a"))[1] is not None
    assert buffer.add(_packet(3, 200, True, b"c"))[1] is None  # 2 missing: waited for
    key = _packet(4, 300, False, b"k1")
    key.payload = b"K"
    assert buffer.add(key)[1] is None
    frame = buffer.add(_packet(5, 300, True, b"k2"))[1]
    assert frame is not None and frame.data == b"k1k2" and frame.timestamp == 300
    assert buffer.skipped == 1
    after = buffer.add(_packet(6, 400, True, b"d"))[1]
    assert after is not None and after.data == b"d"


def test_video_gives_up_a_gap_after_waiting_for_its_retransmission_and_asks_a_keyframe() -> None:
    clock = _Clock()
    buffer = LowLatencyJitterBuffer(capacity=512, is_video=True, clock=clock)
    assert buffer.add(_packet(1, 100, True, b"a"))[1] is not None
    assert buffer.add(_packet(3, 200, True, b"b2"))[1] is None  # 2 (the frame's start) lost
    assert buffer.add(_packet(4, 300, True, b"c"))[1] is None
    clock.now = LowLatencyJitterBuffer.HOLE_WAIT_S / 2
    assert buffer.add(_packet(5, 400, True, b"d"))[1] is None  # still waited for
    clock.now = LowLatencyJitterBuffer.HOLE_WAIT_S + 0.01
    pli, frame = buffer.add(_packet(6, 500, True, b"e"))
    # the frame with the gap is dropped; the next one leaves, and a keyframe is asked for
    assert pli is True and frame is not None and frame.data == b"c"
    backlog = buffer.add(_packet(7, 600, True, b"f"))[1]  # one frame per packet after it
    assert backlog is not None and backlog.data == b"d"


def test_a_retransmission_in_time_fills_the_gap() -> None:
    clock = _Clock()
    buffer = LowLatencyJitterBuffer(capacity=512, is_video=True, clock=clock)
    buffer.add(_packet(1, 100, False, b"a"))
    assert buffer.add(_packet(3, 100, True, b"c"))[1] is None
    clock.now = 0.5
    frame = buffer.add(_packet(2, 100, False, b"b"))[1]
    assert frame is not None and frame.data == b"abc" and buffer.skipped == 0


def test_audio_goes_on_past_a_lost_packet_after_a_few_more() -> None:
    buffer = LowLatencyJitterBuffer(capacity=16)
    assert buffer.add(_packet(0, 0, False, b"0"))[1] is not None
    frames = [buffer.add(_packet(seq, seq * 960, False, bytes([seq])))[1] for seq in (2, 3)]
    assert frames == [None, None]  # 1 may only be late
    frame = buffer.add(_packet(4, 4 * 960, False, b"\x04"))[1]
    assert frame is not None and frame.data == b"\x02" and buffer.skipped == 1
