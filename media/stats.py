"""Plain traffic counters of the relay, for monitoring (web/metrics.py makes metrics of them).

Two legs per room: ``in`` is publishers → relay, ``out`` is relay → subscribers. Nothing
here runs per packet: the relay's own counters are integer increments where it already
handles a frame, RTCP feedback is counted where aiortc handles it (a few per second), and
aiortc's RTP statistics are read from its senders and receivers when asked (at a scrape,
and once more when a connection closes, so the totals never go backwards). The private
attributes read are reached through media/seams.py; a missing one reads as 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender

from media import seams


@dataclass(slots=True)
class Traffic:
    """Counts since start (of a room, or of the relay) for both legs."""

    frames_in: int = 0  # encoded frames the relay received from publishers
    frames_out: int = 0  # frames handed to subscribers' senders
    bytes_in: int = 0  # payload bytes of those frames
    bytes_out: int = 0  # RTP payload bytes sent to subscribers
    packets_in: int = 0  # RTP packets received (retransmissions included)
    packets_out: int = 0  # RTP packets sent
    lost_in: int = 0  # RTP packets publishers sent that never arrived
    lost_out: int = 0  # RTP packets subscribers report lost (their receiver reports)
    nacks_in: int = 0  # NACKs the relay sent to publishers
    nacks_out: int = 0  # NACKs subscribers sent to the relay
    keyframes_in: int = 0  # keyframe requests (PLI) the relay sent to publishers
    keyframes_out: int = 0  # keyframe requests (PLI/FIR) subscribers sent to the relay
    layer_switches: int = 0  # simulcast: subscribers' copies moved to another layer
    padding_bytes_out: int = 0  # simulcast: padding sent to subscribers to probe their links
    frame_ends_repeated: int = 0  # video frames' last packets sent twice on lossy links

    def add(self, other: Traffic) -> None:
        for name in _FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def copy(self) -> Traffic:
        return dataclasses.replace(self)


_FIELDS = tuple(f.name for f in dataclasses.fields(Traffic))


def receiver_traffic(receiver: RTCRtpReceiver, into: Traffic) -> None:
    """RTP packets received and lost on one of the relay's receivers (from publishers)."""
    streams = seams.remote_streams(receiver)
    rtx = seams.rtx_ssrcs(receiver)
    for ssrc, stream in list(streams.items()):
        into.packets_in += int(stream.packets_received)
        if ssrc not in rtx:  # a retransmission stream's sequence gaps are no loss
            into.lost_in += max(0, int(stream.packets_lost))


def sender_traffic(sender: RTCRtpSender, into: Traffic) -> None:
    """RTP packets and bytes sent on one of the relay's senders (to a subscriber), and the
    loss the subscriber reported for them."""
    packets, octets = seams.sender_counts(sender)
    into.packets_out += packets
    into.bytes_out += octets
    into.frames_out += int(getattr(sender.track, "forwarded", 0))
    into.layer_switches += int(getattr(sender.track, "switches", 0))
    into.padding_bytes_out += int(getattr(sender.track, "padding_sent", 0))
    into.frame_ends_repeated += int(getattr(sender.track, "frame_ends_repeated", 0))
    remote = seams.sender_stats(sender).get(f"remote-inbound-rtp_{id(sender)}")
    if remote is not None:
        into.lost_out += max(0, int(remote.packetsLost))


def peer_traffic(pc: RTCPeerConnection, into: Traffic) -> None:
    """What one of the relay's peer connections has received and sent so far."""
    for receiver in pc.getReceivers():
        receiver_traffic(receiver, into)
    for sender in pc.getSenders():
        sender_traffic(sender, into)


def count_nacks_sent(receiver: RTCRtpReceiver, counters: Traffic) -> None:
    """Count the NACKs this receiver sends to its publisher (only when packets go missing)."""

    def wrap(original: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        async def send_nack(media_ssrc: int, lost: list[int]) -> None:
            counters.nacks_in += 1
            await original(media_ssrc, lost)

        return send_nack

    seams.wrap_send_nack(receiver, wrap)


def count_nacks_received(sender: RTCRtpSender, counters: Traffic) -> None:
    """Count the NACKs a subscriber sends about this sender's packets (RTCP, not RTP)."""

    def wrap(original: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def handle(packet: Any) -> None:
            if seams.is_nack(packet):
                counters.nacks_out += 1
            await original(packet)

        return handle

    seams.wrap_rtcp_handler(sender, wrap)
