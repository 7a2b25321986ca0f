"""Every private part of aiortc / aioice the relay relies on, in one place.

aiortc 1.16 and aioice 0.13 offer no public way to take encoded frames before the decoder, to
forward keyframe requests, to read RTP counters or to choose the addresses and ports ICE
gathers; the relay reaches their internals here and nowhere else (docs/relay-design.md,
"Seams"). The versions are pinned exactly in pyproject.toml. :func:`check_seams` verifies at
start-up that each seam still has the shape used here, because a renamed private attribute
would not fail loudly: setting ``receiver._RTCRtpReceiver__decoder_queue`` on an aiortc that
renamed it would just add an unused attribute, and the relay would decode every frame.
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import contextlib
import contextvars
import copy
import importlib.metadata
import inspect
import logging
import queue
import time
import weakref
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any

import aioice.candidate
import aioice.ice
import aioice.turn
import aiortc.clock
import aiortc.codecs
import aiortc.rtcdtlstransport
import aiortc.rtcicetransport
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import aiortc.rtcrtptransceiver
import aiortc.rtp
import pylibsrtp
from aioice import Candidate
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs import is_rtx
from aiortc.exceptions import InvalidStateError
from aiortc.jitterbuffer import MAX_MISORDER, JitterBuffer, JitterFrame
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpHeaderExtensionParameters
from aiortc.rtcrtpreceiver import NackGenerator

from media.congestion import feedback_of
from media.errors import MediaError

PACKAGES = ("aiortc", "aioice", "pylibsrtp")

log = logging.getLogger("vreception.media")

# name-mangled attributes (set in __init__, read by the methods named in the seam table)
_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_CONNECT = "_RTCPeerConnection__connect"  # a method: the connecting task
_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_TIMESTAMP_MAPPER = "_RTCRtpReceiver__timestamp_mapper"
_REMOTE_STREAMS = "_RTCRtpReceiver__remote_streams"
_RTX_SSRC = "_RTCRtpReceiver__rtx_ssrc"
_NACK_GENERATOR = "_RTCRtpReceiver__nack_generator"
_BITRATE_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"
_RTCP_SSRC = "_RTCRtpReceiver__rtcp_ssrc"
_PACKET_COUNT = "_RTCRtpSender__packet_count"
_OCTET_COUNT = "_RTCRtpSender__octet_count"
_SENDER_STATS = "_RTCRtpSender__stats"
_RTP_HISTORY = "_RTCRtpSender__rtp_history"
_EXTENSIONS_MAP = "_RTCRtpSender__rtp_header_extensions_map"
_NTP_TIMESTAMP = "_RTCRtpSender__ntp_timestamp"
_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
_LSR = "_RTCRtpSender__lsr"  # the latest sender report's middle NTP bits ...
_LSR_TIME = "_RTCRtpSender__lsr_time"  # ... and when it was sent (time.time())
_RTX_PAYLOAD_TYPE = "_RTCRtpSender__rtx_payload_type"
_RTX_SEQUENCE_NUMBER = "_RTCRtpSender__rtx_sequence_number"


class SeamError(MediaError):
    """An aiortc/aioice internal the relay relies on is missing or changed shape."""

    def __init__(self, problems: Sequence[str]) -> None:
        versions = "、".join(f"{name} {version}" for name, version in installed_versions().items())
        super().__init__(
            "seam_missing",
            f"aiortc/aioice 的内部接口与中继所依赖的不符：{'；'.join(problems)}。"
            f"已安装 {versions}；请安装 pyproject.toml 中固定的版本"
            "（见 docs/relay-design.md「Seams」）",
        )
        self.problems = list(problems)


def installed_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "未安装"
    return out


# ----------------------------------------------------------------------- receivers


def tap_decoder_queue(receiver: RTCRtpReceiver, replacement: queue.Queue[Any]) -> None:
    """Put ``replacement`` where ``receive()`` hands frames to the decoder thread (before
    ``receive()`` runs: it passes the queue to the thread once)."""
    if not hasattr(receiver, _DECODER_QUEUE):
        raise SeamError([f"RTCRtpReceiver 实例没有 {_DECODER_QUEUE}"])
    setattr(receiver, _DECODER_QUEUE, replacement)


def track_queue(receiver: RTCRtpReceiver) -> Any:
    """The receiver's track's frame queue (``RemoteStreamTrack._queue``, an asyncio.Queue)."""
    return receiver.track._queue  # type: ignore[attr-defined]


def end_remote_track(receiver: RTCRtpReceiver) -> bool:
    """End the receiver's remote track as its decoder thread does when the receiver stops
    (``None`` on the track's frame queue: ``recv()`` then raises ``MediaStreamError``).
    aiortc ends a remote track only that way, and only for a receiver that had started,
    i.e. whose connection's DTLS came up: a connection closed before that left its tracks
    live for good. The track is ``ended`` when this returns. False when there is no live
    remote track."""
    track = receiver.track
    if track is None or track.readyState != "live":
        return False
    track_queue(receiver).put_nowait(None)
    track.stop()
    return True


def jitter_buffer(receiver: RTCRtpReceiver) -> JitterBuffer:
    buffer: JitterBuffer = getattr(receiver, _JITTER_BUFFER)
    return buffer


def map_timestamp(receiver: RTCRtpReceiver, timestamp: int) -> int:
    """An RTP timestamp on the receiver's own timeline, as aiortc maps an assembled frame's
    before handing it to its decoder queue."""
    mapped: int = getattr(receiver, _TIMESTAMP_MAPPER).map(timestamp)
    return mapped


def replace_jitter_buffer(receiver: RTCRtpReceiver, buffer: JitterBuffer) -> None:
    if not hasattr(receiver, _JITTER_BUFFER):
        raise SeamError([f"RTCRtpReceiver 实例没有 {_JITTER_BUFFER}"])
    setattr(receiver, _JITTER_BUFFER, buffer)


def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> Awaitable[None]:
    """Ask the publisher of ``media_ssrc`` for a keyframe (RTCP PLI)."""
    result: Awaitable[None] = receiver._send_rtcp_pli(media_ssrc)
    return result


def wrap_send_nack(
    receiver: RTCRtpReceiver, wrapper: Callable[[Callable[..., Awaitable[None]]], Any]
) -> None:
    """Replace the receiver's NACK sender by ``wrapper(original)``."""
    receiver._send_rtcp_nack = wrapper(receiver._send_rtcp_nack)  # type: ignore[method-assign]


def remote_streams(receiver: RTCRtpReceiver) -> dict[int, Any]:
    """SSRC → aiortc's StreamStatistics (packets_received, packets_lost)."""
    streams: dict[int, Any] = getattr(receiver, _REMOTE_STREAMS, {})
    return streams


def rtx_ssrcs(receiver: RTCRtpReceiver) -> dict[int, int]:
    """Retransmission SSRC → the SSRC it repairs."""
    rtx: dict[int, int] = getattr(receiver, _RTX_SSRC, {})
    return rtx


def packet_payload(packet: aiortc.rtp.RtpPacket) -> bytes:
    """An RTP packet's depacketized payload (set by ``_handle_rtp_packet``)."""
    data: bytes = packet._data  # type: ignore[attr-defined]
    return data


def wrap_rtp_handler(
    receiver: RTCRtpReceiver,
    wrapper: Callable[[Callable[[aiortc.rtp.RtpPacket, int], Awaitable[None]]], Any],
) -> None:
    """Replace what the receiver does with each incoming RTP packet by ``wrapper(original)``
    (the DTLS transport calls ``receiver._handle_rtp_packet(packet, arrival_time_ms=...)``
    for every SRTP-unprotected packet routed to it)."""

    receiver._handle_rtp_packet = wrapper(receiver._handle_rtp_packet)  # type: ignore[method-assign]


def stop_receive_estimator(receiver: RTCRtpReceiver) -> None:
    """Stop the receiver from sending REMB of its own: aiortc's delay-based
    ``RemoteBitrateEstimator`` (fed in ``_handle_rtp_packet``) reads network jitter and the
    relay's own event-loop delays as congestion and drives the publisher's bitrate down; the
    relay sends its subscribers' estimates instead (:func:`send_remb`)."""
    if not hasattr(receiver, _BITRATE_ESTIMATOR):
        raise SeamError([f"RTCRtpReceiver 实例没有 {_BITRATE_ESTIMATOR}"])
    setattr(receiver, _BITRATE_ESTIMATOR, None)


def receive_estimator(receiver: RTCRtpReceiver) -> Any:
    """The receiver's own bitrate estimator (None: stopped)."""
    return getattr(receiver, _BITRATE_ESTIMATOR, None)


async def send_remb(receiver: RTCRtpReceiver, bitrate: int, ssrcs: Sequence[int]) -> bool:
    """Send the publisher a REMB (RTCP PSFB APP, draft-alvestrand-rmcat-remb) of ``bitrate``
    bit/s for its ``ssrcs``, as the receiver sends its own RTCP. False while the receiver
    has no RTCP SSRC yet (not started)."""
    rtcp_ssrc = getattr(receiver, _RTCP_SSRC, None)
    if rtcp_ssrc is None:
        return False
    packet = aiortc.rtp.RtcpPsfbPacket(
        fmt=aiortc.rtp.RTCP_PSFB_APP,
        ssrc=rtcp_ssrc,
        media_ssrc=0,
        fci=aiortc.rtp.pack_remb_fci(int(bitrate), list(ssrcs)),
    )
    await receiver._send_rtcp(packet)
    return True


def reception_of(
    packet: Any, ssrc: int, ntp: int, sent_report: tuple[int, float] | None = None
) -> tuple[float, float | None] | None:
    """What a receiver report (RR, or an SR's report blocks) says of ``ssrc``: the share of
    its packets lost in the latest interval, and the round-trip time in seconds (RFC 3550
    §6.4.1: arrival − LSR − DLSR, None before the receiver has had a sender report);
    ``ntp``: the 64-bit NTP time it arrived. ``sent_report``: the LSR of the latest sender
    report and when it was sent (``time.time()``): a forwarded stream's report carries the
    time of its last packet, not of the report, so that time is measured from instead
    (else any pause before the report would count as round trip). None when it has no
    block for that SSRC."""
    if not isinstance(packet, aiortc.rtp.RtcpRrPacket | aiortc.rtp.RtcpSrPacket):
        return None
    for report in packet.reports:
        if report.ssrc == ssrc:
            rtt = None
            if sent_report is not None and report.lsr == sent_report[0]:
                rtt = max(0.0, time.time() - sent_report[1] - report.dlsr / 65536)
            elif report.lsr:
                middle = (ntp >> 16) & 0xFFFFFFFF
                rtt = ((middle - report.lsr - report.dlsr) & 0xFFFFFFFF) / 65536
            return int(report.fraction_lost) / 256, rtt
    return None


def remb_of(packet: Any) -> tuple[int, list[int]] | None:
    """A REMB's bitrate (bit/s) and the SSRCs it covers; None for any other RTCP packet."""
    if not (
        isinstance(packet, aiortc.rtp.RtcpPsfbPacket) and packet.fmt == aiortc.rtp.RTCP_PSFB_APP
    ):
        return None
    try:
        return aiortc.rtp.unpack_remb_fci(packet.fci)
    except ValueError:
        return None


class LowLatencyJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, but a frame leaves as soon as it is complete: a video frame at
    its marker bit (aiortc waits for the next frame's first packet, one frame interval), an
    audio packet at once (aiortc prefetches four). The relay forwards; the subscriber's own
    jitter buffer smooths playout. Overrides ``JitterBuffer._remove_frame`` and ``add``.

    A packet that never comes does not hold up what follows (aiortc waits until the buffer
    overflows: 512 packets of video, seconds of a low simulcast layer): video goes on from
    a keyframe that begins after the gap (``keyframe``: whether an RTP payload starts one;
    set once the codec is known), or, once the gap has waited ``HOLE_WAIT_S`` for its
    retransmission, from the next frame that begins after it, asking for a keyframe (the
    frames after a loss refer to what was lost); audio goes on as soon as
    ``AUDIO_REORDER`` packets have come after the gap (Opus packets stand alone, and audio
    is not retransmitted). aiortc takes one frame per packet added: the others completed
    by the same packet wait in ``ready`` for the tap (:meth:`take_ready`), so no backlog,
    and no lag, outlives a gap. A packet older than what has left (a retransmission that
    came too late) is dropped rather than resetting the buffer."""

    HOLE_WAIT_S = 1.0
    AUDIO_REORDER = 3
    # behind the origin by fewer, from the same SSRC: late (dropped), unless that many in
    # a row (then a new numbering, as by more or from another SSRC: aiortc resets)
    LATE_MAX = 1024
    LATE_RUN_MAX = 32

    def __init__(
        self,
        capacity: int,
        prefetch: int = 0,
        is_video: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(capacity, prefetch, is_video)
        self.keyframe: Callable[[bytes], bool] | None = None
        self.ready: list[JitterFrame] = []  # completed after the one aiortc takes
        self._clock = clock
        self._newest: int | None = None  # the highest sequence number added
        self._gapped = False  # a packet came out of order since a scan found no gap
        # numbers found missing when later ones came: (first, last, since when); a gap is
        # waited for from when it appeared, whatever was still waiting before it
        self._gaps: list[tuple[int, int, float]] = []
        self._ssrc: int | None = None  # of the last packet taken
        self._late_run = 0  # packets dropped as late in a row
        self.skipped = 0  # gaps given up (for tests and monitoring)

    @classmethod
    def like(cls, buffer: JitterBuffer) -> LowLatencyJitterBuffer:
        return cls(buffer.capacity, is_video=buffer._is_video)

    def add(self, packet: aiortc.rtp.RtpPacket) -> tuple[bool, JitterFrame | None]:
        number, newest, origin = packet.sequence_number, self._newest, self._origin
        if origin is not None:
            behind = (origin - number) & 0xFFFF
            if 0 < behind < self.LATE_MAX and packet.ssrc == self._ssrc:
                self._late_run += 1
                if self._late_run < self.LATE_RUN_MAX:
                    return False, None  # older than what has left: too late
            if MAX_MISORDER <= behind < (number - origin) & 0xFFFF:
                newest = None  # aiortc starts again from this packet (a new numbering)
                self._gaps, self._gapped = [], False
        self._late_run = 0
        self._ssrc = packet.ssrc
        if newest is None or number == (newest + 1) & 0xFFFF:
            self._newest = number  # in order: no new gap (the common case costs no scan)
        else:
            self._gapped = True
            if 0 < (number - newest) & 0xFFFF < 0x8000:
                # the gaps still ahead of the origin, and this one
                ahead = self._origin if self._origin is not None else newest
                self._gaps = [g for g in self._gaps if (g[1] - ahead) & 0xFFFF < 0x8000][-255:]
                self._gaps.append(((newest + 1) & 0xFFFF, (number - 1) & 0xFFFF, self._clock()))
                self._newest = number
        pli, frame = super().add(packet)
        if frame is None and self._origin is not None and self._gapped:
            start, waited = self._after_gap()
            if start is not None:
                self.remove(start)
                self.skipped += 1
                pli = pli or waited
                frame = self._remove_frame(number)
        if frame is not None:
            while len(self.ready) < self.capacity:
                more = self._remove_frame(number)
                if more is None:
                    break
                self.ready.append(more)
        return pli, frame

    def take_ready(self) -> list[JitterFrame]:
        """The frames completed after the one the last ``add`` returned, in order."""
        ready, self.ready = self.ready, []
        return ready

    def _after_gap(self) -> tuple[int | None, bool]:
        """How many packets from the origin to drop to go on past a gap that is given up
        (None: no gap, or it is still waited for), and whether it was waited for to the
        end (then a keyframe is to be asked for)."""
        assert self._origin is not None and self._newest is not None
        span = min((self._newest - self._origin) & 0xFFFF, self.capacity - 1) + 1
        packets = [self._packets[(self._origin + i) % self.capacity] for i in range(span)]
        # the gaps still ahead of the origin (filled or given up ones go)
        origin = self._origin
        self._gaps = [g for g in self._gaps if (g[1] - origin) & 0xFFFF < 0x8000]
        gap = next((i for i, p in enumerate(packets) if p is None), None)
        if gap is None:
            self._gapped, self._gaps = False, []
            return None, False  # nothing missing: the frame is still arriving
        later = [(i, p) for i, p in enumerate(packets[gap:], gap) if p is not None]
        if not later:
            return None, False
        if not self._is_video:
            return (later[0][0] if len(later) >= self.AUDIO_REORDER else None), False

        def begins_frame(i: int, packet: aiortc.rtp.RtpPacket) -> bool:
            # the packet before it is there and of another frame: a frame's first packet
            before = packets[i - 1]
            return before is not None and before.timestamp != packet.timestamp

        keyframe = self.keyframe
        if keyframe is not None:
            # a keyframe's first packet (the codec says so) of a frame other than the one
            # the gap cut: what came before it is not needed to decode on
            last = packets[gap - 1] if gap > 0 else None
            cut = last.timestamp if last is not None else None
            start = next(
                (
                    i
                    for i, p in later
                    if keyframe(p.payload)
                    and (begins_frame(i, p) or (packets[i - 1] is None and p.timestamp != cut))
                ),
                None,
            )
            if start is not None:
                return start, False
        missing = (self._origin + gap) & 0xFFFF
        now = self._clock()
        since = next(
            (t for a, b, t in self._gaps if (missing - a) & 0xFFFF <= (b - a) & 0xFFFF), None
        )
        if since is None:  # found missing otherwise (aiortc's own overflow, say): from now
            self._gaps.append((missing, missing, now))
            return None, False
        if now - since < self.HOLE_WAIT_S:
            return None, False
        start = next((i for i, p in later if begins_frame(i, p)), None)
        return start, start is not None

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        assert self._origin is not None
        packets: list[aiortc.rtp.RtpPacket] = []
        timestamp: int | None = None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None:
                return None
            if timestamp is not None and packet.timestamp != timestamp:
                # the previous frame ended without a marker (lost or unusual): complete anyway
                return self._take(packets, timestamp, count)
            timestamp = packet.timestamp
            packets.append(packet)
            if packet.marker or not self._is_video:
                return self._take(packets, timestamp, count + 1)
        return None

    def _take(self, packets: list[aiortc.rtp.RtpPacket], timestamp: int, count: int) -> JitterFrame:
        self.remove(count)
        return JitterFrame(data=b"".join(packet_payload(p) for p in packets), timestamp=timestamp)


class RepeatingNackGenerator(NackGenerator):
    """aiortc's NACK generator, but it asks again. aiortc asks for a missing packet when its
    gap appears and then only when another gap appears; this one also asks again for what is
    still missing ``interval`` after it last asked (checked as packets arrive). At 5 % loss
    each way the NACK or its retransmission is lost for about one loss in ten, and waiting
    for the next gap (about 0.25 s of a 700 kbit/s picture) held up the frames behind it
    until the receiving browser dropped them. The publisher's browser sends a packet again
    at most once per round trip, so asking sooner than that costs a few RTCP bytes only.
    Overrides ``NackGenerator.add``."""

    INTERVAL_S = 0.05

    def __init__(
        self, interval: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval = interval
        self._clock = clock
        self._asked_at = -1e9

    def add(self, packet: aiortc.rtp.RtpPacket) -> bool:
        missed = super().add(packet)
        if not self.missing:
            return False
        now = self._clock()
        if missed or now - self._asked_at >= self.interval:
            self._asked_at = now
            return True
        return False


def repeat_nacks(receiver: RTCRtpReceiver) -> None:
    """Give a video receiver a :class:`RepeatingNackGenerator` (before packets arrive)."""
    if not hasattr(receiver, _NACK_GENERATOR):
        raise SeamError([f"RTCRtpReceiver 实例没有 {_NACK_GENERATOR}"])
    if getattr(receiver, _NACK_GENERATOR) is not None:  # None: audio, no NACKs
        setattr(receiver, _NACK_GENERATOR, RepeatingNackGenerator())


# ----------------------------------------------------------------------- senders


def wrap_keyframe_request(
    sender: RTCRtpSender, wrapper: Callable[[Callable[[], None]], Any]
) -> None:
    """Replace what the sender does on a subscriber's PLI/FIR by ``wrapper(original)``."""
    sender._send_keyframe = wrapper(sender._send_keyframe)  # type: ignore[method-assign]


def wrap_rtcp_handler(
    sender: RTCRtpSender, wrapper: Callable[[Callable[[Any], Awaitable[None]]], Any]
) -> None:
    """Replace the sender's RTCP handler by ``wrapper(original)``."""
    sender._handle_rtcp_packet = wrapper(sender._handle_rtcp_packet)  # type: ignore[method-assign]


def sender_counts(sender: RTCRtpSender) -> tuple[int, int]:
    """RTP packets and payload bytes the sender has sent."""
    return int(getattr(sender, _PACKET_COUNT, 0)), int(getattr(sender, _OCTET_COUNT, 0))


def sender_stats(sender: RTCRtpSender) -> dict[str, Any]:
    """The sender's stats report (holds the subscriber's receiver report)."""
    stats: dict[str, Any] = getattr(sender, _SENDER_STATS, {})
    return stats


class SentHistory(dict[int, Any]):
    """An ``RTCRtpSender``'s RTP history holding what a forwarder sent as serialized bytes:
    the forwarder writes each packet's bytes once, and aiortc's ``_retransmit`` (which reads
    the history with ``get()`` only) gets an ``RtpPacket`` parsed from them, so the cost of
    a packet object is paid per NACK, not per packet sent."""

    def __init__(self, extensions: aiortc.rtp.HeaderExtensionsMap) -> None:
        super().__init__()
        self.extensions = extensions

    def get(self, key: int, default: Any = None) -> Any:
        value = super().get(key, default)
        if isinstance(value, bytes):
            return aiortc.rtp.RtpPacket.parse(value, self.extensions)
        return value


@dataclass(frozen=True)
class SenderWire:
    """What a forwarder needs of a started ``RTCRtpSender`` to send RTP packets as the sender
    would itself: its SSRC, its header extension map, its RTP history (aiortc's NACK handling
    retransmits from it, as RTX where negotiated) and the SRTP-protecting send of its DTLS
    transport."""

    ssrc: int
    extensions: aiortc.rtp.HeaderExtensionsMap
    history: SentHistory
    history_size: int
    send_rtp: Callable[[bytes], Awaitable[None]]
    # accounts one packet sent (NTP time, RTP timestamp, payload size) for the sender reports
    sent: Callable[[int, int, int], None]
    # send_rtp as a plain call (None: only the awaitable one); raises ConnectionError
    send_now: Callable[[bytes], None] | None = None
    # the retransmission stream (SSRC, payload type) when negotiated, and its next number
    rtx: tuple[int, int] | None = None
    next_rtx_number: Callable[[], int] = lambda: 0
    # the latest sender report: its LSR value and when it was sent (None: none yet)
    last_report: Callable[[], tuple[int, float] | None] = lambda: None


def _last_report(sender: RTCRtpSender) -> tuple[int, float] | None:
    lsr, at = getattr(sender, _LSR, None), getattr(sender, _LSR_TIME, None)
    return (int(lsr), float(at)) if lsr is not None and at is not None else None


def sender_wire(sender: RTCRtpSender) -> SenderWire:
    """The sender's sending parts (call once ``send()`` has run: it configures the map);
    its RTP history becomes a :class:`SentHistory`."""
    extensions = getattr(sender, _EXTENSIONS_MAP)
    history = SentHistory(extensions)
    history.update(getattr(sender, _RTP_HISTORY))
    setattr(sender, _RTP_HISTORY, history)
    return SenderWire(
        ssrc=int(sender._ssrc),
        extensions=extensions,
        history=history,
        history_size=aiortc.rtp.RTP_HISTORY_SIZE,
        send_rtp=sender.transport._send_rtp,
        send_now=rtp_send_now(sender.transport),
        sent=lambda ntp, timestamp, size: _note_sent(sender, ntp, timestamp, size),
        rtx=_rtx_stream(sender),
        next_rtx_number=lambda: _next_rtx_number(sender),
        last_report=lambda: _last_report(sender),
    )


def _rtx_stream(sender: RTCRtpSender) -> tuple[int, int] | None:
    """The sender's retransmission SSRC and payload type (None: RTX not negotiated)."""
    payload_type = getattr(sender, _RTX_PAYLOAD_TYPE, None)
    return (int(sender._rtx_ssrc), int(payload_type)) if payload_type is not None else None


def _next_rtx_number(sender: RTCRtpSender) -> int:
    """Take the next sequence number of the sender's retransmission stream (shared with
    aiortc's own retransmissions)."""
    number = int(getattr(sender, _RTX_SEQUENCE_NUMBER))
    setattr(sender, _RTX_SEQUENCE_NUMBER, (number + 1) & 0xFFFF)
    return number


def _note_sent(sender: RTCRtpSender, ntp: int, rtp_timestamp: int, payload_size: int) -> None:
    """Account one RTP packet sent past the sender's own loop, as its loop would: its RTCP
    sender report pairs the NTP time of the last packet with that packet's RTP timestamp and
    carries the packet and octet counts."""
    setattr(sender, _NTP_TIMESTAMP, ntp)
    setattr(sender, _RTP_TIMESTAMP, rtp_timestamp)
    setattr(sender, _PACKET_COUNT, getattr(sender, _PACKET_COUNT) + 1)
    setattr(sender, _OCTET_COUNT, getattr(sender, _OCTET_COUNT) + payload_size)


def is_nack(packet: Any) -> bool:
    return (
        isinstance(packet, aiortc.rtp.RtcpRtpfbPacket) and packet.fmt == aiortc.rtp.RTCP_RTPFB_NACK
    )


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[Any]:
    """The codecs a transceiver negotiated, preferred first."""
    codecs: list[Any] = getattr(transceiver, "_codecs", [])
    return codecs


# ----------------------------------------------------------------------- simulcast

RID_EXTENSIONS = (
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
)


def accept_rid_extensions() -> None:
    """Let aiortc negotiate the RTP stream ID header extensions on video (RFC 8852): a
    simulcast publisher names each layer's SSRC with them. aiortc parses both but offers
    and accepts neither (``aiortc.codecs.HEADER_EXTENSIONS``). Process-wide; idempotent."""
    video = aiortc.codecs.HEADER_EXTENSIONS["video"]
    # one id per URI across a bundle: none of audio's either
    taken = {e.id for kind in aiortc.codecs.HEADER_EXTENSIONS.values() for e in kind}
    for uri in RID_EXTENSIONS:
        if all(extension.uri != uri for extension in video):
            free = next(i for i in range(1, 15) if i not in taken)
            taken.add(free)
            video.append(RTCRtpHeaderExtensionParameters(id=free, uri=uri))


# ------------------------------------------------------ transport-wide congestion control

TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
_transport_wide: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "transport_wide", default=False
)
_FEEDBACK_WATCHED = "_vreception_feedback"


class _Negotiated(Mapping[str, list[Any]]):
    """Stands for ``aiortc.codecs.CODECS`` / ``HEADER_EXTENSIONS`` in aiortc's peer
    connection module: the same lists, plus transport-cc while :func:`transport_wide_cc`
    is in effect (a subscriber's offer and its answer), so publishers never negotiate it
    (their browsers would then wait for feedback the relay does not send)."""

    def __init__(
        self, base: dict[str, list[Any]], extend: Callable[[str, list[Any]], list[Any]]
    ) -> None:
        self.base = base
        self._extend = extend

    def __getitem__(self, kind: str) -> list[Any]:
        found = self.base[kind]
        return self._extend(kind, found) if _transport_wide.get() else found

    def __iter__(self) -> Iterator[str]:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)


def _with_feedback(kind: str, codecs: list[Any]) -> list[Any]:
    out = []
    for codec in codecs:
        if not is_rtx(codec) and all(f.type != "transport-cc" for f in codec.rtcpFeedback):
            codec = copy.copy(codec)
            codec.rtcpFeedback = [*codec.rtcpFeedback, RTCRtcpFeedback(type="transport-cc")]
        out.append(codec)
    return out


def _with_extension(kind: str, extensions: list[Any]) -> list[Any]:
    if any(e.uri == TRANSPORT_CC_URI for e in extensions):
        return extensions
    # one id per URI across a bundle, the same for audio and video
    taken = {e.id for k in aiortc.codecs.HEADER_EXTENSIONS.values() for e in k}
    free = next(i for i in range(1, 15) if i not in taken)
    return [*extensions, RTCRtpHeaderExtensionParameters(id=free, uri=TRANSPORT_CC_URI)]


def offer_transport_wide_cc() -> None:
    """Let :func:`transport_wide_cc` add transport-cc to what aiortc offers and accepts.
    Process-wide; idempotent."""
    module: Any = aiortc.rtcpeerconnection
    if not isinstance(module.CODECS, _Negotiated):
        module.CODECS = _Negotiated(aiortc.codecs.CODECS, _with_feedback)
    if not isinstance(module.HEADER_EXTENSIONS, _Negotiated):
        module.HEADER_EXTENSIONS = _Negotiated(aiortc.codecs.HEADER_EXTENSIONS, _with_extension)


@contextlib.contextmanager
def transport_wide_cc() -> Iterator[None]:
    """Within it (one task), aiortc offers and accepts the transport-wide sequence number
    extension and transport-cc feedback (after :func:`offer_transport_wide_cc`)."""
    token = _transport_wide.set(True)
    try:
        yield
    finally:
        _transport_wide.reset(token)


def watch_transport_feedback(transport: Any, handle: Callable[[bytes], Awaitable[None]]) -> None:
    """Give ``handle`` the FCI of each transport-cc feedback a DTLS transport receives,
    before aiortc's own RTCP routing (which has no use for them). Once per transport."""
    if getattr(transport, _FEEDBACK_WATCHED, False):
        return
    original = transport._handle_rtcp_data

    async def handle_rtcp(data: bytes) -> None:
        if len(data) > 1 and data[1] == 205:  # RTPFB first (browsers send it alone)
            for fci in feedback_of(data):
                await handle(fci)
        await original(data)

    transport._handle_rtcp_data = handle_rtcp
    setattr(transport, _FEEDBACK_WATCHED, True)


# ----------------------------------------------------------------------- clock

NTP_UNIX = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)


def fast_current_ms() -> int:
    return int((time.time() + NTP_UNIX) * 1000)


def use_fast_clock() -> None:
    """aiortc's ``clock.current_ms()`` (milliseconds since 1900, read by the DTLS transport
    for every packet received) goes through ``datetime`` arithmetic; the same value from
    ``time.time()`` costs a fraction. Process-wide; idempotent."""
    aiortc.clock.current_ms = fast_current_ms


# ------------------------------------------------------- a connection closed while connecting

original_connect: Callable[[Any], Awaitable[None]] | None = getattr(
    aiortc.rtcpeerconnection.RTCPeerConnection, _CONNECT, None
)


async def _connect_or_closed(self: Any) -> None:
    """aiortc's connecting task (ICE, DTLS, then the senders and receivers), run after each
    description is set and never awaited by anyone: a connection closed while it runs (a
    participant leaving, a page replaced, the node stopping) makes it raise
    ``InvalidStateError``, which asyncio then reports as a task exception never retrieved,
    with a traceback. That ending is expected; it is logged as such. Any other stays loud."""
    assert original_connect is not None  # check_seams() ran first
    try:
        await original_connect(self)
    except InvalidStateError:
        if self.signalingState != "closed":  # "closed" from the first step of close()
            raise
        log.info("a media connection closed while it was connecting")


def quiet_closed_connects() -> None:
    """Install :func:`_connect_or_closed` as aiortc's connecting task. Process-wide;
    idempotent."""
    setattr(aiortc.rtcpeerconnection.RTCPeerConnection, _CONNECT, _connect_or_closed)


# ----------------------------------------------------------------------- ICE (aioice)

original_component_candidates = aioice.ice.Connection.get_component_candidates
UDP_SOCKET_BUFFER_SIZE: int = aioice.turn.UDP_SOCKET_BUFFER_SIZE


def set_host_addresses(addresses: Sequence[str]) -> None:
    """The host addresses every ICE connection of this process gathers."""
    chosen = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(chosen)


def set_component_candidates(gather: Callable[..., Awaitable[list[Candidate]]] | None) -> None:
    """Replace aioice's host-candidate gathering process-wide (None: aioice's own)."""
    chosen = gather or original_component_candidates
    aioice.ice.Connection.get_component_candidates = chosen  # type: ignore[method-assign,assignment]


# asyncio's UDP transport reads one datagram per event-loop wake-up; a relay receiving a
# burst (a video frame is several packets) pays the loop's select and the ICE/DTLS
# receiving task's wake-up per datagram. A draining reader reads what is queued, up to this.
DRAIN_LIMIT = 32
# What the reader asks recvfrom for: the largest UDP payload (65,507 bytes over IPv4,
# 65,527 over IPv6) fits, so nothing is cut. asyncio asks for its max_size, 256 KiB, above
# glibc's initial mmap threshold: in a fresh process every read then costs an mmap and a
# munmap (16 µs against 1.7 µs, measured here). The relay process had raised that threshold
# already (no mmap under strace, no difference in the bench); this does not depend on it.
READ_SIZE = 65536
_DatagramTransport: Any = getattr(asyncio.selector_events, "_SelectorDatagramTransport")  # noqa: B009
_draining: weakref.WeakSet[Any] = weakref.WeakSet()


def drain_datagrams(connection: aioice.ice.Connection) -> int:
    """Make each UDP socket of an ICE connection read every queued datagram (up to
    ``DRAIN_LIMIT``) per wake-up: the socket's reader (asyncio's
    ``_SelectorDatagramTransport._read_ready``, one ``recvfrom`` per call) is replaced by
    one that loops until the socket would block, handing each datagram to the same
    protocol, with the same error handling. Sockets of other transports (TURN, a loop
    without selectors) are left as they are. Returns how many sockets now drain."""
    return sum(drain_transport(getattr(p, "transport", None)) for p in connection._protocols)


def drain_transport(transport: Any) -> bool:
    """Make one asyncio UDP transport drain its socket per wake-up (False: not one of
    asyncio's selector datagram transports, left as it is)."""
    if not isinstance(transport, _DatagramTransport):
        return False
    if transport not in _draining:
        _draining.add(transport)
        transport._loop._add_reader(transport._sock_fd, _draining_reader(transport))
    return True


def is_draining(transport: Any) -> bool:
    return transport in _draining


def _draining_reader(transport: Any) -> Callable[[], None]:
    sock, size = transport._sock, min(transport.max_size, READ_SIZE)

    def read_ready() -> None:
        protocol = transport._protocol
        # aioice's StunProtocol tries to parse every datagram as STUN and hands it on when
        # that raises; RTP, RTCP and DTLS never start with 0-3 (RFC 7983), so they go
        # straight to the ICE connection, as that protocol would hand them
        candidate = getattr(protocol, "local_candidate", None)
        connection = protocol.receiver if isinstance(protocol, aioice.ice.StunProtocol) else None
        # SRTP and SRTCP of a connected DTLS transport are handled in this wake-up, unless
        # datagrams wait in the connection's queue (kept in order); see receive_inline
        inline = getattr(connection, _INLINE, None)
        for _ in range(DRAIN_LIMIT):
            if transport._conn_lost:
                return
            try:
                data, addr = sock.recvfrom(size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                transport._fatal_error(exc, "Fatal read error on datagram transport")
                return
            if connection is not None and candidate is not None and data and data[0] > 3:
                if (
                    inline is not None
                    and 127 < data[0] < 192
                    and not connection._queue.qsize()
                    and inline(data)
                ):
                    continue
                connection.data_received(data, candidate.component)
            else:
                protocol.datagram_received(data, addr)

    return read_ready


_INLINE = "_vreception_inline"
_DTLS_RX_BYTES = "_RTCDtlsTransport__rx_bytes"
_DTLS_RX_PACKETS = "_RTCDtlsTransport__rx_packets"
_CONNECTED = aiortc.rtcdtlstransport.State.CONNECTED


def receive_inline(dtls: Any) -> bool:
    """Have the socket reader of ``dtls``'s ICE connection unprotect and hand on each SRTP
    and SRTCP datagram itself, as aiortc's DTLS receiving task would (``_recv_next``:
    counters, arrival time, unprotect, ``_handle_rtp_data`` / ``_handle_rtcp_data``),
    instead of queueing it for that task: no queue, no task wake-up per burst. DTLS,
    STUN and anything received before the transport is connected still take aiortc's
    path. Idempotent; False when the connection's sockets are not drained here."""
    connection = dtls.transport._connection
    if getattr(connection, _INLINE, None) is not None:
        return True
    if not any(is_draining(getattr(p, "transport", None)) for p in connection._protocols):
        return False
    owner = weakref.ref(dtls)

    def inline(data: bytes) -> bool:
        transport = owner()
        if transport is None or transport._state is not _CONNECTED:
            return False
        srtp = transport._rx_srtp
        if srtp is None:
            return False
        setattr(transport, _DTLS_RX_BYTES, getattr(transport, _DTLS_RX_BYTES) + len(data))
        setattr(transport, _DTLS_RX_PACKETS, getattr(transport, _DTLS_RX_PACKETS) + 1)
        arrival_time_ms = fast_current_ms()
        try:
            if aiortc.rtp.is_rtcp(data):
                handling = transport._handle_rtcp_data(srtp.unprotect_rtcp(data))
            else:
                handling = transport._handle_rtp_data(
                    srtp.unprotect(data), arrival_time_ms=arrival_time_ms
                )
        except pylibsrtp.Error:
            return True  # as aiortc: a datagram that does not authenticate is dropped
        run_inline(handling)
        return True

    setattr(connection, _INLINE, inline)
    return True


_DTLS_TX_BYTES = "_RTCDtlsTransport__tx_bytes"
_DTLS_TX_PACKETS = "_RTCDtlsTransport__tx_packets"


def rtp_send_now(dtls: Any) -> Callable[[bytes], None]:
    """``dtls._send_rtp`` for RTP packets, as a plain call: what its four levels of
    coroutines (``_send_rtp``, aioice's ``Connection.send``, ``Connection.sendto``,
    ``StunProtocol.send_data``) do, none of which waits: protect, hand the datagram to the
    nominated pair's transport (a UDP socket's, or aioice's TURN transport, which makes its
    own task), count it. Raises ConnectionError as they do."""
    connection = dtls.transport._connection
    nominated = connection._nominated

    def send_now(data: bytes) -> None:
        if dtls._state is not _CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        pair = nominated.get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        data = dtls._tx_srtp.protect(data)
        pair.protocol.transport.sendto(data, pair.remote_addr)
        setattr(dtls, _DTLS_TX_BYTES, getattr(dtls, _DTLS_TX_BYTES) + len(data))
        setattr(dtls, _DTLS_TX_PACKETS, getattr(dtls, _DTLS_TX_PACKETS) + 1)

    return send_now


def run_inline(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run a coroutine now, in this callback; if it suspends (e.g. a send waiting for a
    TURN channel), a task finishes it. An error is logged, never raised into the reader."""
    try:
        waiting = coroutine.send(None)
    except StopIteration:
        return
    except Exception:
        log.exception("handling a received packet failed")
        return
    task = asyncio.ensure_future(_Rest(coroutine, waiting).finish())
    _finishing.add(task)
    task.add_done_callback(_finishing.discard)


_finishing: set[asyncio.Future[Any]] = set()


class _Rest:
    """The rest of a coroutine that suspended while run inline, for a task to drive: it
    yields what the coroutine is waiting for and passes results and errors back in."""

    def __init__(self, coroutine: Coroutine[Any, Any, Any], waiting: Any) -> None:
        self.coroutine, self.waiting = coroutine, waiting

    async def finish(self) -> None:
        try:
            await self
        except Exception:
            log.exception("handling a received packet failed")

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, waiting = self.coroutine, self.waiting
        while True:
            try:
                sent = yield waiting
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # cancellation goes in too
                try:
                    waiting = coroutine.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waiting = coroutine.send(sent)
                except StopIteration as stop:
                    return stop.value


def udp_transports(pc: Any) -> list[Any]:
    """The UDP transports of a peer connection's ICE connections (for tests and checks)."""
    found = []
    for transceiver in pc.getTransceivers():
        ice = transceiver.sender.transport.transport
        for protocol in ice._connection._protocols:
            transport = getattr(protocol, "transport", None)
            if transport is not None and transport not in found:
                found.append(transport)
    return found


def stun_protocol(connection: aioice.ice.Connection) -> Callable[[], Any]:
    """A factory of aioice's datagram protocol for ``connection``."""
    return lambda: aioice.ice.StunProtocol(connection)


def add_host_candidate(
    connection: aioice.ice.Connection, protocol: Any, component: int, host: str, port: int
) -> Candidate:
    """Register a bound socket's protocol as a host candidate, as aioice does itself."""
    protocol.local_candidate = Candidate(
        foundation=aioice.candidate.candidate_foundation("host", "udp", host),
        component=component,
        transport="udp",
        priority=aioice.candidate.candidate_priority(component, "host"),
        host=host,
        port=port,
        type="host",
    )
    connection._protocols.append(protocol)
    candidate: Candidate = protocol.local_candidate
    return candidate


# ----------------------------------------------------------------------- the check


@dataclass(frozen=True)
class Seam:
    """One private part relied on: ``owner.name``, present and of the expected shape.

    ``params``: the leading parameter names of a callable. ``used_in``: functions whose code
    must name it (an instance attribute is only visible in the code that sets and reads it).
    """

    label: str
    owner: Any
    name: str
    params: tuple[str, ...] | None = None
    used_in: tuple[Callable[..., Any], ...] = ()
    instance: bool = False  # an instance attribute: checked through used_in only

    def problem(self) -> str | None:
        if not self.instance:
            value = getattr(self.owner, self.name, None)
            if value is None:
                return f"{self.label} 不存在"
            if self.params is not None:
                if not callable(value):
                    return f"{self.label} 不可调用"
                try:
                    names = tuple(inspect.signature(value).parameters)
                except (TypeError, ValueError):
                    return f"{self.label} 无法读取参数"
                if names[: len(self.params)] != self.params:
                    found, wanted = ", ".join(names), ", ".join(self.params)
                    return f"{self.label} 的参数为 ({found})，应为 ({wanted})"
        for function in self.used_in:
            code = getattr(function, "__code__", None)
            if code is None or self.name not in _names(code):
                where = getattr(function, "__qualname__", repr(function))
                return f"{self.label} 不再由 {where} 使用"
        return None


class _Missing:
    """Stands in for a function a seam's check reads that no longer exists."""

    def __init__(self, owner: Any, name: str) -> None:
        self.__qualname__ = f"{getattr(owner, '__qualname__', owner.__name__)}.{name}（不存在）"


def _fn(owner: Any, name: str) -> Any:
    """``owner.name`` for a seam's ``used_in``, or a stand-in the check reports as missing."""
    return getattr(owner, name, None) or _Missing(owner, name)


def _names(code: Any) -> set[str]:
    """The attribute and global names a function's code (and its nested code) uses."""
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _names(const)
    return names


def _seams() -> list[Seam]:
    receiver, sender = aiortc.rtcrtpreceiver.RTCRtpReceiver, aiortc.rtcrtpsender.RTCRtpSender
    buffer, ice = JitterBuffer, aioice.ice
    datagram, dtls = _DatagramTransport, aiortc.rtcdtlstransport.RTCDtlsTransport
    return [
        Seam(
            "RTCPeerConnection.__connect",
            aiortc.rtcpeerconnection.RTCPeerConnection,
            _CONNECT,
            ("self",),
            used_in=(
                _fn(aiortc.rtcpeerconnection.RTCPeerConnection, "setLocalDescription"),
                _fn(aiortc.rtcpeerconnection.RTCPeerConnection, "setRemoteDescription"),
            ),
        ),
        Seam(
            "RTCRtpReceiver.__decoder_queue",
            receiver,
            _DECODER_QUEUE,
            instance=True,
            used_in=(
                _fn(receiver, "__init__"),
                _fn(receiver, "receive"),
                _fn(receiver, "_handle_rtp_packet"),
            ),
        ),
        Seam(
            "RTCRtpReceiver.__jitter_buffer",
            receiver,
            _JITTER_BUFFER,
            instance=True,
            used_in=(_fn(receiver, "__init__"), _fn(receiver, "_handle_rtp_packet")),
        ),
        Seam(
            "RemoteStreamTrack._queue",
            aiortc.rtcrtpreceiver.RemoteStreamTrack,
            "_queue",
            instance=True,
            used_in=(
                _fn(aiortc.rtcrtpreceiver.RemoteStreamTrack, "__init__"),
                _fn(aiortc.rtcrtpreceiver.RemoteStreamTrack, "recv"),
            ),
        ),
        Seam(
            "RtpPacket._data",
            receiver,
            "_data",
            instance=True,
            used_in=(_fn(receiver, "_handle_rtp_packet"),),
        ),
        Seam("RTCRtpReceiver._send_rtcp_pli", receiver, "_send_rtcp_pli", ("self", "media_ssrc")),
        Seam(
            "RTCRtpReceiver.__remote_bitrate_estimator",
            receiver,
            _BITRATE_ESTIMATOR,
            instance=True,
            used_in=(_fn(receiver, "__init__"), _fn(receiver, "_handle_rtp_packet")),
        ),
        Seam(
            "RTCRtpReceiver.__rtcp_ssrc",
            receiver,
            _RTCP_SSRC,
            instance=True,
            used_in=(_fn(receiver, "__init__"), _fn(receiver, "_set_rtcp_ssrc")),
        ),
        Seam("RTCRtpReceiver._send_rtcp", receiver, "_send_rtcp", ("self", "packet")),
        Seam("aiortc.rtp.pack_remb_fci", aiortc.rtp, "pack_remb_fci", ("bitrate", "ssrcs")),
        Seam("aiortc.rtp.unpack_remb_fci", aiortc.rtp, "unpack_remb_fci", ("data",)),
        Seam("aiortc.rtp.RTCP_PSFB_APP", aiortc.rtp, "RTCP_PSFB_APP"),
        Seam(
            "RTCRtpReceiver._send_rtcp_nack",
            receiver,
            "_send_rtcp_nack",
            ("self", "media_ssrc", "lost"),
        ),
        Seam(
            "RTCRtpReceiver.__remote_streams",
            receiver,
            _REMOTE_STREAMS,
            instance=True,
            used_in=(_fn(receiver, "__init__"),),
        ),
        Seam(
            "RTCRtpReceiver.__nack_generator",
            receiver,
            _NACK_GENERATOR,
            instance=True,
            used_in=(_fn(receiver, "__init__"), _fn(receiver, "_handle_rtp_packet")),
        ),
        Seam("NackGenerator.add", NackGenerator, "add", ("self", "packet")),
        Seam(
            "NackGenerator.missing",
            NackGenerator,
            "missing",
            instance=True,
            used_in=(_fn(NackGenerator, "__init__"), _fn(NackGenerator, "add")),
        ),
        Seam(
            "RTCRtpReceiver.__rtx_ssrc",
            receiver,
            _RTX_SSRC,
            instance=True,
            used_in=(_fn(receiver, "__init__"),),
        ),
        Seam(
            "JitterBuffer._remove_frame",
            buffer,
            "_remove_frame",
            ("self", "sequence_number"),
            used_in=(_fn(buffer, "add"),),
        ),
        Seam("JitterBuffer.remove", buffer, "remove", ("self", "count")),
        # LowLatencyJitterBuffer.add calls it and reads what it returns
        Seam("JitterBuffer.add", buffer, "add", ("self", "packet")),
        Seam(
            "RTCRtpReceiver.__timestamp_mapper",
            receiver,
            _TIMESTAMP_MAPPER,
            instance=True,
            used_in=(_fn(receiver, "__init__"), _fn(receiver, "_handle_rtp_packet")),
        ),
        Seam(
            "JitterBuffer._origin/_packets/_is_video",
            buffer,
            "_packets",
            instance=True,
            used_in=(_fn(buffer, "__init__"),),
        ),
        Seam("JitterBuffer.capacity", buffer, "capacity"),
        Seam(
            "RTCRtpReceiver._handle_rtp_packet",
            receiver,
            "_handle_rtp_packet",
            ("self", "packet", "arrival_time_ms"),
            used_in=(_fn(aiortc.rtcdtlstransport.RTCDtlsTransport, "_handle_rtp_data"),),
        ),
        Seam(
            "RTCDtlsTransport._handle_rtcp_data",
            aiortc.rtcdtlstransport.RTCDtlsTransport,
            "_handle_rtcp_data",
            ("self", "data"),
            used_in=(_fn(aiortc.rtcdtlstransport.RTCDtlsTransport, "_recv_next"),),
        ),
        *(
            Seam(
                f"aiortc.rtcpeerconnection.{name}",
                aiortc.rtcpeerconnection,
                name,
                used_in=(
                    _fn(aiortc.rtcpeerconnection.RTCPeerConnection, "createOffer"),
                    _fn(aiortc.rtcpeerconnection.RTCPeerConnection, "setRemoteDescription"),
                ),
            )
            for name in ("CODECS", "HEADER_EXTENSIONS")  # offer_transport_wide_cc() stands in
        ),
        Seam(
            "HeaderExtensionsMap.set (transport_sequence_number)",
            aiortc.rtp.HeaderExtensionsMap,
            "transport_sequence_number",
            instance=True,
            used_in=(_fn(aiortc.rtp.HeaderExtensionsMap, "set"),),
        ),
        Seam(
            "RTCDtlsTransport._send_rtp",
            aiortc.rtcdtlstransport.RTCDtlsTransport,
            "_send_rtp",
            ("self", "data"),
            used_in=(_fn(sender, "_run_rtp"), _fn(sender, "_retransmit")),
        ),
        Seam(
            "RTCRtpSender._ssrc",
            sender,
            "_ssrc",
            instance=True,
            used_in=(_fn(sender, "__init__"), _fn(sender, "_run_rtcp"), _fn(sender, "_run_rtp")),
        ),
        Seam(
            "RTCRtpSender.__rtp_history",
            sender,
            _RTP_HISTORY,
            instance=True,
            used_in=(_fn(sender, "__init__"), _fn(sender, "_run_rtp"), _fn(sender, "_retransmit")),
        ),
        Seam(
            "RTCRtpSender.__rtp_header_extensions_map",
            sender,
            _EXTENSIONS_MAP,
            instance=True,
            used_in=(_fn(sender, "__init__"), _fn(sender, "send"), _fn(sender, "_retransmit")),
        ),
        Seam(
            "RTCRtpSender.__ntp_timestamp",
            sender,
            _NTP_TIMESTAMP,
            instance=True,
            used_in=(_fn(sender, "__init__"), _fn(sender, "_run_rtp"), _fn(sender, "_run_rtcp")),
        ),
        Seam(
            "RTCRtpSender.__rtp_timestamp",
            sender,
            _RTP_TIMESTAMP,
            instance=True,
            used_in=(_fn(sender, "__init__"), _fn(sender, "_run_rtp"), _fn(sender, "_run_rtcp")),
        ),
        *(
            Seam(
                label,
                sender,
                name,
                instance=True,
                used_in=(
                    _fn(sender, "__init__"),
                    _fn(sender, "_run_rtcp"),
                    _fn(sender, "_handle_rtcp_packet"),
                ),
            )
            for label, name in (
                ("RTCRtpSender.__lsr", _LSR),
                ("RTCRtpSender.__lsr_time", _LSR_TIME),
            )
        ),
        Seam("RTCRtpSender._retransmit", sender, "_retransmit", ("self", "sequence_number")),
        Seam(
            "RTCRtpSender._rtx_ssrc/__rtx_payload_type/__rtx_sequence_number",
            sender,
            _RTX_SEQUENCE_NUMBER,
            instance=True,
            used_in=(_fn(sender, "__init__"), _fn(sender, "_retransmit")),
        ),
        Seam(
            "RTCRtpSender.__rtx_payload_type",
            sender,
            _RTX_PAYLOAD_TYPE,
            instance=True,
            used_in=(_fn(sender, "__init__"), _fn(sender, "send"), _fn(sender, "_retransmit")),
        ),
        Seam(
            "RTCRtpSender._rtx_ssrc",
            sender,
            "_rtx_ssrc",
            instance=True,
            used_in=(_fn(sender, "__init__"), _fn(sender, "_retransmit")),
        ),
        Seam(
            "RTCRtpSender._retransmit reads __rtp_history with get()",
            sender,
            "get",
            instance=True,
            used_in=(_fn(sender, "_retransmit"),),
        ),
        Seam("aiortc.rtp.RTP_HISTORY_SIZE", aiortc.rtp, "RTP_HISTORY_SIZE"),
        Seam("RTCRtpSender._send_keyframe", sender, "_send_keyframe", ("self",)),
        Seam("RTCRtpSender._handle_rtcp_packet", sender, "_handle_rtcp_packet", ("self", "packet")),
        Seam(
            "RTCRtpSender.__packet_count",
            sender,
            _PACKET_COUNT,
            instance=True,
            used_in=(_fn(sender, "__init__"), _fn(sender, "_run_rtcp")),
        ),
        Seam(
            "RTCRtpSender.__octet_count",
            sender,
            _OCTET_COUNT,
            instance=True,
            used_in=(_fn(sender, "__init__"), _fn(sender, "_run_rtcp")),
        ),
        Seam(
            "RTCRtpSender.__stats",
            sender,
            _SENDER_STATS,
            instance=True,
            used_in=(_fn(sender, "__init__"),),
        ),
        Seam(
            "RTCRtpTransceiver._codecs",
            aiortc.rtcrtptransceiver.RTCRtpTransceiver,
            "_codecs",
            instance=True,
            used_in=(_fn(aiortc.rtcrtptransceiver.RTCRtpTransceiver, "__init__"),),
        ),
        Seam("aiortc.rtp.RTCP_RTPFB_NACK", aiortc.rtp, "RTCP_RTPFB_NACK"),
        Seam(
            "aiortc.clock.current_ms",
            aiortc.clock,
            "current_ms",
            (),
            used_in=(_fn(aiortc.rtcdtlstransport.RTCDtlsTransport, "_recv_next"),),
        ),
        Seam("aiortc.rtp.RtcpRtpfbPacket", aiortc.rtp, "RtcpRtpfbPacket"),
        Seam(
            "aioice.ice.get_host_addresses",
            ice,
            "get_host_addresses",
            ("use_ipv4", "use_ipv6"),
            used_in=(_fn(ice.Connection, "gather_candidates"),),
        ),
        Seam(
            "aioice.ice.Connection.get_component_candidates",
            ice.Connection,
            "get_component_candidates",
            ("self", "component", "addresses", "timeout"),
        ),
        Seam(
            "RTCDtlsTransport._handle_rtp_data",
            dtls,
            "_handle_rtp_data",
            ("self", "data", "arrival_time_ms"),
            used_in=(_fn(dtls, "_recv_next"),),
        ),
        Seam(
            "RTCDtlsTransport._rx_srtp",
            dtls,
            "_rx_srtp",
            instance=True,
            used_in=(_fn(dtls, "_setup_srtp"), _fn(dtls, "_recv_next")),
        ),
        Seam(
            "RTCDtlsTransport._state (State.CONNECTED)",
            dtls,
            "_state",
            instance=True,
            used_in=(_fn(dtls, "_set_state"), _fn(dtls, "_send_rtp")),
        ),
        Seam("aiortc.rtcdtlstransport.State.CONNECTED", aiortc.rtcdtlstransport.State, "CONNECTED"),
        *(
            Seam(
                f"RTCDtlsTransport.__{name[len('_RTCDtlsTransport__') :]}",
                dtls,
                name,
                instance=True,
                used_in=(_fn(dtls, counted_in), _fn(dtls, "_get_stats")),
            )
            for name, counted_in in (
                (_DTLS_RX_BYTES, "_recv_next"),
                (_DTLS_RX_PACKETS, "_recv_next"),
                (_DTLS_TX_BYTES, "_send_rtp"),
                (_DTLS_TX_PACKETS, "_send_rtp"),
            )
        ),
        Seam(
            "RTCDtlsTransport._tx_srtp",
            dtls,
            "_tx_srtp",
            instance=True,
            used_in=(_fn(dtls, "_setup_srtp"), _fn(dtls, "_send_rtp")),
        ),
        Seam(
            "aioice.ice.Connection._nominated (the pair sent on)",
            ice.Connection,
            "_nominated",
            instance=True,
            used_in=(_fn(ice.Connection, "sendto"),),
        ),
        *(
            Seam(
                f"aioice.ice.CandidatePair.{name}",
                ice.CandidatePair,
                name,
                instance=True,
                used_in=(_fn(ice.Connection, "sendto"),),
            )
            for name in ("protocol", "remote_addr")
        ),
        *(
            Seam(
                f"aioice.ice.StunProtocol.send_data sends with transport.{name}",
                ice.StunProtocol,
                name,
                instance=True,
                used_in=(_fn(ice.StunProtocol, "send_data"),),
            )
            for name in ("transport", "sendto")
        ),
        Seam("aiortc.rtp.is_rtcp", aiortc.rtp, "is_rtcp", ("msg",)),
        Seam("pylibsrtp.Error", pylibsrtp, "Error"),
        Seam(
            "aioice.ice.Connection._queue (datagrams for the DTLS transport)",
            ice.Connection,
            "_queue",
            instance=True,
            used_in=(_fn(ice.Connection, "data_received"), _fn(ice.Connection, "recvfrom")),
        ),
        Seam(
            "aioice.ice.Connection._protocols",
            ice.Connection,
            "_protocols",
            instance=True,
            used_in=(_fn(ice.Connection, "__init__"),),
        ),
        Seam("aioice.ice.StunProtocol", ice, "StunProtocol", ("receiver",)),
        Seam(
            "aioice.ice.StunProtocol.receiver/local_candidate",
            ice.StunProtocol,
            "local_candidate",
            instance=True,
            used_in=(_fn(ice.StunProtocol, "datagram_received"),),
        ),
        Seam(
            "aioice.ice.Connection.data_received",
            ice.Connection,
            "data_received",
            ("self", "data", "component"),
            used_in=(_fn(ice.StunProtocol, "datagram_received"),),
        ),
        Seam(
            "aioice.ice.StunProtocol.transport",
            ice.StunProtocol,
            "transport",
            instance=True,
            used_in=(_fn(ice.StunProtocol, "connection_made"),),
        ),
        Seam(
            "RTCIceTransport._connection",
            aiortc.rtcicetransport.RTCIceTransport,
            "_connection",
            instance=True,
            used_in=(_fn(aiortc.rtcicetransport.RTCIceTransport, "__init__"),),
        ),
        Seam(
            "asyncio _SelectorDatagramTransport._read_ready",
            datagram,
            "_read_ready",
            ("self",),
            used_in=(_fn(datagram, "__init__"),),
        ),
        Seam(
            "asyncio _SelectorDatagramTransport._sock/_conn_lost/_protocol/max_size",
            datagram,
            "recvfrom",
            instance=True,
            used_in=(_fn(datagram, "_read_ready"),),
        ),
        Seam("asyncio _SelectorDatagramTransport._fatal_error", datagram, "_fatal_error"),
        Seam(
            "asyncio BaseSelectorEventLoop._add_reader",
            asyncio.selector_events.BaseSelectorEventLoop,
            "_add_reader",
            ("self", "fd", "callback"),
        ),
        Seam("aioice.turn.UDP_SOCKET_BUFFER_SIZE", aioice.turn, "UDP_SOCKET_BUFFER_SIZE"),
        Seam("aiortc.codecs.HEADER_EXTENSIONS", aiortc.codecs, "HEADER_EXTENSIONS"),
        Seam(
            "HeaderExtensionsMap reads rtp-stream-id / repaired-rtp-stream-id",
            aiortc.rtp.HeaderExtensionsMap,
            "repaired_rtp_stream_id",
            instance=True,
            used_in=(
                _fn(aiortc.rtp.HeaderExtensionsMap, "configure"),
                _fn(aiortc.rtp.HeaderExtensionsMap, "get"),
            ),
        ),
        Seam(
            "aioice.candidate.candidate_foundation",
            aioice.candidate,
            "candidate_foundation",
            ("candidate_type", "candidate_transport", "base_address"),
        ),
        Seam(
            "aioice.candidate.candidate_priority",
            aioice.candidate,
            "candidate_priority",
            ("candidate_component", "candidate_type"),
        ),
    ]


def seam_problems(seams: Iterable[Seam] | None = None) -> list[str]:
    """What is missing or changed, one entry per seam (empty: all as expected)."""
    return [p for seam in (_seams() if seams is None else seams) if (p := seam.problem())]


def check_seams() -> None:
    """Refuse to run the relay on an aiortc/aioice whose internals it does not know."""
    problems = seam_problems()
    if problems:
        raise SeamError(problems)


def seam_count() -> int:
    return len(_seams())
