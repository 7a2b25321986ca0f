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
    # the frame with the gap is dropped; the next one leaves, and a keyframe is asked for;
    # the frames behind it leave with it (no lasting lag)
    assert pli is True and frame is not None and frame.data == b"c"
    assert [f.data for f in buffer.take_ready()] == [b"d", b"e"]
    following = buffer.add(_packet(7, 600, True, b"f"))[1]
    assert following is not None and following.data == b"f" and not buffer.take_ready()


def test_a_gaps_wait_starts_when_it_appears_not_when_the_frames_before_it_have_left() -> None:
    clock = _Clock()
    buffer = LowLatencyJitterBuffer(capacity=512, is_video=True, clock=clock)
    buffer.add(_packet(1, 100, False, b"a"))
    buffer.add(_packet(3, 100, True, b"c"))  # 2 missing: frame 100 waits
    buffer.add(_packet(5, 200, True, b"e"))  # 4 missing too
    clock.now = 0.6
    assert buffer.add(_packet(2, 100, False, b"b"))[1] is not None  # 2 came: 4 is the gap now
    clock.now = LowLatencyJitterBuffer.HOLE_WAIT_S + 0.1  # 4 has waited since 0, not 0.6
    pli, frame = buffer.add(_packet(6, 300, True, b"f"))
    assert pli and frame is not None and frame.data == b"f"


def test_going_on_at_a_keyframe_asks_for_no_keyframe() -> None:
    buffer = LowLatencyJitterBuffer(capacity=512, is_video=True)
    buffer.keyframe = _keyframe_start
    buffer.add(_packet(1, 100, True, b"a"))
    assert buffer.add(_packet(3, 200, True, b"x")) == (False, None)  # 2 lost
    key = _packet(4, 300, True, b"k")
    key.payload = b"K"
    pli, frame = buffer.add(key)
    assert pli is False and frame is not None and frame.data == b"k"


def test_after_waiting_the_recording_goes_on_only_from_a_whole_frame() -> None:
    clock = _Clock()
    buffer = LowLatencyJitterBuffer(capacity=512, is_video=True, clock=clock)
    buffer.add(_packet(1, 100, True, b"a"))
    # 2 and 3 lost, 3 the first packet of the frame 4 ends: that frame is not recorded
    buffer.add(_packet(4, 200, True, b"x"))
    buffer.add(_packet(5, 300, True, b"y"))
    clock.now = LowLatencyJitterBuffer.HOLE_WAIT_S + 0.1
    pli, frame = buffer.add(_packet(6, 400, True, b"z"))
    assert pli and frame is not None and frame.data == b"y"
    assert [f.data for f in buffer.take_ready()] == [b"z"]


def test_a_retransmission_too_late_is_dropped_without_resetting_the_buffer() -> None:
    buffer = LowLatencyJitterBuffer(capacity=512, is_video=True)
    buffer.keyframe = _keyframe_start
    buffer.add(_packet(1, 100, True, b"a"))
    for seq in range(3, 203):  # 2 lost; 200 one-packet frames behind it
        packet = _packet(seq, seq * 100, True, bytes([seq % 256]))
        if seq == 3:
            packet.payload = b"K"
        buffer.add(packet)
        buffer.take_ready()
    pli, frame = buffer.add(_packet(2, 150, True, b"late"))  # 200 behind: too late
    assert (pli, frame) == (False, None)
    after = buffer.add(_packet(203, 20300, True, b"go on"))[1]
    assert after is not None and after.data == b"go on"


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


def test_a_new_numbering_of_the_same_track_is_taken_not_dropped_as_late() -> None:
    """The publisher's stream starts again with numbers a few hundred behind (a new
    stream): aiortc's reset takes it (and asks for a keyframe), from its first packet when
    the SSRC changed, after a few when it did not; a stray packet just behind the origin
    is dropped as late."""
    buffer = LowLatencyJitterBuffer(capacity=512, is_video=True)
    for seq in range(1000, 1010):
        assert buffer.add(_packet(seq, seq * 10, True, b"o"))[1] is not None
    assert buffer.add(_packet(1005, 10050, True, b"late")) == (False, None)
    # the same SSRC, restarting 800 behind: dropped a few times, then taken
    for seq in range(200, 200 + LowLatencyJitterBuffer.LATE_RUN_MAX - 2):
        assert buffer.add(_packet(seq, seq * 10, True, b"x")) == (False, None)
    pli, frame = buffer.add(_packet(230, 2300, True, b"restart"))
    assert pli and frame is not None and frame.data == b"restart"
    after = buffer.add(_packet(231, 2310, True, b"on"))[1]
    assert after is not None and after.data == b"on"
    other = _packet(100, 90000, True, b"new")
    other.ssrc = 4321  # another stream, 132 behind: taken at once
    pli, frame = buffer.add(other)
    assert pli and frame is not None and frame.data == b"new"


def test_a_repaired_gap_leaves_no_wait_behind_for_later_gaps() -> None:
    clock = _Clock()
    buffer = LowLatencyJitterBuffer(capacity=512, is_video=True, clock=clock)
    buffer.add(_packet(1, 10, True, b"a"))
    buffer.add(_packet(3, 30, True, b"c"))  # 2 missing since 0
    assert buffer.add(_packet(2, 20, True, b"b"))[1] is not None  # repaired
    for seq in range(4, 300):
        buffer.add(_packet(seq, seq * 10, True, b"."))
        buffer.take_ready()
    clock.now = 5.0
    buffer.add(_packet(301, 3010, True, b"z"))  # 300 missing since 5.0: waited for
    clock.now = 5.0 + LowLatencyJitterBuffer.HOLE_WAIT_S / 2
    assert buffer.add(_packet(302, 3020, True, b"y")) == (False, None)
    assert len(buffer._gaps) == 1
