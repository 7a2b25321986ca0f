"""Packet-level forwarding: a subscriber receives the publisher's own RTP packets, rewritten
(SSRC, payload type, sequence number, timestamp) and re-protected by the relay; its NACKs
are answered from the relay's history; it starts on a keyframe the relay asked for."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from struct import pack
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, clock
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtpPacket, is_rtcp

from media import seams
from media.congestion import TransportFeedback, pack_feedback
from media.encoded import KeyframeRequest, tap_receiver
from media.forward import (
    ForwardTrack,
    KeyframeCache,
    PictureIds,
    forward_rtp,
    h264_starts_keyframe,
    ntp_now,
    vp8_picture_fields,
    vp8_starts_keyframe,
)
from media.room import Relay
from media.transport import announce_addresses, create_peer_connection


class NoiseTrack(AudioStreamTrack):
    """aiortc's test audio track, but noise instead of silence: every Opus packet differs."""

    async def recv(self) -> Any:
        frame = await super().recv()
        assert isinstance(frame, av.AudioFrame)
        noise = np.random.default_rng().integers(-3000, 3000, frame.samples).astype(np.int16)
        frame.planes[0].update(noise.tobytes())
        return frame


@dataclass(frozen=True)
class Seen:
    ssrc: int
    payload_type: int
    sequence_number: int
    timestamp: int
    payload: bytes


def _seen(packet: RtpPacket) -> Seen:
    return Seen(
        packet.ssrc,
        packet.payload_type,
        packet.sequence_number,
        packet.timestamp,
        bytes(packet.payload),
    )


async def _until(predicate: Callable[[], Any], within: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.05)


def _payload_type(sdp: str, name: str) -> int:
    found = re.search(rf"a=rtpmap:(\d+) {name}/", sdp)
    assert found, name
    return int(found.group(1))


def _rtx_payload_type(sdp: str, apt: int) -> int:
    found = re.search(rf"a=fmtp:(\d+) apt={apt}\b", sdp)
    assert found, apt
    return int(found.group(1))


async def test_subscriber_gets_the_publishers_packets_rewritten_and_nacks_are_answered() -> None:
    announce_addresses(["127.0.0.1"])
    relay = Relay()
    room = relay.room("b" * 32)

    # the publisher: what it puts on the wire, and the keyframe requests and NACKs it gets
    publisher = create_peer_connection()
    video = publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
    publisher.addTransceiver(NoiseTrack(), direction="sendonly")
    published: dict[bytes, Seen] = {}
    keyframe_requests: list[float] = []
    nacked_upstream: list[int] = []
    wire = video.sender.transport
    send_rtp = wire._send_rtp

    async def spy_send(data: bytes) -> None:
        if not is_rtcp(data):
            packet = RtpPacket.parse(data)
            published[bytes(packet.payload)] = _seen(packet)
        await send_rtp(data)

    wire._send_rtp = spy_send  # type: ignore[method-assign]
    send_keyframe = video.sender._send_keyframe

    def spy_keyframe() -> None:  # a publisher that honours the relay's requests
        keyframe_requests.append(1.0)
        send_keyframe()

    video.sender._send_keyframe = spy_keyframe  # type: ignore[method-assign]
    handle_rtcp = video.sender._handle_rtcp_packet

    async def spy_rtcp(packet: Any) -> None:
        if seams.is_nack(packet):
            nacked_upstream.extend(packet.lost)
        await handle_rtcp(packet)

    video.sender._handle_rtcp_packet = spy_rtcp  # type: ignore[method-assign]
    await publisher.setLocalDescription(await publisher.createOffer())
    answer = await room.publish("judge1", publisher.localDescription.sdp)
    await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await _until(lambda: len(published) > 30)  # the publisher is well under way
    assert keyframe_requests == []

    # the subscriber: every RTP packet as it arrives (before its own jitter buffer)
    subscriber: RTCPeerConnection = create_peer_connection()
    received: dict[str, list[Seen]] = {"video": [], "audio": []}
    receivers: dict[str, Any] = {}

    @subscriber.on("track")
    def on_track(track: Any) -> None:
        receiver = next(r for r in subscriber.getReceivers() if r.track is track)
        tap_receiver(receiver)  # no decoder in this test
        receivers[track.kind] = receiver
        original = receiver._handle_rtp_packet

        async def spy(packet: RtpPacket, arrival_time_ms: int) -> None:
            received[track.kind].append(_seen(packet))
            await original(packet, arrival_time_ms)

        receiver._handle_rtp_packet = spy  # type: ignore[method-assign]

    offer = await room.subscribe("petitioner1")
    assert offer is not None
    await subscriber.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
    await subscriber.setLocalDescription(await subscriber.createAnswer())
    await room.answer("petitioner1", subscriber.localDescription.sdp)
    await _until(lambda: len(received["video"]) >= 60 and len(received["audio"]) >= 50)
    # every UDP socket of the relay's connections reads all queued datagrams per wake-up
    relay_connections = [*room.publishers.values(), *room.subscribers.values()]
    sockets = [t for pc in relay_connections for t in seams.udp_transports(pc)]
    assert sockets and all(seams.is_draining(t) for t in sockets)
    assert keyframe_requests, "the relay asked the publisher for a keyframe for the subscriber"

    vp8 = _payload_type(offer.sdp, "VP8")
    rtx = _rtx_payload_type(offer.sdp, vp8)
    opus = _payload_type(offer.sdp, "opus")
    for kind, payload_type in (("video", vp8), ("audio", opus)):
        packets = [p for p in received[kind] if p.payload_type != rtx]
        # byte-identical payloads: nothing was depacketized or repacketized on the way
        sources = [published.get(p.payload) for p in packets]
        assert None not in sources, f"{kind}: a payload the publisher never sent"
        assert {p.payload_type for p in packets} == {payload_type}
        ssrcs = {p.ssrc for p in packets}
        assert len(ssrcs) == 1 and not ssrcs & {s.ssrc for s in sources if s}
        # one sequence-number offset and one timestamp offset for the whole stream
        offsets = {
            (
                (p.sequence_number - s.sequence_number) & 0xFFFF,
                (p.timestamp - s.timestamp) & 0xFFFFFFFF,
            )
            for p, s in zip(packets, sources, strict=True)
            if s is not None
        }
        assert len(offsets) == 1, f"{kind}: {len(offsets)} different offsets"
        first = packets[0].sequence_number
        numbers = {(p.sequence_number - first) & 0xFFFF for p in packets}
        assert numbers == set(range(len(numbers))), f"{kind}: sequence numbers not continuous"
    assert vp8_starts_keyframe(received["video"][0].payload)  # gated on a keyframe

    # the subscriber reports a packet lost: the relay retransmits it from its own history
    # (as RTX), without asking the publisher
    lost = received["video"][-1]
    source = published[lost.payload]
    await receivers["video"]._send_rtcp_nack(lost.ssrc, [lost.sequence_number])

    def retransmitted() -> bool:
        return any(
            p.payload_type == rtx
            and int.from_bytes(p.payload[:2], "big") == lost.sequence_number
            and p.payload[2:] == lost.payload
            for p in received["video"]
        )

    await _until(retransmitted, within=10)
    assert source.sequence_number not in nacked_upstream

    await room.close()
    await publisher.close()
    await subscriber.close()


def _negotiated(*uris: str) -> HeaderExtensionsMap:
    """A header extension map as a sender configures it from what was negotiated."""
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=i, uri=uri) for i, uri in enumerate(uris, 1)
            ]
        )
    )
    return extensions


MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


class FakeWire:
    """What a started sender offers a forwarder, recording what is sent."""

    def __init__(
        self,
        extensions: HeaderExtensionsMap | None = None,
        rtx: tuple[int, int] | None = None,
        next_rtx_number: Callable[[], int] = lambda: 0,
    ) -> None:
        self.sent: list[RtpPacket] = []
        self.reports: list[tuple[int, int, int]] = []
        extensions = extensions or _negotiated(MID, ABS_SEND_TIME)
        self.extensions = extensions
        self.wire = seams.SenderWire(
            ssrc=0x1234,
            extensions=extensions,
            history=seams.SentHistory(extensions),
            history_size=128,
            send_rtp=self._send,
            sent=lambda ntp, ts, size: self.reports.append((ntp, ts, size)),
            rtx=rtx,
            next_rtx_number=next_rtx_number,
        )

    async def _send(self, data: bytes) -> None:
        self.sent.append(RtpPacket.parse(data, self.extensions))


def _vp8(keyframe: bool, start: bool = True) -> bytes:
    # payload descriptor: X=1, S, PID 0; I=1 with a 15-bit picture id; then the frame tag
    return bytes([0x90 if start else 0x80, 0x80, 0x80, 0x01, 0x00 if keyframe else 0x01, 0, 0])


def _packet(ssrc: int, seq: int, ts: int, payload: bytes, marker: int = 0) -> RtpPacket:
    return RtpPacket(
        payload_type=96,
        marker=marker,
        sequence_number=seq & 0xFFFF,
        timestamp=ts,
        ssrc=ssrc,
        payload=payload,
    )


SECOND = 1 << 32  # one second in NTP units


def _asks(into: list[int], mark: int) -> KeyframeRequest:
    """A keyframe request that notes ``mark`` (or the SSRC asked for)."""

    def request(ssrc: int | None = None) -> None:
        into.append(mark if ssrc is None else ssrc)

    return request


def _never_asked(ssrc: int | None = None) -> None:
    pytest.fail("audio needs no keyframe")


async def test_video_starts_on_a_keyframe_and_numbering_continues_across_a_new_source() -> None:
    requests: list[int] = []
    track = ForwardTrack("video", "vp8", 90000, _asks(requests, 1))
    fake = FakeWire()
    await track.forward(_packet(1, 10, 0, _vp8(True)), 0, 0)
    assert fake.sent == [] and requests == []  # not sending yet: nothing goes out
    await track.start_sending(fake.wire, 100, "0")
    assert requests == [1]  # a subscriber that starts asks for a keyframe

    await track.forward(_packet(1, 65534, 3000, _vp8(False)), SECOND, 0)
    assert fake.sent == [] and len(requests) == 2  # a delta frame: gated, asks again
    for i in range(4):  # a keyframe whose numbers wrap around
        await track.forward(_packet(1, 65535 + i, 6000, _vp8(True, i == 0), i == 3), SECOND, 0)
    await track.forward(_packet(1, 65534, 3000, _vp8(False)), SECOND, 0)  # late: before start
    await track.forward(_packet(1, 4, 9000, _vp8(False), 1), SECOND, 0)  # one lost before it
    await track.forward(_packet(1, 3, 9000, _vp8(False)), SECOND, 0)  # ... retransmitted
    # the publisher restarts with a new SSRC: a delta frame waits, its keyframe goes on
    await track.forward(_packet(2, 700, 123, _vp8(False)), 2 * SECOND, 0)
    await track.forward(_packet(2, 701, 3123, _vp8(True), 1), 3 * SECOND, 0)

    out = [(p.sequence_number, p.timestamp) for p in fake.sent]
    first, ts = out[0]
    assert [(s - first) & 0xFFFF for s, _ in out] == [0, 1, 2, 3, 5, 4, 6]
    assert {p.ssrc for p in fake.sent} == {0x1234} and {p.payload_type for p in fake.sent} == {100}
    assert [(t - ts) & 0xFFFFFFFF for _, t in out] == [0, 0, 0, 0, 3000, 3000, 3000 + 2 * 90000]
    assert {fake.wire.history.get(s % 128).extensions.mid for s, _ in out} == {"0"}
    assert track.forwarded == 3  # frames: the marker packets
    assert len(fake.reports) == 7 and fake.reports[-1][1] == out[-1][1]
    assert all(fake.wire.history.get(s % 128).sequence_number == s for s, _ in out)


@pytest.mark.parametrize(
    "uris",
    [
        (MID, ABS_SEND_TIME, AUDIO_LEVEL),
        (AUDIO_LEVEL, MID),  # no abs-send-time negotiated
        (ABS_SEND_TIME,),  # no MID (no BUNDLE)
        (),
    ],
)
async def test_a_header_written_in_place_is_what_aiortc_would_serialize(
    uris: tuple[str, ...],
) -> None:
    """The forwarder writes each packet's header into a template instead of building and
    serializing an RtpPacket; the bytes must be aiortc's own, whatever was negotiated."""
    fake = FakeWire(_negotiated(*uris))
    track = ForwardTrack("audio", "opus", 48000, _asks([], 0))
    await track.start_sending(fake.wire, 111, "1")
    cases: list[tuple[bytes, int, int, tuple[bool, int] | None, int]] = [
        (b"\x01\x02\x03", 0, 0x123456, (True, 0x55), 0),
        (b"\x04" * 100, 1, 0xFFFFFF, (False, 0x7F), 0),
        (b"\x05", 0, 0, None, 0),  # no audio level from the publisher
        (b"", 1, 0x000001, (True, 0), 37),  # padding only
    ]
    sent: list[bytes] = []

    async def keep(data: bytes) -> None:
        sent.append(data)

    fake.wire = dataclasses.replace(fake.wire, send_rtp=keep)
    track._wire = fake.wire  # the same wire, sending into ``sent``
    for number, (payload, marker, abs_send_time, level, padding) in enumerate(cases):
        packet = _packet(9, 300 + number, 960 * number, payload, marker)
        packet.extensions.audio_level = level
        packet.padding_size = padding
        await track.forward(packet, SECOND, abs_send_time)
    assert len(sent) == len(cases)
    for data, (payload, marker, abs_send_time, level, padding) in zip(sent, cases, strict=True):
        parsed = RtpPacket.parse(data, fake.extensions)
        expected = RtpPacket(
            payload_type=111,
            marker=marker,
            sequence_number=parsed.sequence_number,
            timestamp=parsed.timestamp,
            ssrc=0x1234,
            payload=payload,
        )
        expected.extensions.mid = "1"
        expected.extensions.abs_send_time = abs_send_time
        expected.extensions.audio_level = level
        expected.padding_size = padding
        serialized = expected.serialize(fake.extensions)
        # padding bytes are random in aiortc's serializer: compare all but them
        assert data[: len(data) - padding] == serialized[: len(serialized) - padding]
        assert len(data) == len(serialized) and (not padding or data[-1] == padding)
        history = fake.wire.history.get(parsed.sequence_number % 128)
        assert history.sequence_number == parsed.sequence_number  # NACKs can be answered


async def test_audio_is_forwarded_at_once() -> None:
    track = ForwardTrack("audio", "opus", 48000, _never_asked)
    fake = FakeWire()
    await track.start_sending(fake.wire, 111, "1")
    await track.forward(_packet(9, 300, 960, b"\x01\x02"), SECOND, 0)
    await track.forward(_packet(9, 301, 1920, b"\x03\x04"), SECOND, 0)
    assert [p.payload for p in fake.sent] == [b"\x01\x02", b"\x03\x04"]
    assert track.forwarded == 2


@pytest.mark.parametrize(
    ("payload", "keyframe"),
    [
        (bytes([0x65, 0x88]), True),  # IDR slice
        (bytes([0x41, 0x9A]), False),  # non-IDR slice
        (bytes([0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE]), True),  # STAP-A SPS+PPS
        (bytes([0x7C, 0x85, 0x88]), True),  # FU-A, start of an IDR
        (bytes([0x7C, 0x05, 0x88]), False),  # FU-A, middle of an IDR
        (bytes([0x7C, 0x81, 0x9A]), False),  # FU-A, start of a non-IDR
    ],
)
def test_h264_keyframe_starts_are_recognised(payload: bytes, keyframe: bool) -> None:
    assert h264_starts_keyframe(payload) is keyframe


def test_vp8_keyframe_starts_are_recognised() -> None:
    assert vp8_starts_keyframe(_vp8(True))
    assert not vp8_starts_keyframe(_vp8(False))
    assert not vp8_starts_keyframe(_vp8(True, start=False))  # a later packet of a keyframe
    assert vp8_starts_keyframe(bytes([0x10, 0x00, 0x00]))  # no extension byte


def test_the_relays_clock_for_aiortc_agrees_with_aiortcs_own() -> None:
    Relay()  # installs it
    assert clock.current_ms is seams.fast_current_ms
    by_datetime = int((clock.current_datetime() - clock.NTP_EPOCH).total_seconds() * 1000)
    assert abs(clock.current_ms() - by_datetime) < 50


def test_ntp_now_agrees_with_aiortcs_clock() -> None:
    assert abs(ntp_now() - clock.current_ntp_time()) < SECOND // 10


async def test_a_subscriber_starts_with_the_latest_keyframe_while_it_is_recent() -> None:
    def keyframe_then_delta(cache: KeyframeCache, at: int) -> KeyframeCache:
        cache.add(_packet(1, 9, 0, _vp8(False), 1), at)  # before any keyframe: not kept
        for i in range(3):
            cache.add(_packet(1, 10 + i, 3000, _vp8(True, i == 0), i == 2), at)
        cache.add(_packet(1, 13, 6000, _vp8(False), 1), at + SECOND // 30)
        return cache

    requests: list[int] = []
    now = ntp_now()
    old = keyframe_then_delta(KeyframeCache("vp8", max_age=0.5), now - SECOND)
    track = ForwardTrack("video", "vp8", 90000, _asks(requests, 1), old)
    fake = FakeWire()
    await track.start_sending(fake.wire, 100, "0")
    assert fake.sent == [] and requests == [1]  # a second old: asks for a new one

    recent = keyframe_then_delta(KeyframeCache("vp8", max_age=0.5), now)
    fresh = ForwardTrack("video", "vp8", 90000, _asks(requests, 2), recent)
    later = FakeWire()
    await fresh.start_sending(later.wire, 100, "0")
    assert [p.payload for p in later.sent] == [p.payload for p in recent.packets]
    assert len(later.sent) == 4 and requests == [1]  # no request: it had a keyframe
    first = later.sent[0].sequence_number
    assert [(p.sequence_number - first) & 0xFFFF for p in later.sent] == [0, 1, 2, 3]


async def test_padding_keeps_its_sequence_number() -> None:
    """A padding-only packet (bandwidth probing) takes a number in the publisher's stream:
    dropping it would leave the subscriber waiting for that number."""
    track = ForwardTrack("audio", "opus", 48000, _asks([], 0))
    fake = FakeWire()
    await track.start_sending(fake.wire, 111, "1")
    padding = _packet(9, 301, 960, b"")
    padding.padding_size = 200
    for packet in (_packet(9, 300, 960, b"\x01"), padding, _packet(9, 302, 1920, b"\x02")):
        await track.forward(packet, SECOND, 0)
    first = fake.sent[0].sequence_number
    assert [(p.sequence_number - first) & 0xFFFF for p in fake.sent] == [0, 1, 2]
    assert [p.padding_size for p in fake.sent] == [0, 200, 0]


def test_the_cached_h264_keyframe_keeps_its_sps() -> None:
    cache = KeyframeCache("h264")
    sps_pps = bytes([0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE])
    idr_start, idr_end = bytes([0x7C, 0x85, 0x88]), bytes([0x7C, 0x45, 0x88])
    for seq, payload in enumerate((sps_pps, idr_start, idr_end)):
        cache.add(_packet(1, seq, 3000, payload), SECOND)
    assert [p.payload for p in cache.recent(SECOND)] == [sps_pps, idr_start, idr_end]


async def _sending_video_with_rtx(
    first_rtx: int,
) -> tuple[TransportFeedback, FakeWire, ForwardTrack]:
    """A VP8 copy sending on a wire with transport-cc and RTX (numbered from ``first_rtx``)."""
    transport = TransportFeedback()
    numbers = iter(range(first_rtx, first_rtx + 100))
    fake = FakeWire(
        _negotiated(MID, ABS_SEND_TIME, seams.TRANSPORT_CC_URI),
        rtx=(0xABCD, 97),
        next_rtx_number=lambda: next(numbers),
    )
    video = ForwardTrack("video", "vp8", 90000, lambda ssrc=None: None, transport=transport)
    await video.start_sending(fake.wire, 96, "1")
    return transport, fake, video


async def test_packets_and_padding_to_a_subscriber_carry_one_transport_wide_sequence() -> None:
    transport, fake, video = await _sending_video_with_rtx(first_rtx=1)
    await video.forward(_packet(7, 1, 0, _vp8(True), marker=1), ntp_now(), 0)
    await video.forward(_packet(7, 2, 3000, _vp8(False), marker=1), ntp_now(), 0)
    video.pad(1_000_000)
    await _until(lambda: len(fake.sent) >= 4)
    video.pad(0)
    await video.forward(_packet(7, 3, 6000, _vp8(False), marker=1), ntp_now(), 0)
    got = [p.extensions.transport_sequence_number for p in fake.sent]
    assert got == list(range(len(got)))  # media and padding: one sequence, no gap
    assert {p.payload_type for p in fake.sent} == {96, 97}

    # a NACK: each number answered once per RESEND_GAP_S, within the budget
    transport.estimate_bps = 800_000
    assert video._retransmittable([1, 2, 3], 10.0) == [1, 2, 3]
    assert video._retransmittable([2, 4], 10.05) == [4]
    assert video._retransmittable([2, 4], 10.05 + ForwardTrack.RESEND_GAP_S) == [2, 4]
    # the round trip known (a receiver report): asked again after a browser's 100 ms
    video.rtt = (0.01, 10.3)
    assert video._retransmittable([2], 10.3) == [2]
    assert video._retransmittable([2], 10.35) == []  # the retransmission may be on its way
    assert video._retransmittable([2], 10.4) == [2]
    video.rtt = (0.4, 10.5)  # a link with a standing queue: never sooner than RESEND_GAP_S
    assert video._retransmittable([4], 10.5) == [4]
    assert video._retransmittable([4], 10.6) == []
    assert video._retransmittable([4], 10.5 + ForwardTrack.RESEND_GAP_S) == [4]


async def test_losses_of_a_track_just_added_to_a_connection_are_not_the_links() -> None:
    """A track added by renegotiation: the browser drops its first packets until it has set
    the stream up, and its transport-cc feedback reports them lost. Counted, they brought a
    judge's estimate down to 38 kbit/s (and 网络较差) each time the petitioner rejoined."""
    now = [0.0]
    transport = TransportFeedback(clock=lambda: now[0])
    fake = FakeWire(_negotiated(MID, ABS_SEND_TIME, seams.TRANSPORT_CC_URI))
    flowing = ForwardTrack("audio", "opus", 48000, _never_asked, transport=transport)
    await flowing.start_sending(fake.wire, 111, "0")
    await flowing.forward(_packet(9, 1, 960, b"\x01"), SECOND, 0)
    await transport.feedback(pack_feedback(0, [0.0]))
    now[0] = 5.0  # the connection's first seconds are over
    flowing._settled()  # as its timer does START_GRACE_S after it began
    added = ForwardTrack("audio", "opus", 48000, _never_asked, transport=transport)
    await added.start_sending(fake.wire, 111, "1")

    async def both_lose_the_added(seq: int) -> None:
        first = len(fake.sent)
        await flowing.forward(_packet(9, seq, 960 * seq, b"\x01"), SECOND, 0)
        await added.forward(_packet(10, seq, 960 * seq, b"\x02"), SECOND, 0)
        number = fake.sent[first].extensions.transport_sequence_number
        assert number is not None
        arrivals = [1.0 * seq, None]  # the flowing track's arrives, the added one's not
        await transport.feedback(pack_feedback(number, arrivals))

    for seq in range(2, 12):
        await both_lose_the_added(seq)
    assert transport.loss == 0
    added._settled()
    for seq in range(12, 22):
        await both_lose_the_added(seq)
    assert transport.loss == pytest.approx(10 / 30)  # later losses are the link's again


async def test_the_keyframe_a_source_began_with_is_resent_outside_the_budget() -> None:
    """On a link just found too thin, the budget refused the retransmissions of the lower
    layer's first keyframe, and the petitioner's picture stayed frozen for 3 s."""
    transport = TransportFeedback()
    fake = FakeWire(_negotiated(MID, ABS_SEND_TIME, seams.TRANSPORT_CC_URI))
    video = ForwardTrack("video", "vp8", 90000, lambda ssrc=None: None, transport=transport)
    await video.start_sending(fake.wire, 96, "1")
    await video.forward(_packet(7, 1, 0, _vp8(True)), ntp_now(), 0)  # a keyframe: 3 packets
    await video.forward(_packet(7, 2, 0, _vp8(True, start=False)), ntp_now(), 0)
    await video.forward(_packet(7, 3, 0, _vp8(True, start=False), marker=1), ntp_now(), 0)
    await video.forward(_packet(7, 4, 3000, _vp8(False), marker=1), ntp_now(), 0)
    await video.forward(_packet(7, 5, 6000, _vp8(False), marker=1), ntp_now(), 0)
    key, deltas = fake.sent[:3], fake.sent[3:]
    transport.estimate_bps = 30_000  # a budget of one retransmission now and then ...
    assert transport.may_retransmit(10.0)  # ... spent
    nack = [p.sequence_number for p in fake.sent]
    assert video._retransmittable(nack, 10.0) == [p.sequence_number for p in key]
    assert transport.resends_refused == len(deltas)
    assert video._retransmittable(nack, 10.05) == []  # asked again at once: not yet
    await video.forward(_packet(8, 1, 0, _vp8(False)), ntp_now(), 0)  # a new source, no key
    assert video._retransmittable(nack, 10.5) == [p.sequence_number for p in key]


async def test_a_late_packet_of_the_first_keyframe_keeps_the_rest_of_it_outside_the_budget() -> (
    None
):
    """A middle packet of the keyframe a source began with is lost and repaired after the
    keyframe's last packet was sent: the keyframe's later packets stay outside the budget."""
    transport = TransportFeedback()
    fake = FakeWire(_negotiated(MID, ABS_SEND_TIME, seams.TRANSPORT_CC_URI))
    video = ForwardTrack("video", "vp8", 90000, lambda ssrc=None: None, transport=transport)
    await video.start_sending(fake.wire, 96, "1")
    await video.forward(_packet(7, 1, 0, _vp8(True)), ntp_now(), 0)
    for seq in (3, 4):
        await video.forward(_packet(7, seq, 0, _vp8(True, start=False)), ntp_now(), 0)
    await video.forward(_packet(7, 5, 0, _vp8(True, start=False), marker=1), ntp_now(), 0)
    await video.forward(_packet(7, 2, 0, _vp8(True, start=False)), ntp_now(), 0)  # repaired
    key = sorted(p.sequence_number for p in fake.sent)
    transport.estimate_bps = 30_000
    assert transport.may_retransmit(10.0)  # the budget spent
    assert video._retransmittable(key, 10.0) == key


async def test_a_sender_report_pairs_the_newest_packets_times() -> None:
    """A retransmission forwarded late does not pair the time it arrived with its older
    RTP timestamp in the sender report (the subscriber's lip sync would skew)."""
    fake = FakeWire(_negotiated(MID))
    audio = ForwardTrack("audio", "opus", 48000, _never_asked)
    await audio.start_sending(fake.wire, 111, "0")
    first = ntp_now()
    await audio.forward(_packet(7, 10, 960, b"a"), first, 0)
    await audio.forward(_packet(7, 12, 2880, b"a"), first + 1000, 0)
    newest = fake.reports[-1]
    await audio.forward(_packet(7, 11, 1920, b"a"), first + 2000, 0)  # late
    assert fake.reports[-1][:2] == newest[:2] and len(fake.reports) == 3


async def test_on_a_lossy_link_each_video_frames_last_packet_is_sent_again_as_rtx() -> None:
    """A browser learns of a lost last packet only when the next frame begins, and gave up
    frames repaired that late: at 5 % loss the petitioner's received 561-574 of 594."""
    transport, fake, video = await _sending_video_with_rtx(first_rtx=500)

    async def frame(seq: int, ts: int, key: bool = False) -> list[RtpPacket]:
        first = len(fake.sent)
        await video.forward(_packet(7, seq, ts, _vp8(key)), ntp_now(), 0)
        await video.forward(_packet(7, seq + 1, ts, _vp8(key, start=False), marker=1), ntp_now(), 0)
        return fake.sent[first:]

    assert len(await frame(1, 0, key=True)) == 2  # no loss reported: each packet once
    await video.estimated(800_000, 0.05)  # its transport-cc feedback: 5 % lost
    sent = await frame(3, 3000)
    assert [p.payload_type for p in sent] == [96, 96, 97]
    last, again = sent[1], sent[2]
    assert last.marker == 1 and again.marker == 1
    assert again.ssrc == 0xABCD and again.sequence_number == 500
    assert again.payload == pack("!H", last.sequence_number) + last.payload
    assert again.timestamp == last.timestamp
    numbers_sent = [p.extensions.transport_sequence_number for p in fake.sent]
    assert numbers_sent == list(range(len(fake.sent)))  # the copy has a number of its own
    assert video.frame_ends_repeated == 1

    # the retransmission budget is the NACKs': a budget that refuses them (30 kbit/s) does
    # not hold the copies back, and the copies do not use it up
    await video.estimated(30_000, 0.05)
    for seq in range(100, 110, 2):
        assert len(await frame(seq, seq * 3000)) == 3
    assert transport.resends_refused == 0

    await video.estimated(800_000, 0.05)
    transport.queued = True  # a queue stands: the link overflows, nothing more to carry
    assert len(await frame(120, 360_000)) == 2
    transport.queued = False
    await video.estimated(800_000, 0.0)  # the loss is over
    assert len(await frame(122, 366_000)) == 2

    audio = ForwardTrack("audio", "opus", 48000, _never_asked, transport=transport)
    audio_wire = FakeWire(_negotiated(MID), rtx=(0xBCDE, 98))
    await audio.start_sending(audio_wire.wire, 111, "0")
    await audio.estimated(800_000, 0.05)
    await audio.forward(_packet(9, 1, 960, b"\x01", marker=1), ntp_now(), 0)
    assert len(audio_wire.sent) == 1  # audio: never


async def test_a_wire_that_sends_at_once_takes_each_packet_without_awaiting() -> None:
    """Where the wire can send as a plain call (seams.rtp_send_now), forward_now sends and
    accounts the packet before it returns; a refused send gives its transport-wide number
    back as never sent; only a frame end to be sent again leaves something to await."""
    transport, fake, video = await _sending_video_with_rtx(first_rtx=1)
    at_once: list[RtpPacket] = []
    refuse = False

    def send_now(data: bytes) -> None:
        if refuse:
            raise ConnectionError("closed")
        at_once.append(RtpPacket.parse(data, fake.extensions))

    video._wire = fake.wire = dataclasses.replace(fake.wire, send_now=send_now)
    assert video.forward_now(_packet(7, 1, 0, _vp8(True), marker=1), ntp_now(), 0) is None
    assert [p.payload for p in at_once] == [_vp8(True)] and fake.sent == []
    assert len(fake.reports) == 1 and video.forwarded == 1
    refuse = True
    assert video.forward_now(_packet(7, 2, 3000, _vp8(False), marker=1), ntp_now(), 0) is None
    assert len(fake.reports) == 1 and video.forwarded == 1  # not sent: not accounted
    refuse = False
    video.loss = (0.05, time.monotonic())  # a lossy link: frame ends go twice
    rest = video.forward_now(_packet(7, 3, 6000, _vp8(False), marker=1), ntp_now(), 0)
    assert rest is not None
    await rest
    assert [p.payload_type for p in at_once] == [96, 96]
    assert [p.payload_type for p in fake.sent] == [97]  # the copy, through the awaited send
    numbers = [p.extensions.transport_sequence_number for p in [*at_once, *fake.sent]]
    assert numbers == [0, 2, 3]
    assert transport._numbers[1] == -1  # the refused packet's number: never sent, no loss


async def test_a_packet_reaches_every_subscriber_before_a_send_that_waits_is_finished() -> None:
    """The publisher's receiver hands each packet to every subscriber's copy as a plain
    call; a copy whose send has to wait is finished afterwards, then the receiver's own
    handling runs, so one slow subscriber holds back none of the others."""
    handled: list[int] = []

    class Receiver:  # the publisher's receiver, as forward_rtp wraps it
        async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
            handled.append(packet.sequence_number)

    receiver = Receiver()
    slow, fast = FakeWire(), FakeWire()
    gate = asyncio.Event()

    async def send_when_let(data: bytes) -> None:
        await gate.wait()
        slow.sent.append(RtpPacket.parse(data, slow.extensions))

    slow.wire = dataclasses.replace(slow.wire, send_rtp=send_when_let)  # awaited only
    fast.wire = dataclasses.replace(
        fast.wire, send_now=lambda data: fast.sent.append(RtpPacket.parse(data, fast.extensions))
    )
    copies = {
        "slow": ForwardTrack("audio", "opus", 48000, _never_asked),
        "fast": ForwardTrack("audio", "opus", 48000, _never_asked),
    }
    await copies["slow"].start_sending(slow.wire, 111, "0")
    await copies["fast"].start_sending(fast.wire, 111, "0")
    opus = RTCRtpCodecParameters(
        mimeType="audio/opus",
        clockRate=48000,
        channels=2,
        payloadType=96,  # as _packet()
    )
    forward_rtp(receiver, [opus], copies)  # type: ignore[arg-type]

    rest = receiver._handle_rtp_packet(_packet(9, 5, 960, b"\x01"), 0)
    assert [p.payload for p in fast.sent] == [b"\x01"]  # sent before anything is awaited
    assert slow.sent == [] and handled == []
    finishing = asyncio.ensure_future(rest)
    assert not finishing.done()
    gate.set()
    await finishing
    assert [p.payload for p in slow.sent] == [b"\x01"] and handled == [5]

    # nothing waits: the receiver's own handling is all that is left to await
    slow.wire = dataclasses.replace(slow.wire, send_now=fast.wire.send_now)
    copies["slow"]._wire = slow.wire
    await receiver._handle_rtp_packet(_packet(9, 6, 1920, b"\x02"), 0)
    assert [p.payload for p in fast.sent] == [b"\x01", b"\x02", b"\x02"] and handled == [5, 6]


def test_a_keyframe_whose_start_comes_late_is_cached_whole_or_not_at_all() -> None:
    """The keyframe's first packet is lost and repaired after the rest: the cache keeps the
    keyframe whole (its start and what followed it), and when some of what followed passed
    uncached, keeps nothing a new subscriber would replay as a broken picture."""
    now = ntp_now()
    cache = KeyframeCache("vp8")
    cache.add(_packet(7, 10, 0, _vp8(True)), now)  # an earlier keyframe: caching
    for seq in (12, 13):
        cache.add(_packet(7, seq, 3000, _vp8(True, start=False)), now)
    cache.add(_packet(7, 11, 3000, _vp8(True)), now)  # the new keyframe's start, late
    assert [p.sequence_number for p in cache.recent(now)] == [11, 12, 13]

    empty = KeyframeCache("vp8")
    for seq in (12, 13):  # nothing cached: these pass uncached
        empty.add(_packet(7, seq, 3000, _vp8(True, start=False)), now)
    empty.add(_packet(7, 11, 3000, _vp8(True)), now)
    assert empty.recent(now) == []


async def test_a_subscriber_does_not_start_on_a_keyframe_whose_start_came_late() -> None:
    """Waiting for a keyframe, the forwarder dropped its later packets; their start then
    arrives as a retransmission: starting there would give the subscriber a broken picture
    it cannot repair (those packets are not in its history), so it waits for the next."""
    asked: list[int] = []
    fake = FakeWire(_negotiated(MID))
    video = ForwardTrack("video", "vp8", 90000, _asks(asked, 1))
    await video.start_sending(fake.wire, 96, "1")
    asked.clear()
    for seq in (12, 13):
        await video.forward(_packet(7, seq, 0, _vp8(True, start=False)), ntp_now(), 0)
    await video.forward(_packet(7, 11, 0, _vp8(True)), ntp_now(), 0)  # the start, late
    assert fake.sent == [] and asked
    await video.forward(_packet(7, 20, 3000, _vp8(True)), ntp_now(), 0)  # the next keyframe
    assert [p.sequence_number - fake.sent[0].sequence_number for p in fake.sent] == [0]


def test_a_vp8_descriptor_cut_short_is_left_alone() -> None:
    """A malformed packet whose 15-bit picture ID is cut short raises nothing (on aiortc's
    own receive path an exception would close the publisher's connection)."""
    assert vp8_picture_fields(bytes([0x80, 0x80, 0x81])) == (0, 0, -1)
    buf = bytearray(b"header" + bytes([0x80, 0x80, 0x81]))
    PictureIds().rewrite(buf, 6)
    assert buf == bytearray(b"header" + bytes([0x80, 0x80, 0x81]))
