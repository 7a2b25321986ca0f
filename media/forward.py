"""Packet-level forwarding: a publisher's RTP packets go to each subscriber with SSRC, payload
type, sequence number and timestamp rewritten, SRTP-protected by the subscriber's transport.
Nothing on this path buffers, depacketizes or repacketizes (aiortc's internals are reached
through media/seams.py).

- :func:`forward_rtp` hooks a publisher's receiver: every RTP packet that arrives is handed
  to each subscriber's :class:`ForwardTrack` first, then goes through the receiver's own path
  once (NACKs upstream, frames assembled for the recorder);
- :class:`ForwardTrack` is one subscriber's copy of a published track. It is the track of
  the subscriber's ``RTCRtpSender`` (whose own loop it keeps idle: ``recv()`` returns only
  when the track ends) and sends the rewritten packets through that sender's transport,
  keeping them in the sender's RTP history so aiortc answers the subscriber's NACKs (as RTX
  where negotiated) and its RTCP sender reports stay true. Video starts at a keyframe: the
  track's latest one if it is recent (:class:`KeyframeCache`), else one it asks for. The
  subscriber's REMB to that sender is kept on the track (``bandwidth``, media/bandwidth.py).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from struct import pack_into
from typing import TYPE_CHECKING, Any

from aiortc import MediaStreamError, MediaStreamTrack, RTCRtpReceiver, RTCRtpTransceiver
from aiortc.codecs import is_rtx
from aiortc.rtp import RtpPacket, unwrap_rtx, wrap_rtx

from media import seams
from media.bandwidth import REPORT_MAX_AGE_S, BandwidthReport
from media.congestion import START_GRACE_S, TransportFeedback
from media.encoded import KeyframeRequest

if TYPE_CHECKING:
    from media.layers import Layer, LayerChoice, Layers, RecordedStream

log = logging.getLogger("vreception.media")

LOSSY = 0.02  # a subscriber losing this share of its packets (its receiver reports) ...
QUEUED_RTT_S = 0.4  # ... or whose round trip is this long: its link is overflowing

_H264_KEY_NALS = (5, 7)  # an IDR slice, or the SPS that precedes it


def ntp_now() -> int:
    """The time as a 64-bit NTP timestamp (aiortc's ``clock.current_ntp_time`` goes through
    ``datetime``, several times slower; this runs once per packet)."""
    return int((time.time() + seams.NTP_UNIX) * (1 << 32))


def _vp8_first_partition(payload: bytes) -> int | None:
    """Where the VP8 frame begins in an RTP packet that carries the start of a frame's first
    partition (RFC 7741 §4.2: S bit set, partition index 0), else None."""
    if len(payload) < 2 or payload[0] & 0x17 != 0x10:  # S=1, PID=0
        return None
    pos = 1
    if payload[0] & 0x80:  # X: extension byte
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, one or two bytes (M bit)
            pos += 2 if len(payload) > pos and payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    return pos if len(payload) > pos else None


def vp8_starts_keyframe(payload: bytes) -> bool:
    """The RTP packet carries the first partition of a VP8 keyframe (RFC 7741 §4.3: the P
    bit of the VP8 frame tag clear)."""
    pos = _vp8_first_partition(payload)
    return pos is not None and payload[pos] & 0x01 == 0


def vp8_keyframe_height(payload: bytes) -> int | None:
    """The picture height a VP8 keyframe's header gives (RFC 6386 §9.1: the 3-byte frame
    tag, the start code 9d 01 2a, then 14-bit width and height), or None."""
    pos = _vp8_first_partition(payload)
    if pos is None or payload[pos] & 0x01 or payload[pos + 3 : pos + 6] != b"\x9d\x01\x2a":
        return None
    if len(payload) < pos + 10:
        return None
    return int.from_bytes(payload[pos + 8 : pos + 10], "little") & 0x3FFF


def h264_starts_keyframe(payload: bytes) -> bool:
    """The RTP packet starts an H.264 IDR access unit (RFC 6184): a single SPS or IDR NAL
    unit, a STAP-A holding one, or the first fragment (FU-A) of one."""
    if not payload:
        return False
    nal = payload[0] & 0x1F
    if nal in _H264_KEY_NALS:
        return True
    if nal == 24:  # STAP-A: 16-bit size, NAL unit, ...
        pos = 1
        while pos + 2 < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if payload[pos + 2] & 0x1F in _H264_KEY_NALS:
                return True
            pos += 2 + size
        return False
    if nal == 28 and len(payload) > 1:  # FU-A: start bit, original NAL type
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in _H264_KEY_NALS
    return False


def starts_keyframe(codec: str, payload: bytes) -> bool:
    """Whether a subscriber may start on this packet (audio: always)."""
    if codec == "vp8":
        return vp8_starts_keyframe(payload)
    if codec == "h264":
        return h264_starts_keyframe(payload)
    return True


class KeyframeCache:
    """The packets of a published video track since its latest keyframe began, while that
    keyframe is recent (``max_age`` seconds, at most ``limit`` packets): a subscriber that
    starts sending replays them instead of waiting for a keyframe it has to ask for."""

    def __init__(self, codec: str, max_age: float = 0.5, limit: int = 256) -> None:
        self.codec = codec
        self.max_age = int(max_age * (1 << 32))  # NTP units
        self.limit = limit
        self.packets: list[RtpPacket] = []
        self._started = 0  # NTP time the keyframe began
        self.height: int | None = None  # the picture's, from the latest keyframe (VP8)
        self._newest: tuple[int, int] | None = None  # (SSRC, highest number) seen

    def add(self, packet: RtpPacket, ntp: int) -> None:
        newest, number = self._newest, packet.sequence_number
        late = (
            newest is not None
            and newest[0] == packet.ssrc
            and (number - newest[1]) & 0xFFFF >= 0x8000
        )
        if not late:
            self._newest = (packet.ssrc, number)
        if starts_keyframe(self.codec, packet.payload) and not (
            # H.264: the SPS and the IDR slice of one access unit both start it
            self.packets and self.packets[0].timestamp == packet.timestamp
        ):
            after: list[RtpPacket] = []
            if late:  # its start came late (a retransmission): what followed it is needed
                assert newest is not None
                after = sorted(
                    (
                        p
                        for p in self.packets
                        if p.ssrc == packet.ssrc
                        and (p.sequence_number - number) & 0xFFFF > 0
                        and (p.sequence_number - number) & 0xFFFF < 0x8000
                    ),
                    key=lambda p: (p.sequence_number - number) & 0xFFFF,
                )
                if len(after) < (newest[1] - number) & 0xFFFF:
                    self.packets = []  # some of it passed uncached: nothing whole to replay
                    return
            self.packets = [packet, *after]
            self._started = ntp
            if self.codec == "vp8":
                self.height = vp8_keyframe_height(packet.payload)
        elif self.packets:
            if len(self.packets) >= self.limit or ntp - self._started > self.max_age:
                self.packets = []
            else:
                self.packets.append(packet)

    def recent(self, ntp: int) -> list[RtpPacket]:
        """From the latest keyframe on, if it began no more than ``max_age`` ago."""
        return list(self.packets) if ntp - self._started <= self.max_age else []


class Rebase:
    """One outgoing numbering over a stream whose source may change (a new SSRC: another
    simulcast layer, or the publisher's new stream): sequence numbers stay continuous (a
    gap upstream stays a gap, so a NACK can be answered once the retransmission arrives)
    and, on a new source, go on where they stopped, the timestamp moving on by the time
    that passed. Packets older than the point where the current source began have no place
    in the numbering (:meth:`map` gives None). ``keep_first``: the first source keeps its
    own numbers (else they start at random, as a sender's do)."""

    def __init__(self, clock_rate: int, keep_first: bool = False) -> None:
        self.clock_rate = clock_rate
        self.keep_first = keep_first
        self.source: int | None = None  # the SSRC being numbered
        self._in_ref = 0  # a source sequence number ...
        self._out_ref = 0  # ... and the outgoing (unwrapped) number for it
        self._start = 0  # the first number given since the source began
        self._last_out = -1  # the highest number given, its timestamp and NTP time
        self._last_ts = 0
        self._last_ntp = 0
        self._ts_offset = 0

    def restart(self, packet: RtpPacket, ntp: int) -> None:
        """Number from ``packet`` on: the first packet, or one from a new source."""
        if self._last_out < 0:
            if self.keep_first:
                out, timestamp = packet.sequence_number, packet.timestamp
            else:
                out = secrets.randbelow(0x8000)  # low half: no early wrap (as aiortc)
                timestamp = secrets.randbits(32)
        else:
            out = self._last_out + 1
            elapsed = max(0, ntp - self._last_ntp) * self.clock_rate >> 32
            timestamp = (self._last_ts + max(1, elapsed)) & 0xFFFFFFFF
        self.source = packet.ssrc
        self._in_ref = packet.sequence_number
        self._out_ref = self._start = out
        self._ts_offset = (timestamp - packet.timestamp) & 0xFFFFFFFF

    def map(self, packet: RtpPacket, ntp: int) -> tuple[int, int] | None:
        """The outgoing sequence number and timestamp of a packet of the current source."""
        delta = ((packet.sequence_number - self._in_ref + 0x8000) & 0xFFFF) - 0x8000
        out = self._out_ref + delta
        if out < self._start:
            return None
        if delta > 0:
            self._in_ref, self._out_ref = packet.sequence_number, out
        timestamp = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        if out > self._last_out:
            self._last_out, self._last_ts, self._last_ntp = out, timestamp, ntp
        return out & 0xFFFF, timestamp

    @property
    def last_timestamp(self) -> int:
        """The timestamp of the highest number given."""
        return self._last_ts

    def source_number(self, sequence_number: int) -> int | None:
        """The current source's number of an outgoing one (None: before the source began)."""
        near = self._out_ref & 0xFFFF
        out = self._out_ref + ((sequence_number - near + 0x8000) & 0xFFFF) - 0x8000
        if self._last_out < 0 or out < self._start:
            return None
        return (self._in_ref + out - self._out_ref) & 0xFFFF


def vp8_picture_fields(payload: bytes) -> tuple[int, int, int]:
    """Where a VP8 payload descriptor (RFC 7741 §4.2) holds its picture ID and TL0PICIDX:
    (offset of the picture ID, its width in bits: 15, 7 or 0 when absent, offset of
    TL0PICIDX or -1)."""
    if len(payload) < 2 or not payload[0] & 0x80:
        return 0, 0, -1
    ext, pos = payload[1], 2
    pid_at, pid_bits = 0, 0
    if ext & 0x80 and len(payload) > pos:
        pid_at = pos
        pid_bits = 15 if payload[pos] & 0x80 else 7
        if pid_bits == 15 and len(payload) <= pos + 1:
            return 0, 0, -1  # cut short (a malformed packet): nothing to rewrite
        pos += 2 if pid_bits == 15 else 1
    tl0_at = pos if ext & 0x40 and len(payload) > pos else -1
    return pid_at, pid_bits, tl0_at


class PictureIds:
    """A subscriber's VP8 picture IDs and TL0PICIDX across simulcast layers: each layer
    numbers its own, so on a change of layer both go on from the last ones sent (as an
    SFU must, or the receiver's reference finder takes the new layer's frames for old or
    missing ones)."""

    def __init__(self) -> None:
        self._pid_delta = 0
        self._tl0_delta = 0
        self._last_pid: int | None = None
        self._last_tl0: int | None = None

    def restart(self, payload: bytes) -> None:
        """``payload`` begins the new layer (its keyframe)."""
        pid_at, pid_bits, tl0_at = vp8_picture_fields(payload)
        if pid_bits == 15 and self._last_pid is not None:
            pid = (payload[pid_at] & 0x7F) << 8 | payload[pid_at + 1]
            self._pid_delta = (self._last_pid + 1 - pid) & 0x7FFF
        if tl0_at >= 0 and self._last_tl0 is not None:
            self._tl0_delta = (self._last_tl0 + 1 - payload[tl0_at]) & 0xFF

    def rewrite(self, buf: bytearray, at: int) -> None:
        """Rewrite the descriptor of the payload that starts at ``buf[at]`` in place."""
        pid_at, pid_bits, tl0_at = vp8_picture_fields(bytes(buf[at : at + 6]))
        if pid_bits == 15:
            i = at + pid_at
            pid = ((buf[i] & 0x7F) << 8 | buf[i + 1]) + self._pid_delta & 0x7FFF
            buf[i], buf[i + 1] = 0x80 | pid >> 8, pid & 0xFF
            if self._last_pid is None or (pid - self._last_pid) & 0x7FFF < 0x4000:
                self._last_pid = pid  # not a late (retransmitted) packet of an older frame
        if tl0_at >= 0:
            i = at + tl0_at
            buf[i] = (buf[i] + self._tl0_delta) & 0xFF
            if self._last_tl0 is None or (buf[i] - self._last_tl0) & 0xFF < 0x80:
                self._last_tl0 = buf[i]


@dataclass(frozen=True)
class RtpHeader:
    """A subscriber's RTP header for one track, serialized once by aiortc with the sender's
    SSRC, its MID and the header extensions it negotiated (so aiortc's extension map stays
    the one place that lays them out), and where the fields that change per packet are:
    a packet's header is this template with marker, payload type, sequence number,
    timestamp, abs-send-time, audio level and transport-wide sequence number written in
    place (0: not negotiated)."""

    template: bytes
    abs_send_time: int  # offset of its 3 bytes
    audio_level: int  # offset of its byte
    transport_number: int = 0  # offset of its 2 bytes

    @classmethod
    def of(cls, wire: seams.SenderWire, mid: str | None, with_audio_level: bool) -> RtpHeader:
        def serialized(abs_send_time: int, level: tuple[bool, int], number: int = 0) -> bytes:
            rtp = RtpPacket(ssrc=wire.ssrc)
            rtp.extensions.mid = mid
            rtp.extensions.abs_send_time = abs_send_time
            rtp.extensions.audio_level = level if with_audio_level else None
            rtp.extensions.transport_sequence_number = number
            return rtp.serialize(wire.extensions)

        template = serialized(0, (False, 0))

        def offset(other: bytes) -> int:
            return next(
                (i for i, (a, b) in enumerate(zip(template, other, strict=False)) if a != b), 0
            )

        return cls(
            template,
            offset(serialized(0xFFFFFF, (False, 0))),
            offset(serialized(0, (True, 0x7F))) if with_audio_level else 0,
            offset(serialized(0, (False, 0), 0xFFFF)),
        )


class ForwardTrack(MediaStreamTrack):
    """One subscriber's copy of a published track: rewrites and sends its RTP packets,
    numbered by a :class:`Rebase` (a new source starts on a keyframe).

    A simulcast track (``layers``) sends one layer: the one it was last told to want
    (:meth:`want`), changing on that layer's keyframe, with VP8 picture IDs kept continuous
    (:class:`PictureIds`).
    """

    def __init__(
        self,
        kind: str,
        codec: str,
        clock_rate: int,
        request_keyframe: KeyframeRequest,
        keyframes: KeyframeCache | None = None,
        transport: TransportFeedback | None = None,
    ) -> None:
        super().__init__()
        # the subscriber connection's transport-wide numbering and estimate (None: REMB only)
        self.transport = transport
        self.keyframes = keyframes
        self.kind = kind
        self.codec = codec
        self.clock_rate = clock_rate
        self.request_keyframe = request_keyframe
        self.forwarded = 0  # frames sent (video: packets with the marker bit; audio: packets)
        self.frame_ends_repeated = 0  # last packets of frames sent twice (a lossy link)
        # the subscriber's latest REMB for its connection, and who is told of a new one
        self.bandwidth: BandwidthReport | None = None
        # the subscriber's latest receiver report: the share it lost, and when (monotonic)
        self.loss: tuple[float, float] | None = None
        self.rtt: tuple[float, float] | None = None  # seconds, and when (monotonic)
        self.started: float | None = None  # monotonic seconds it began sending
        self._new_stream = False  # in its first START_GRACE_S of sending
        # the keyframe the current source began with: its RTP timestamp and the first and
        # last numbers it went out with (retransmitted outside the budget)
        self._key_timestamp: int | None = None
        self._reported = (0, 0)  # the (NTP, RTP timestamp) pair of the newest packet sent
        self._gated: tuple[int, int] | None = None  # (SSRC, highest number) dropped waiting
        self._key_numbers: tuple[int, int] | None = None
        self.on_bandwidth: Callable[[], Awaitable[None]] | None = None
        self._video = kind == "video"
        self._ended = asyncio.Event()
        self._transceiver: RTCRtpTransceiver | None = None
        self._wire: seams.SenderWire | None = None
        self._payload_type = 0
        self._header = self._leveled_header = RtpHeader(b"", 0, 0)
        self._rebase = Rebase(clock_rate)
        # simulcast: the published track's layers, the one wanted and the one being sent
        self.layers: Layers | None = None
        self.wanted: Layer | None = None
        self.choice: LayerChoice | None = None
        self.switches = 0
        self._pictures: PictureIds | None = None
        self._mid: str | None = None
        self.padding_bps = 0  # padding sent on the retransmission stream (probing)
        self.padding_sent = 0  # bytes
        self._padder: asyncio.Task[None] | None = None
        self._transport_estimates = False  # the transport's feedback stands for REMB
        self._dropping: float | None = None  # since when the current layer is being dropped
        self._frame_open = False  # the last packet sent did not end its frame
        self._resent: dict[int, float] = {}  # sequence number → when it was sent again
        # how tall the subscriber shows this picture, in device pixels (None: not told)
        self.shown_height: int | None = None

    def attach(self, transceiver: RTCRtpTransceiver) -> None:
        """The subscriber's transceiver whose sender carries this track. Video asks for a
        keyframe now, so that one is at hand when the connection is up."""
        self._transceiver = transceiver
        seams.wrap_rtcp_handler(transceiver.sender, self._watch_remb)
        if self._video:
            self.ask_keyframe()

    def _watch_remb(
        self, original: Callable[[Any], Awaitable[None]]
    ) -> Callable[[Any], Awaitable[None]]:
        """Keep the subscriber's REMB (aiortc routes one to each sender whose SSRC it lists)
        and the loss its receiver reports give."""

        async def handle(packet: Any) -> None:
            wire = self._wire
            if wire is not None:
                reception = seams.reception_of(packet, wire.ssrc, ntp_now(), wire.last_report())
                if reception is not None:
                    before = self.congested(time.monotonic())
                    lost, rtt = reception
                    if not self._transport_estimates:  # else its feedback says more
                        self.loss = (lost, time.monotonic())
                    if rtt is not None and rtt < 60:
                        self.rtt = (rtt, time.monotonic())
                    newly = self.congested(time.monotonic()) and not before
                    if newly and self.on_bandwidth is not None:  # the layer may be too much
                        await self.on_bandwidth()
            remb = seams.remb_of(packet)
            if remb is not None and not self._transport_estimates:
                self.bandwidth = BandwidthReport(remb[0], time.monotonic())
                if self.on_bandwidth is not None:
                    await self.on_bandwidth()
            if seams.is_nack(packet) and self.transport is not None:
                packet.lost = self._retransmittable(packet.lost, time.monotonic())
            await original(packet)

        return handle

    # A packet asked for again within the gap is not sent again: 1.2 round trips (a
    # retransmission still on its way is not sent twice), at least RESEND_GAP_MIN_S and at
    # most RESEND_GAP_S (also while no receiver report gives the round trip). A browser asks
    # again every 100 ms (its round trip unknown, it assumes 100 ms): with a fixed 0.15 s its
    # second request was always refused, and a lost retransmission was repaired 200 ms late.
    RESEND_GAP_S = 0.15
    RESEND_GAP_MIN_S = 0.06

    def resend_gap(self, now: float) -> float:
        rtt = self.rtt
        if rtt is None or now - rtt[1] > REPORT_MAX_AGE_S:
            return self.RESEND_GAP_S
        return min(self.RESEND_GAP_S, max(self.RESEND_GAP_MIN_S, 1.2 * rtt[0]))

    def _retransmittable(self, lost: list[int], now: float) -> list[int]:
        """What of a NACK to answer (aiortc retransmits each number it lists): within the
        connection's retransmission budget (media/congestion.py), and not a packet sent
        again moments ago. On a link that overflows, every retransmission displaces another
        packet and is itself lost, asked for again, sent again: answering all of them kept
        a 300 kbit/s link full for seconds after the picture sent on it had become small."""
        transport = self.transport
        if transport is None:
            return lost
        resent = self._resent
        if len(resent) > 512:
            for number in [n for n, at in resent.items() if now - at > 1.0]:
                del resent[number]
        kept = []
        key = self._key_numbers
        gap = self.resend_gap(now)
        for number in lost:
            if now - resent.get(number, -1e9) < gap:
                continue
            # the keyframe a new layer began with, outside the budget: without it the
            # picture stays frozen until another keyframe is asked for and comes
            is_key = key is not None and (number - key[0]) & 0xFFFF <= (key[1] - key[0]) & 0xFFFF
            if not is_key and not transport.may_retransmit(now):
                continue
            resent[number] = now
            kept.append(number)
        return kept

    async def estimated(self, bps: int, loss: float) -> None:
        """The relay's own estimate of the subscriber's connection (its transport-cc
        feedback, media/congestion.py): it stands for the REMB, and its loss, counted
        before retransmissions repair it, for the receiver reports'."""
        now = time.monotonic()
        self._transport_estimates = True
        self.loss = (loss, now)
        self.bandwidth = BandwidthReport(bps, now)
        if self.on_bandwidth is not None:
            await self.on_bandwidth()

    @property
    def sending(self) -> bool:
        return self._wire is not None

    async def recv(self) -> Any:
        """Called by the sender's own loop once it started: from then on packets can go out
        through its transport. Returns only by raising when the track ends, so the sender
        never encodes or packetizes anything itself."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._wire is None and self._transceiver is not None:
            await self._begin(self._transceiver)
        await self._ended.wait()
        raise MediaStreamError

    async def _begin(self, transceiver: RTCRtpTransceiver) -> None:
        codecs = seams.negotiated_codecs(transceiver)
        if codecs:
            wire = seams.sender_wire(transceiver.sender)
            await self.start_sending(wire, int(codecs[0].payloadType), transceiver.mid)
            if self.transport is not None and self._header.transport_number:
                transport = transceiver.sender.transport
                seams.watch_transport_feedback(transport, self.transport.feedback)

    async def start_sending(
        self, wire: seams.SenderWire, payload_type: int, mid: str | None
    ) -> None:
        """Send from now on, with this payload type and MID, through ``wire``; video starts
        with the published track's latest keyframe if it is recent, else asks for one."""
        self._payload_type = payload_type
        self._mid = mid
        self._header = RtpHeader.of(wire, mid, with_audio_level=False)
        self._leveled_header = RtpHeader.of(wire, mid, with_audio_level=True)
        self._wire = wire
        self.started = time.monotonic()
        # losses of its first packets are the browser's, not the link's (TransportFeedback.take)
        self._new_stream = True
        asyncio.get_running_loop().call_later(START_GRACE_S, self._settled)
        if self.keyframes is not None:
            ntp = ntp_now()
            for packet in self.keyframes.recent(ntp):
                await self.forward(packet, ntp, (ntp >> 14) & 0x00FFFFFF)
        if self._video and self._rebase.source is None:
            self.ask_keyframe()

    def _settled(self) -> None:
        self._new_stream = False

    def end(self) -> None:
        """The published track ended (or the subscriber left)."""
        self.stop()

    def stop(self) -> None:
        super().stop()
        self._wire = None
        self.padding_bps = 0
        self._ended.set()

    def congested(self, now: float) -> bool:
        """The subscriber's latest receiver report (at most ``REPORT_MAX_AGE_S`` old) shows
        its link overflowing: it lost ``LOSSY`` of the packets, or a queue holds them
        (round trip over ``QUEUED_RTT_S``; jitter alone does not take it there)."""
        loss, rtt = self.loss, self.rtt
        return (loss is not None and now - loss[1] <= REPORT_MAX_AGE_S and loss[0] >= LOSSY) or (
            rtt is not None and now - rtt[1] <= REPORT_MAX_AGE_S and rtt[0] >= QUEUED_RTT_S
        )

    # On a link that loses packets, the last packet of each video frame is sent twice: the
    # second time at once, on the retransmission stream. A browser learns that a frame's
    # last packet is missing only when the next frame begins (33 ms later at 30 fps); its
    # NACK comes then, and the frame repaired after the next one was complete is given up
    # whenever the next one does not depend on it (a higher temporal layer). At 5 % loss
    # the petitioner's browser completed 561-574 of the judge's 594 frames while the relay
    # repaired 90 of the 97 packets lost, 39 of them frame ends asked for 28-67 ms late.
    FRAME_END_LOSS = 0.01

    def repeats_frame_ends(self, now: float) -> bool:
        """Whether the subscriber's latest report (at most ``REPORT_MAX_AGE_S`` old) shows
        ``FRAME_END_LOSS`` lost, with no queue standing (an overflowing link gets nothing
        more to carry)."""
        loss = self.loss
        return (
            loss is not None
            and now - loss[1] <= REPORT_MAX_AGE_S
            and loss[0] >= self.FRAME_END_LOSS
            and not self.queued()
        )

    async def _send_again(self, data: bytes, wire: seams.SenderWire) -> None:
        """Send the packet ``data`` (as sent a moment ago) again as RTX, with a transport-wide
        number of its own. Not from the retransmission budget: that is for the NACKs, and
        these copies (about 30 a second) used it up and left the NACKs unanswered."""
        assert wire.rtx is not None
        ssrc, payload_type = wire.rtx
        packet = wrap_rtx(
            RtpPacket.parse(data, wire.extensions),
            payload_type=payload_type,
            sequence_number=wire.next_rtx_number(),
            ssrc=ssrc,
        )
        if await self._send_numbered(packet, wire, len(data) + 2):
            self.frame_ends_repeated += 1

    async def _send_numbered(self, packet: RtpPacket, wire: seams.SenderWire, size: int) -> bool:
        """Send a packet the relay makes itself (padding, a copy), with the next transport-wide
        number where negotiated; False when the connection is gone (the number not used)."""
        transport = self.transport if self._header.transport_number else None
        number = None
        if transport is not None:
            number = transport.take(size, self._new_stream)
            packet.extensions.transport_sequence_number = number
        try:
            await wire.send_rtp(packet.serialize(wire.extensions))
        except ConnectionError:
            if transport is not None and number is not None:
                transport.unsent(number)
            return False
        return True

    def queued(self) -> bool:
        """The subscriber's transport-cc feedback shows a queue standing on its link: it
        is given all it carries (a padding probe ends there)."""
        return self._transport_estimates and self.transport is not None and self.transport.queued

    def layered(self, layers: Layers, choice: LayerChoice) -> None:
        """Make this the copy of a simulcast track (before it starts sending), its layer
        chosen by ``choice``."""
        self.layers = layers
        self.choice = choice
        self.keyframes = None  # each layer has its own
        if self.codec == "vp8":
            self._pictures = PictureIds()

    def ask_keyframe(self) -> None:
        """Ask for a keyframe of what this copy waits for (simulcast: its wanted layer)."""
        wanted = self.wanted
        if self.layers is None or wanted is None:
            self.request_keyframe()
        elif wanted.ssrc is not None:
            self.request_keyframe(wanted.ssrc)

    DROP_MAX_S = 1.0
    PAD_INTERVAL_S = 0.02
    PAD_SIZE = 255  # padding bytes per packet (the most one packet carries)

    def pad(self, bps: int) -> None:
        """Send about ``bps`` of padding to the subscriber on the retransmission stream, as
        browsers probe: its estimate counts it, so it can grow past what one lower layer
        gives (0: stop). Nothing when RTX was not negotiated."""
        self.padding_bps = max(0, bps)
        wire = self._wire
        if self.padding_bps and self._padder is None and wire is not None and wire.rtx:
            self._padder = asyncio.create_task(self._pad(), name="padding")

    async def _pad(self) -> None:
        credit = 0.0
        try:
            while self.padding_bps > 0 and (wire := self._wire) is not None and wire.rtx:
                credit += self.padding_bps / 8 * self.PAD_INTERVAL_S
                ssrc, payload_type = wire.rtx
                while credit >= self.PAD_SIZE:
                    credit -= self.PAD_SIZE
                    ntp = ntp_now()
                    packet = RtpPacket(
                        payload_type=payload_type,
                        sequence_number=wire.next_rtx_number(),
                        timestamp=self._rebase.last_timestamp,
                        ssrc=ssrc,
                    )
                    packet.extensions.mid = self._mid
                    packet.extensions.abs_send_time = (ntp >> 14) & 0x00FFFFFF
                    packet.padding_size = self.PAD_SIZE
                    if not await self._send_numbered(packet, wire, 12 + 16 + self.PAD_SIZE):
                        return
                    self.padding_sent += self.PAD_SIZE
                await asyncio.sleep(self.PAD_INTERVAL_S)
        finally:
            self._padder = None

    @property
    def layer(self) -> Layer | None:
        """The simulcast layer being sent now."""
        return self.layers.by_ssrc(self._rebase.source) if self.layers is not None else None

    async def want(self, layer: Layer | None, drop_current: bool = False) -> None:
        """Send ``layer`` from its next keyframe on (its latest one at once if recent).
        ``drop_current``: the link cannot carry the layer being sent: it stops at the end of
        its frame instead of going on until that keyframe (at most ``DROP_MAX_S``), so the
        audio behind it is not lost with it."""
        if layer is None or layer is self.wanted:
            return
        self.wanted = layer
        self._dropping = None
        if self._rebase.source == layer.ssrc or self._wire is None:
            return
        ntp = ntp_now()
        recent = layer.keyframes.recent(ntp)
        if recent:
            for packet in recent:
                await self.forward(packet, ntp, (ntp >> 14) & 0x00FFFFFF)
        else:
            if drop_current:
                self._dropping = time.monotonic()
            self.ask_keyframe()

    async def forward(self, packet: RtpPacket, ntp: int, abs_send_time: int) -> None:
        """Send one of the publisher's packets (RTX already unwrapped) to this subscriber."""
        rest = self.forward_now(packet, ntp, abs_send_time)
        if rest is not None:
            await rest

    def forward_now(
        self, packet: RtpPacket, ntp: int, abs_send_time: int
    ) -> Coroutine[Any, Any, None] | None:
        """:meth:`forward` as a plain call: the packet is sent when it returns, or the
        returned coroutine (a send that has to wait, a frame end sent again) finishes it.
        The publisher's packets go this way, once per packet and subscriber."""
        wire = self._wire
        if wire is None:
            return None
        rebase = self._rebase
        restarted = False
        if packet.ssrc != rebase.source:
            if self.layers is not None:
                wanted = self.wanted
                if wanted is None:  # until a choice is made: the best layer flowing
                    ceiling = self.layers.ceiling(self.shown_height)
                    wanted = self.wanted = self.layers.best(time.monotonic(), ceiling)
                if wanted is None or packet.ssrc != wanted.ssrc:
                    return None  # another layer
            if self._video:
                gated = self._gated
                late = (
                    gated is not None
                    and gated[0] == packet.ssrc
                    and (packet.sequence_number - gated[1]) & 0xFFFF >= 0x8000
                )
                if not late:
                    self._gated = (packet.ssrc, packet.sequence_number)
                if late or not starts_keyframe(self.codec, packet.payload):
                    # keep asking (rate-limited upstream): one request may have been
                    # collapsed with another subscriber's, and browsers send no periodic
                    # keyframes; a keyframe whose start came late (a retransmission) is no
                    # start: its later packets were dropped here already
                    self.ask_keyframe()
                    return None
            self._gated = None
            if rebase.source is not None:
                self.switches += 1
            rebase.restart(packet, ntp)
            self._key_timestamp, self._key_numbers = None, None
            restarted = True
            self._dropping = None
            if self._pictures is not None:
                self._pictures.restart(packet.payload)
        elif self._dropping is not None and not self._frame_open:
            if time.monotonic() - self._dropping <= self.DROP_MAX_S:
                return None  # the layer being left, between frames
            self._dropping = None  # no keyframe of the wanted layer came: go on
        mapped = rebase.map(packet, ntp)
        if mapped is None:
            return None
        sequence_number, timestamp = mapped
        if restarted and self._video:
            self._key_timestamp = timestamp
        if timestamp == self._key_timestamp:  # the keyframe a source began with
            if self._key_numbers is None:
                self._key_numbers = (sequence_number, sequence_number)
            elif (sequence_number - self._key_numbers[1]) & 0xFFFF < 0x8000:
                # the highest so far (a retransmission of a middle packet does not shrink it)
                self._key_numbers = (self._key_numbers[0], sequence_number)
        level = packet.extensions.audio_level
        header = self._header if level is None else self._leveled_header
        buf = bytearray(header.template)
        if packet.padding_size:
            buf[0] |= 0x20
        buf[1] = packet.marker << 7 | self._payload_type
        pack_into("!HL", buf, 2, sequence_number, timestamp)
        at = header.abs_send_time
        if at:
            buf[at] = abs_send_time >> 16 & 0xFF
            buf[at + 1] = abs_send_time >> 8 & 0xFF
            buf[at + 2] = abs_send_time & 0xFF
        if level is not None and header.audio_level:
            buf[header.audio_level] = (0x80 if level[0] else 0) | (level[1] & 0x7F)
        at = len(buf)
        buf += packet.payload
        if self._pictures is not None and packet.payload:
            self._pictures.rewrite(buf, at)
        if packet.padding_size:
            buf += bytes(packet.padding_size - 1)
            buf.append(packet.padding_size)
        at = header.transport_number
        transport = self.transport if at else None
        number, unsent = 0, None
        if transport is not None:
            number, unsent = transport.take(len(buf), self._new_stream), transport.unsent
            pack_into("!H", buf, at, number)
        data = bytes(buf)
        wire.history[sequence_number % wire.history_size] = data
        if wire.send_now is None:
            return self._send_then(packet, data, wire, ntp, timestamp, unsent, number)
        try:
            wire.send_now(data)
        except ConnectionError:
            if unsent is not None:
                unsent(number)
            return None
        return self._sent(packet, data, wire, ntp, timestamp)

    def _sent(
        self, packet: RtpPacket, data: bytes, wire: seams.SenderWire, ntp: int, timestamp: int
    ) -> Coroutine[Any, Any, None] | None:
        """Account a forwarded packet once sent; a coroutine when its copy is to follow."""
        if timestamp == self._rebase.last_timestamp:
            self._reported = (ntp, timestamp)
        # the sender report pairs the newest packet's times: a late one (a retransmission
        # arriving 100-300 ms after) is counted, but pairs "now" with no older timestamp
        wire.sent(*self._reported, len(packet.payload))
        again = None
        frame_end = packet.marker and self._video and wire.rtx is not None
        if frame_end and self.repeats_frame_ends(time.monotonic()):
            again = self._send_again(data, wire)
        if packet.marker or not self._video:
            self.forwarded += 1
        self._frame_open = self._video and not packet.marker
        return again

    async def _send_then(
        self,
        packet: RtpPacket,
        data: bytes,
        wire: seams.SenderWire,
        ntp: int,
        timestamp: int,
        unsent: Callable[[int], None] | None,
        number: int,
    ) -> None:
        """Send through the awaitable send, then account it as :meth:`_sent` does."""
        try:
            await wire.send_rtp(data)
        except ConnectionError:
            if unsent is not None:
                unsent(number)
            return
        again = self._sent(packet, data, wire, ntp, timestamp)
        if again is not None:
            await again


def forward_rtp(
    receiver: RTCRtpReceiver,
    codecs: Sequence[Any],
    forwards: Mapping[str, ForwardTrack],
    recorded: RecordedStream | None = None,
) -> KeyframeCache | None:
    """Hand every RTP packet the publisher's ``receiver`` gets to the ``forwards`` (read at
    each packet: subscribers come and go), then to the receiver's own handling, once.
    ``codecs``: what the publisher negotiated (its first codec is what it sends; RTX of it is
    unwrapped here, so a retransmission reaches subscribers as the packet it repairs).
    ``recorded``: a simulcast track's layers; the receiver's own handling gets only the
    stream it makes of the best layer (media/layers.py).
    Returns the track's keyframe cache (video, one layer) for its subscribers' ForwardTracks."""
    primary = int(codecs[0].payloadType)
    kind, _, codec = str(codecs[0].mimeType).lower().partition("/")
    keyframes = KeyframeCache(codec) if kind == "video" and recorded is None else None
    layers = recorded.layers if recorded is not None else None
    rtx = next(
        (int(c.payloadType) for c in codecs if is_rtx(c) and c.parameters.get("apt") == primary),
        None,
    )

    def wrap(
        original: Callable[[RtpPacket, int], Awaitable[None]],
    ) -> Callable[[RtpPacket, int], Awaitable[None]]:
        def handle(packet: RtpPacket, arrival_time_ms: int) -> Awaitable[None]:
            # A plain call returning what the DTLS transport awaits (the receiver's own
            # handling): no coroutine of its own per packet.
            # Padding-only packets are forwarded too: each number the publisher uses must
            # reach the subscriber, or its jitter buffer waits for one that never comes.
            if packet.payload or packet.padding_size:
                source: RtpPacket | None = packet
                if packet.payload_type != primary:
                    source = None
                    if packet.payload_type == rtx:
                        if layers is not None:
                            layers.learn_rtx(packet)
                        if len(packet.payload) > 2:
                            ssrc = seams.rtx_ssrcs(receiver).get(packet.ssrc)
                            if ssrc is not None:
                                source = unwrap_rtx(packet, payload_type=primary, ssrc=ssrc)
                if source is not None:
                    ntp = ntp_now()
                    if recorded is not None:
                        return _forward_layer(
                            recorded, source, ntp, arrival_time_ms, forwards, original
                        )
                    if keyframes is not None:
                        keyframes.add(source, ntp)
                    if forwards:
                        abs_send_time = (ntp >> 14) & 0x00FFFFFF
                        waiting: list[Coroutine[Any, Any, None]] = []
                        for forward in list(forwards.values()):
                            rest = forward.forward_now(source, ntp, abs_send_time)
                            if rest is not None:
                                waiting.append(rest)
                        if waiting:
                            return _after(waiting, original(packet, arrival_time_ms))
            return original(packet, arrival_time_ms)

        return handle

    seams.wrap_rtp_handler(receiver, wrap)
    return keyframes


async def _after(waiting: list[Coroutine[Any, Any, None]], then: Awaitable[None]) -> None:
    """Finish the forwards that had to wait, in order, then the receiver's own handling."""
    for rest in waiting:
        await rest
    await then


async def _forward_layer(
    recorded: RecordedStream,
    packet: RtpPacket,
    ntp: int,
    arrival_time_ms: int,
    forwards: Mapping[str, ForwardTrack],
    original: Callable[[RtpPacket, int], Awaitable[None]],
) -> None:
    """One packet of a simulcast track: to the subscribers sending its layer, and to the
    receiver's own path when it is of the layer being recorded."""
    layer = recorded.layers.of(packet)
    if layer is None:
        return  # a layer not yet identified (its RID not seen): no place for it
    now = time.monotonic()
    layer.note(packet, now)
    layer.keyframes.add(packet, ntp)
    if forwards:
        abs_send_time = (ntp >> 14) & 0x00FFFFFF
        for forward in list(forwards.values()):
            rest = forward.forward_now(packet, ntp, abs_send_time)
            if rest is not None:
                await rest
    fed = recorded.feed(packet, layer, ntp, now)
    if fed is not None:
        await original(fed, arrival_time_ms)
    else:
        await recorded.repair(packet, layer)
