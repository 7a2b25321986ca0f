"""Bandwidth feedback: publishers are told what their subscribers' browsers report they can
receive (REMB), never what aiortc's own delay-based estimator guesses; with nobody reporting,
the relay's ceiling. Opus in-band FEC is asked of publishers."""

from __future__ import annotations

import re
import time
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtp import RtpPacket

from media import seams
from media.bandwidth import BandwidthReport, PublisherFeedback
from media.congestion import pack_feedback
from media.encoded import tap_receiver
from media.room import Relay, Room
from media.transport import announce_addresses, create_peer_connection, opus_inband_fec
from tests.helpers import wait_for

TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"


async def _subscribe(room: Room, participant_id: str) -> tuple[RTCPeerConnection, list[Any]]:
    """An aiortc subscriber whose receivers send no REMB of their own (the test sends it)."""
    pc = create_peer_connection()
    receivers: list[Any] = []

    @pc.on("track")
    def on_track(track: Any) -> None:
        receiver = next(r for r in pc.getReceivers() if r.track is track)
        tap_receiver(receiver)
        seams.stop_receive_estimator(receiver)
        if track.kind == "video":
            receivers.append(receiver)

    offer = await room.subscribe(participant_id)
    assert offer is not None
    assert re.search(r"a=rtcp-fb:\d+ goog-remb", offer.sdp)  # so that browsers send REMB
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    await room.answer(participant_id, pc.localDescription.sdp)
    return pc, receivers


async def _remb(receivers: list[Any], bps: int) -> None:
    """The subscriber reports ``bps`` for every stream it receives from the relay."""
    for receiver in receivers:
        ssrcs = list(seams.remote_streams(receiver))
        if ssrcs:
            await seams.send_remb(receiver, bps, ssrcs)


def _publisher() -> tuple[RTCPeerConnection, list[int]]:
    """An aiortc publisher of video and audio, and the REMBs its video sender receives."""
    publisher = create_peer_connection()
    video = publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
    publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
    rembs: list[int] = []
    handle_rtcp = video.sender._handle_rtcp_packet

    async def spy_rtcp(packet: Any) -> None:
        remb = seams.remb_of(packet)
        if remb is not None:
            rembs.append(remb[0])
        await handle_rtcp(packet)

    video.sender._handle_rtcp_packet = spy_rtcp  # type: ignore[method-assign]
    return publisher, rembs


async def test_the_publisher_gets_its_subscribers_smallest_remb_or_the_ceiling() -> None:
    announce_addresses(["127.0.0.1"])
    relay = Relay(max_video_kbps=900)
    room = relay.room("c" * 32)

    publisher, rembs = _publisher()
    await publisher.setLocalDescription(await publisher.createOffer())
    answer = await room.publish("judge1", publisher.localDescription.sdp)
    await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    assert re.search(r"a=fmtp:\d+ useinbandfec=1", answer)  # Opus in-band FEC asked for

    # nobody watching: the ceiling, and only the ceiling (the receiver's own estimator,
    # which reads jitter and the relay's delays as congestion, sends nothing)
    async def ceiling_sent() -> bool:
        return len(rembs) >= 3

    await wait_for(ceiling_sent)
    assert set(rembs) == {900_000}
    (track,) = (t for t in room.tracks.values() if t.kind == "video")
    assert seams.receive_estimator(track.receiver) is None

    # two subscribers: the publisher is told the smaller of their reports
    first, first_video = await _subscribe(room, "petitioner1")
    second, second_video = await _subscribe(room, "lawyer1")

    async def receiving() -> bool:
        return len(first_video + second_video) == 2 and all(
            seams.remote_streams(r) for r in first_video + second_video
        )

    await wait_for(receiving)

    async def reported(bps: int) -> bool:
        await _remb(first_video, 400_000)
        await _remb(second_video, 250_000)
        return bool(rembs) and rembs[-1] == bps

    rembs.clear()
    await wait_for(lambda: reported(250_000))
    assert set(rembs) <= {900_000, 400_000, 250_000}
    reports = {p: f.bandwidth for p, f in track.forwards.items()}
    assert {p: r.bps for p, r in reports.items() if r} == {
        "petitioner1": 400_000,
        "lawyer1": 250_000,
    }

    # the thinner one leaves: the other's report is what counts
    await room.leave("lawyer1")
    rembs.clear()

    async def only_first() -> bool:
        await _remb(first_video, 400_000)
        return bool(rembs) and rembs[-1] == 400_000

    await wait_for(only_first)

    await room.close()
    for pc in (publisher, first, second):
        await pc.close()


async def test_a_subscriber_sending_transport_feedback_gets_the_relays_own_estimate() -> None:
    """Transport-wide numbers on every packet to a subscriber (one sequence over audio and
    video), never asked of publishers; the subscriber's feedback (media/congestion.py)
    stands for its REMB: heavy loss brings the publisher's REMB down."""
    announce_addresses(["127.0.0.1"])
    relay = Relay(max_video_kbps=900)
    room = relay.room("d" * 32)
    publisher, rembs = _publisher()
    with seams.transport_wide_cc():  # as a browser offers it
        await publisher.setLocalDescription(await publisher.createOffer())
    assert TRANSPORT_CC in publisher.localDescription.sdp
    answer = await room.publish("judge1", publisher.localDescription.sdp)
    assert TRANSPORT_CC not in answer and "transport-cc" not in answer
    await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    subscriber = create_peer_connection()
    offer = await room.subscribe("petitioner1")
    assert offer is not None
    assert TRANSPORT_CC in offer.sdp
    assert re.search(r"a=rtcp-fb:\d+ transport-cc", offer.sdp)
    with seams.transport_wide_cc():  # the subscriber's browser accepts it
        await subscriber.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        await subscriber.setLocalDescription(await subscriber.createAnswer())
    await room.answer("petitioner1", subscriber.localDescription.sdp)

    transport = subscriber.getTransceivers()[0].receiver.transport
    arrived: list[tuple[int, int, float]] = []  # (transport-wide number, payload type, ms)
    handle_rtp = transport._handle_rtp_data
    began = time.monotonic()

    async def spy_rtp(data: bytes, arrival_time_ms: int) -> None:
        packet = RtpPacket.parse(data, transport._rtp_header_extensions_map)
        if packet.extensions.transport_sequence_number is not None:
            number = packet.extensions.transport_sequence_number
            arrived.append((number, packet.payload_type, (time.monotonic() - began) * 1000))
        await handle_rtp(data, arrival_time_ms)

    transport._handle_rtp_data = spy_rtp  # type: ignore[method-assign]

    async def both_kinds() -> bool:
        kinds = {seams.negotiated_codecs(t)[0].mimeType for t in subscriber.getTransceivers()}
        types = {pt for _, pt, _ in arrived}
        return len(arrived) > 100 and len(types) >= 2 and len(kinds) == 2

    await wait_for(both_kinds)
    numbers = [n for n, _, _ in arrived[:100]]
    assert numbers == list(range(numbers[0], numbers[0] + 100))  # one sequence, no gaps

    async def report(loss_every: int) -> None:
        """Feedback on what arrived since the last one, every ``loss_every``-th as lost."""
        got, arrived[:] = list(arrived), []
        if not got:
            return
        times = [
            None if loss_every and i % loss_every == 0 else at for i, (_, _, at) in enumerate(got)
        ]
        fci = pack_feedback(got[0][0], times)
        rtcp = bytes([0x8F, 205]) + (2 + len(fci) // 4).to_bytes(2, "big")
        await transport._send_rtp(rtcp + bytes(8) + fci)

    (track,) = (t for t in room.tracks.values() if t.kind == "video")
    forward = track.forwards["petitioner1"]

    async def estimated() -> bool:
        await report(0)
        return forward.bandwidth is not None and forward._transport_estimates

    await wait_for(estimated)
    transport_estimate = room.transports["petitioner1"]
    before = transport_estimate.estimate_bps
    assert before is not None and forward.bandwidth is not None
    assert 0 < forward.bandwidth.bps <= before  # it only grew since it was told
    rembs.clear()

    async def backed_off() -> bool:
        await report(2)  # half of it lost
        return (
            transport_estimate.back_offs >= 1
            and bool(rembs)
            and rembs[-1] < before
            and forward.congested(time.monotonic())
        )

    await wait_for(backed_off)

    await room.close()
    for pc in (publisher, subscriber):
        await pc.close()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _feedback(reports: list[BandwidthReport], clock: Clock) -> tuple[PublisherFeedback, list[int]]:
    sent: list[int] = []

    async def send(bps: int) -> bool:
        sent.append(bps)
        return True

    return PublisherFeedback(send, lambda: reports, 1_500_000, clock=clock), sent


async def test_a_report_older_than_a_few_seconds_no_longer_holds_the_publisher_down() -> None:
    clock = Clock()
    reports = [BandwidthReport(300_000, clock.now), BandwidthReport(3_000_000, clock.now)]
    feedback, sent = _feedback(reports, clock)
    await feedback.tick()
    assert sent == [300_000]  # the smaller; the larger is above the ceiling anyway
    clock.now += 6
    await feedback.tick()
    assert sent == [300_000, 1_500_000]


async def test_a_fall_is_sent_at_once_but_rate_limited_and_a_rise_waits_for_the_period() -> None:
    clock = Clock()
    reports = [BandwidthReport(1_000_000, clock.now)]
    feedback, sent = _feedback(reports, clock)
    await feedback.tick()
    clock.now += 0.1
    await feedback.tick()  # not due yet
    assert sent == [1_000_000]

    reports[0] = BandwidthReport(850_000, clock.now)  # a fall of 15 %: waits for the period
    await feedback.report()
    assert sent == [1_000_000]
    clock.now += 0.2
    reports[0] = BandwidthReport(500_000, clock.now)  # a fall of 50 %: at once
    await feedback.report()
    assert sent == [1_000_000, 500_000]
    clock.now += 0.1
    reports[0] = BandwidthReport(200_000, clock.now)  # too soon after the last one
    await feedback.report()
    assert sent == [1_000_000, 500_000]
    clock.now += 0.2
    await feedback.report()
    assert sent == [1_000_000, 500_000, 200_000]

    reports[0] = BandwidthReport(800_000, clock.now)  # a rise: at the next period
    await feedback.report()
    assert sent[-1] == 200_000
    clock.now += 1
    await feedback.tick()
    assert sent[-1] == 800_000


def test_opus_in_band_fec_is_added_to_the_opus_format_parameters_only() -> None:
    sdp = "\r\n".join(
        [
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 9",
            "a=rtpmap:111 opus/48000/2",
            "a=rtpmap:9 G722/8000",
            "m=audio 9 UDP/TLS/RTP/SAVPF 96",
            "a=rtpmap:96 OPUS/48000/2",
            "a=fmtp:96 minptime=10",
            "",
        ]
    )
    assert opus_inband_fec(sdp).split("\r\n") == [
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 9",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 useinbandfec=1",
        "a=rtpmap:9 G722/8000",
        "m=audio 9 UDP/TLS/RTP/SAVPF 96",
        "a=rtpmap:96 OPUS/48000/2",
        "a=fmtp:96 minptime=10;useinbandfec=1",
        "",
    ]
    assert opus_inband_fec(opus_inband_fec(sdp)) == opus_inband_fec(sdp)
