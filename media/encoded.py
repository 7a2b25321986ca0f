"""Encoded frames through aiortc without decoding or encoding (aiortc's internals are
reached through media/seams.py).

- :func:`tap_receiver` turns a receiver's assembled frames into ``av.Packet`` objects on its
  track, so no decoder is ever created (frames for the recorder, assembled once per
  published track; subscribers get the RTP packets themselves, media/forward.py);
- :func:`keyframe_requester` asks a publisher for a keyframe, rate-limited;
- :func:`forward_keyframe_requests` passes a subscriber's PLI/FIR up to the publisher.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import logging
import queue
import time
from collections.abc import Callable
from typing import Any, Protocol

import av
from aiortc import RTCRtpReceiver, RTCRtpSender

from media import seams
from media.stats import Traffic

log = logging.getLogger("vreception.media")


def vp8_is_keyframe(data: bytes) -> bool:
    """RFC 6386 §9.1: the P bit of the frame tag is 0 on a keyframe."""
    return len(data) >= 3 and (data[0] & 0x01) == 0


def h264_is_keyframe(data: bytes) -> bool:
    """An Annex-B access unit holding an IDR slice (NAL type 5)."""
    i = 0
    while (i := data.find(b"\x00\x00\x01", i)) >= 0 and i + 3 < len(data):
        if data[i + 3] & 0x1F == 5:
            return True
        i += 3
    return False


def is_keyframe(codec: str, data: bytes) -> bool:
    if codec == "vp8":
        return vp8_is_keyframe(data)
    if codec == "h264":
        return h264_is_keyframe(data)
    return True  # audio: every frame stands alone


@functools.cache
def _time_base(clock_rate: int) -> fractions.Fraction:
    return fractions.Fraction(1, clock_rate)


def to_packet(codec: Any, frame: Any) -> av.Packet[Any]:
    """An assembled ``JitterFrame`` as an ``av.Packet`` (pts in RTP clock ticks)."""
    name = str(codec.name).lower()
    packet = av.Packet(frame.data)
    packet.pts = packet.dts = frame.timestamp
    packet.time_base = _time_base(codec.clockRate)
    packet.is_keyframe = is_keyframe(name, frame.data)
    packet.opaque = name
    return packet


class _TapQueue(queue.Queue[Any]):
    """Stands in for the receiver's decoder queue: frames go straight to the track."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        super().__init__()
        self._receiver = receiver

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # stop sentinel: let the (idle) decoder thread end the track
            super().put(None, block, timeout)
            return
        codec, frame = item
        seams.track_queue(self._receiver).put_nowait(to_packet(codec, frame))


def tap_receiver(receiver: RTCRtpReceiver, low_latency: bool = True) -> None:
    """Make ``receiver.track.recv()`` return encoded ``av.Packet``s; call in on("track").
    ``low_latency``: frames leave the jitter buffer as soon as they are complete."""
    # the decoder queue: receive() hands it to the decoder thread
    seams.tap_decoder_queue(receiver, _TapQueue(receiver))
    if low_latency:
        current = seams.jitter_buffer(receiver)
        seams.replace_jitter_buffer(receiver, seams.LowLatencyJitterBuffer.like(current))


_pending: set[asyncio.Future[Any]] = set()


class KeyframeRequest(Protocol):
    """Asks a publisher for a keyframe: of one SSRC (a simulcast layer), or of all it sends."""

    def __call__(self, ssrc: int | None = None) -> None: ...


def keyframe_requester(
    upstream: RTCRtpReceiver, min_interval: float = 0.5, counters: Traffic | None = None
) -> KeyframeRequest:
    """A function that asks the publisher for a keyframe (PLI) of one SSRC, or of every
    SSRC it sends, at most every min_interval per SSRC; ``counters.keyframes_in`` counts
    the requests sent."""
    last: dict[int | None, float] = {}

    def request(ssrc: int | None = None) -> None:
        now = time.monotonic()
        if now - last.get(ssrc, -1e9) < min_interval:
            return
        last[ssrc] = now
        if counters is not None:
            counters.keyframes_in += 1
        sources = (
            [ssrc] if ssrc is not None else [s.source for s in upstream.getSynchronizationSources()]
        )
        for source in sources:
            task = asyncio.ensure_future(seams.send_pli(upstream, source))
            _pending.add(task)
            task.add_done_callback(_pending.discard)

    return request


def forward_keyframe_requests(
    sender: RTCRtpSender, request: Callable[[], None], counters: Traffic | None = None
) -> None:
    """A PLI or FIR from the subscriber reaches the publisher (the relay cannot encode one);
    ``counters.keyframes_out`` counts them."""

    def wrap(original: Callable[[], None]) -> Callable[[], None]:
        def on_keyframe_request() -> None:
            if counters is not None:
                counters.keyframes_out += 1
            original()
            request()

        return on_keyframe_request

    seams.wrap_keyframe_request(sender, wrap)
