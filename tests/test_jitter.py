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
