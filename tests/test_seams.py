"""The aiortc/aioice internals the relay relies on are checked before it starts."""

from __future__ import annotations

import importlib.metadata
import logging
import types
from typing import Any

import aioice.ice
import aiortc.rtp
import pytest
from aiortc import RTCDtlsTransport, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.exceptions import InvalidStateError

from media import encoded, seams
from media.room import Relay
from web.doctor import Level, check_media_seams


def test_the_installed_aiortc_and_aioice_have_every_seam() -> None:
    assert seams.seam_problems() == []
    seams.check_seams()
    assert Relay().rooms == {}
    finding = check_media_seams()
    assert finding.level is Level.ok
    assert importlib.metadata.version("aiortc") in finding.message


def _refused(label: str) -> str:
    with pytest.raises(seams.SeamError) as caught:
        Relay()
    message = caught.value.message
    assert label in message
    assert f"aiortc {importlib.metadata.version('aiortc')}" in message
    assert f"aioice {importlib.metadata.version('aioice')}" in message
    return message


def test_a_removed_private_method_stops_the_relay_from_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(RTCRtpReceiver, "_send_rtcp_pli")
    assert "不存在" in _refused("RTCRtpReceiver._send_rtcp_pli")
    doctor = check_media_seams()
    assert doctor.level is Level.error
    assert "RTCRtpReceiver._send_rtcp_pli" in doctor.message


def test_a_renamed_decoder_queue_stops_the_relay_from_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A renamed private attribute would otherwise let the relay decode every frame."""
    original = RTCRtpReceiver.__init__

    def renamed(self: Any, kind: str, transport: Any) -> None:
        original(self, kind, transport)
        self._RTCRtpReceiver__frame_queue = self.__dict__.pop("_RTCRtpReceiver__decoder_queue")

    monkeypatch.setattr(RTCRtpReceiver, "__init__", renamed)
    _refused("RTCRtpReceiver.__decoder_queue")


def test_a_changed_signature_stops_the_relay_from_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def handle(self: Any, rtcp: Any) -> None:
        return None

    monkeypatch.setattr(RTCRtpSender, "_handle_rtcp_packet", handle)
    assert "(self, rtcp)" in _refused("RTCRtpSender._handle_rtcp_packet")


def test_tapping_a_receiver_without_its_decoder_queue_fails_loudly() -> None:
    transport: Any = types.SimpleNamespace(state="new")  # a DTLS transport not yet started
    receiver = RTCRtpReceiver("video", transport)
    encoded.tap_receiver(receiver)  # the tap replaces the queue the decoder thread reads
    assert isinstance(receiver.__dict__["_RTCRtpReceiver__decoder_queue"], encoded.Tap)
    del receiver.__dict__["_RTCRtpReceiver__decoder_queue"]
    with pytest.raises(seams.SeamError, match="_RTCRtpReceiver__decoder_queue"):
        encoded.tap_receiver(receiver)


@pytest.mark.parametrize(
    ("owner", "name", "label"),
    [
        (RTCRtpReceiver, "_handle_rtp_packet", "RTCRtpReceiver._handle_rtp_packet"),
        (RTCDtlsTransport, "_send_rtp", "RTCDtlsTransport._send_rtp"),
        (RTCRtpSender, "_retransmit", "RTCRtpSender._retransmit"),
        (aiortc.rtp, "RTP_HISTORY_SIZE", "aiortc.rtp.RTP_HISTORY_SIZE"),
        (RTCRtpReceiver, "_send_rtcp", "RTCRtpReceiver._send_rtcp"),
        (aiortc.rtp, "pack_remb_fci", "aiortc.rtp.pack_remb_fci"),
        (aiortc.rtp, "unpack_remb_fci", "aiortc.rtp.unpack_remb_fci"),
        (RTCDtlsTransport, "_handle_rtp_data", "RTCDtlsTransport._handle_rtp_data"),
        (aiortc.rtp, "is_rtcp", "aiortc.rtp.is_rtcp"),
    ],
)
def test_a_removed_forwarding_seam_stops_the_relay_from_starting(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, label: str
) -> None:
    """Packet forwarding hooks the publisher's receiver and sends through the subscriber's
    transport, keeping aiortc's retransmission history."""
    monkeypatch.delattr(owner, name)
    _refused(label)


@pytest.mark.parametrize(
    ("attribute", "label"),
    [
        ("_ssrc", "RTCRtpSender._ssrc"),
        ("_RTCRtpSender__rtp_history", "RTCRtpSender.__rtp_history"),
        ("_RTCRtpSender__rtp_header_extensions_map", "RTCRtpSender.__rtp_header_extensions_map"),
        ("_RTCRtpSender__ntp_timestamp", "RTCRtpSender.__ntp_timestamp"),
        ("_RTCRtpSender__rtp_timestamp", "RTCRtpSender.__rtp_timestamp"),
        ("_RTCRtpSender__packet_count", "RTCRtpSender.__packet_count"),
    ],
)
def test_a_renamed_sender_attribute_stops_the_relay_from_starting(
    monkeypatch: pytest.MonkeyPatch, attribute: str, label: str
) -> None:
    """A forwarder writes into these: renamed, its packets would not be retransmitted or
    counted in the sender reports."""
    original = RTCRtpSender.__init__

    def renamed(self: Any, track: Any, transport: Any) -> None:
        original(self, track, transport)
        self.__dict__["renamed"] = self.__dict__.pop(attribute)

    monkeypatch.setattr(RTCRtpSender, "__init__", renamed)
    _refused(label)


@pytest.mark.parametrize(
    ("attribute", "label"),
    [
        ("_RTCRtpReceiver__remote_bitrate_estimator", "RTCRtpReceiver.__remote_bitrate_estimator"),
        ("_RTCRtpReceiver__rtcp_ssrc", "RTCRtpReceiver.__rtcp_ssrc"),
        ("_RTCRtpReceiver__nack_generator", "RTCRtpReceiver.__nack_generator"),
    ],
)
def test_a_renamed_bandwidth_seam_of_the_receiver_stops_the_relay_from_starting(
    monkeypatch: pytest.MonkeyPatch, attribute: str, label: str
) -> None:
    """Renamed, the receiver's own estimator would go on sending REMB that collapses the
    publisher's bitrate under jitter, or the relay's REMB would never go out."""
    original = RTCRtpReceiver.__init__

    def renamed(self: Any, kind: str, transport: Any) -> None:
        original(self, kind, transport)
        self.__dict__["renamed"] = self.__dict__.pop(attribute)

    monkeypatch.setattr(RTCRtpReceiver, "__init__", renamed)
    _refused(label)


def test_a_dtls_transport_counting_under_other_names_stops_the_relay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The socket reader that hands SRTP on counts each datagram in the DTLS transport's
    own counters, as its receiving task does; counters renamed, the relay would count into
    attributes nobody reads."""

    async def recv_next(self: Any) -> None:
        self._RTCDtlsTransport__received_bytes = 0

    monkeypatch.setattr(RTCDtlsTransport, "_recv_next", recv_next)
    message = _refused("RTCDtlsTransport.__rx_bytes")
    assert "RTCDtlsTransport.__rx_packets" in message


def test_a_send_path_of_another_shape_stops_the_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    """The forwarders send without awaiting (seams.rtp_send_now) by doing what aiortc's
    ``_send_rtp`` and aioice's ``sendto`` do; if either does it otherwise (another name for
    the pair sent on, other counters), the relay would send past them."""

    async def sendto(self: Any, data: bytes, component: int) -> None:
        pair = self._selected[component]
        await pair.protocol.send_data(data, pair.remote_addr)

    async def send_rtp(self: Any, data: bytes) -> None:
        await self.transport._send(self._srtp_out.protect(data))
        self._RTCDtlsTransport__sent_bytes = len(data)

    monkeypatch.setattr(aioice.ice.Connection, "sendto", sendto)
    assert "aioice.ice.Connection._nominated" in _refused("aioice.ice.Connection._nominated")
    monkeypatch.setattr(RTCDtlsTransport, "_send_rtp", send_rtp)
    message = _refused("RTCDtlsTransport._tx_srtp")
    assert "RTCDtlsTransport.__tx_bytes" in message and "RTCDtlsTransport.__tx_packets" in message


def test_stopping_the_estimator_of_a_receiver_without_one_fails_loudly() -> None:
    transport: Any = types.SimpleNamespace(state="new")
    receiver = RTCRtpReceiver("video", transport)
    seams.stop_receive_estimator(receiver)
    assert seams.receive_estimator(receiver) is None
    del receiver.__dict__["_RTCRtpReceiver__remote_bitrate_estimator"]
    with pytest.raises(seams.SeamError, match="_RTCRtpReceiver__remote_bitrate_estimator"):
        seams.stop_receive_estimator(receiver)


def test_a_missing_packet_is_asked_for_again_until_it_comes() -> None:
    """aiortc asks once, when the gap appears; the relay's receivers ask again for what is
    still missing each INTERVAL_S (a lost NACK or retransmission was repaired only at the
    next gap), and stop once it came."""
    now = [0.0]
    nacks = seams.RepeatingNackGenerator(clock=lambda: now[0])

    def arrives(number: int, at: float) -> bool:
        now[0] = at
        return nacks.add(aiortc.rtp.RtpPacket(sequence_number=number))

    assert arrives(1, 0.0) is False
    assert arrives(3, 0.01) is True and nacks.missing == {2}  # the gap: asked at once
    assert arrives(4, 0.03) is False  # asked moments ago
    assert arrives(5, 0.07) is True  # still missing an interval later: asked again
    assert arrives(6, 0.09) is False
    assert arrives(2, 0.2) is False and nacks.missing == set()  # repaired
    assert arrives(7, 0.3) is False  # nothing missing: nothing asked
    # the relay's video receivers get one; audio has none to replace
    transport: Any = types.SimpleNamespace(state="new")
    video, audio = RTCRtpReceiver("video", transport), RTCRtpReceiver("audio", transport)
    seams.repeat_nacks(video)
    seams.repeat_nacks(audio)
    assert isinstance(
        video.__dict__["_RTCRtpReceiver__nack_generator"], seams.RepeatingNackGenerator
    )
    assert audio.__dict__["_RTCRtpReceiver__nack_generator"] is None


def test_an_asyncio_udp_reader_of_another_shape_stops_the_relay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The relay's draining reader does what asyncio's datagram reader does, in a loop; a
    reader that no longer reads with ``recvfrom`` means that copy no longer matches."""

    def read_ready(self: Any) -> None:
        self._sock.recv_into(bytearray(1))

    monkeypatch.setattr(seams._DatagramTransport, "_read_ready", read_ready)
    _refused("_SelectorDatagramTransport._sock/_conn_lost/_protocol/max_size")


async def test_a_connection_closed_while_connecting_ends_its_connecting_task_quietly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """aiortc's connecting task raises InvalidStateError when the connection is closed
    under it (a participant leaving, the node stopping): the relay's connections end it
    with a line of log; the same error on a connection still open is not hidden."""
    Relay()
    assert getattr(RTCPeerConnection, seams._CONNECT) is seams._connect_or_closed

    async def closed_under_it(pc: Any) -> None:
        raise InvalidStateError("RTCIceTransport is closed")

    monkeypatch.setattr(seams, "original_connect", closed_under_it)
    pc = RTCPeerConnection()
    await pc.close()
    caplog.set_level(logging.INFO, "vreception.media")
    await getattr(pc, seams._CONNECT)()  # as aiortc's own task runs it
    assert "closed while it was connecting" in caplog.text
    still_open = RTCPeerConnection()
    with pytest.raises(InvalidStateError):
        await getattr(still_open, seams._CONNECT)()
    await still_open.close()
