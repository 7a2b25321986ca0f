"""Encoded frames through aiortc without decoding or encoding (aiortc's internals are
reached through media/seams.py).

- :func:`tap_receiver` takes a receiver's assembled frames before any decoder: handed to a
  function as :class:`EncodedFrame` (the room's sinks: the recorder), or as ``av.Packet``
  objects on the receiver's track; so no decoder is ever created (frames assembled once per
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


class EncodedFrame:
    """One frame as its publisher encoded it, assembled from its RTP packets: ``pts`` in
    RTP clock ticks of its track (the receiver's timestamp mapping applied)."""

    __slots__ = ("data", "is_keyframe", "pts")

    def __init__(self, data: bytes, pts: int, is_keyframe: bool) -> None:
        self.data, self.pts, self.is_keyframe = data, pts, is_keyframe


Deliver = Callable[[EncodedFrame], None]


class Tap(queue.Queue[Any]):
    """Stands in for a receiver's decoder queue (aiortc puts each assembled frame on it in
    the receiver's RTP handling, on the event loop): a frame goes to ``deliver`` there and
    then, or, without one, onto the receiver's track as an ``av.Packet``. The stop sentinel
    still reaches the (idle) decoder thread, which ends the track."""

    HOLD_MAX = 300  # frames held before attach(): a negotiation never takes 10 s of video

    def __init__(self, receiver: RTCRtpReceiver, hold: bool = False) -> None:
        super().__init__()
        self._receiver = receiver
        self._deliver: Deliver | None = None
        self._held: list[EncodedFrame] | None = [] if hold else None
        self._codec: Any = None
        self._name = ""

    def attach(self, deliver: Deliver) -> None:
        """Hand every frame to ``deliver`` from now on, those held until now first."""
        held, self._held = self._held or [], None
        for frame in held:
            deliver(frame)
        self._deliver = deliver

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # stop sentinel: let the (idle) decoder thread end the track
            super().put(None, block, timeout)
            return
        codec, frame = item
        self._frame(codec, frame)
        # the frames the same packet completed after this one (a gap given up, a late
        # packet filling one): aiortc hands on one per packet, the rest come from here
        buffer = seams.jitter_buffer(self._receiver)
        if isinstance(buffer, seams.LowLatencyJitterBuffer):
            for more in buffer.take_ready():
                more.timestamp = seams.map_timestamp(self._receiver, more.timestamp)
                self._frame(codec, more)

    def _frame(self, codec: Any, frame: Any) -> None:
        deliver = self._deliver
        if deliver is None and self._held is None:
            seams.track_queue(self._receiver).put_nowait(to_packet(codec, frame))
            return
        if codec is not self._codec:
            self._codec, self._name = codec, str(codec.name).lower()
        data = frame.data
        encoded = EncodedFrame(data, frame.timestamp, is_keyframe(self._name, data))
        if deliver is not None:
            deliver(encoded)
        elif self._held is not None and len(self._held) < self.HOLD_MAX:
            self._held.append(encoded)


def tap_receiver(receiver: RTCRtpReceiver, low_latency: bool = True, hold: bool = False) -> Tap:
    """Take ``receiver``'s assembled frames before any decoder; call in on("track"), before
    ``receive()`` starts the decoder thread. Until :meth:`Tap.attach` gives them a function,
    ``receiver.track.recv()`` returns them as ``av.Packet``s, or, ``hold``, they wait for it.
    ``low_latency``: frames leave the jitter buffer as soon as they are complete."""
    tap = Tap(receiver, hold)
    seams.tap_decoder_queue(receiver, tap)
    if low_latency:
        current = seams.jitter_buffer(receiver)
        seams.replace_jitter_buffer(receiver, seams.LowLatencyJitterBuffer.like(current))
    return tap


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
