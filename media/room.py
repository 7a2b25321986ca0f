"""The relay: one Room per Visit; each participant publishes on one peer connection and
subscribes on another; encoded frames are fanned out to subscribers and to sinks (the
recorder) without decoding."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.encoded import ForwardTrack, forward_keyframe_requests, keyframe_requester, tap_receiver
from media.errors import MediaError
from media.transport import create_peer_connection

log = logging.getLogger("vreception.media")


class TrackSink(Protocol):
    """Receives every published track's encoded frames with their arrival time."""

    def track_started(self, visit_id: str, track: PublishedTrack) -> None: ...

    def packet(self, track: PublishedTrack, packet: av.Packet[Any], arrival: float) -> None: ...

    def track_ended(self, track: PublishedTrack) -> None: ...


@dataclass(eq=False)
class PublishedTrack:
    """One track a participant publishes, and its subscribers' copies."""

    id: str
    visit_id: str
    participant_id: str
    kind: str
    receiver: RTCRtpReceiver
    remote: MediaStreamTrack
    codec_mime: str
    forwards: dict[str, ForwardTrack] = field(default_factory=dict)
    packets: int = 0
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.request_keyframe = keyframe_requester(self.receiver)

    @property
    def codec(self) -> str:
        return self.codec_mime.split("/")[-1].lower()


class Room:
    """The media of one visit on this relay node (``room_id == visit_id``)."""

    def __init__(self, relay: Relay, visit_id: str) -> None:
        self.relay = relay
        self.visit_id = visit_id
        self.publishers: dict[str, RTCPeerConnection] = {}
        self.subscribers: dict[str, RTCPeerConnection] = {}
        self.tracks: dict[str, PublishedTrack] = {}

    async def publish(self, participant_id: str, offer_sdp: str) -> str:
        """Answer a participant's offer of its tracks (audio, camera, evidence)."""
        await self._close_pc(self.publishers.pop(participant_id, None))
        pc = create_peer_connection(self.relay.ice_servers)
        self.publishers[participant_id] = pc
        pending: list[tuple[MediaStreamTrack, RTCRtpReceiver]] = []

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            receiver = next(r for r in pc.getReceivers() if r.track is track)
            tap_receiver(receiver)  # before receive() starts the decoder thread
            pending.append((track, receiver))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        for transceiver in pc.getTransceivers():
            for track, receiver in pending:
                if transceiver.receiver is receiver:
                    codecs = getattr(transceiver, "_codecs", [])
                    if not codecs:
                        raise MediaError("no_codec", "没有可用的编码格式")
                    self._start_track(participant_id, track, receiver, codecs[0].mimeType)
        return str(pc.localDescription.sdp)

    def _start_track(
        self, participant_id: str, track: MediaStreamTrack, receiver: RTCRtpReceiver, mime: str
    ) -> None:
        published = PublishedTrack(
            id=secrets.token_hex(8),
            visit_id=self.visit_id,
            participant_id=participant_id,
            kind=track.kind,
            receiver=receiver,
            remote=track,
            codec_mime=mime,
        )
        self.tracks[published.id] = published
        for sink in self.relay.sinks:
            sink.track_started(self.visit_id, published)
        published.task = asyncio.create_task(self._pump(published), name=f"pump-{published.id}")

    async def _pump(self, track: PublishedTrack) -> None:
        """Drain the publisher's track from the start (its queue is unbounded) and fan out."""
        try:
            while True:
                packet = await track.remote.recv()
                if not isinstance(packet, av.Packet):  # the tap guarantees packets
                    raise MediaError("decoded_frame", "relay received a decoded frame")
                arrival = time.time()
                track.packets += 1
                for forward in list(track.forwards.values()):
                    forward.push(packet)
                for sink in self.relay.sinks:
                    sink.packet(track, packet, arrival)
        except MediaStreamError:
            pass
        finally:
            for forward in list(track.forwards.values()):
                forward.push(None)
            for sink in self.relay.sinks:
                sink.track_ended(track)
            self.tracks.pop(track.id, None)

    async def subscribe(self, participant_id: str) -> str | None:
        """An offer carrying every track published by the others; None while there is none
        (an offer without media sections is refused by browsers)."""
        await self._close_pc(self.subscribers.pop(participant_id, None))
        if not any(t.participant_id != participant_id for t in self.tracks.values()):
            return None
        pc = create_peer_connection(self.relay.ice_servers)
        self.subscribers[participant_id] = pc
        for track in self.tracks.values():
            if track.participant_id == participant_id:
                continue
            forward = ForwardTrack(track.kind, track.codec, track.request_keyframe)
            transceiver = pc.addTransceiver(forward, direction="sendonly")
            transceiver.setCodecPreferences(_preferences(track))
            forward_keyframe_requests(transceiver.sender, track.request_keyframe)
            track.forwards[participant_id] = forward

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                for t in self.tracks.values():
                    if participant_id in t.forwards and t.kind == "video":
                        t.request_keyframe()  # a new subscriber needs a keyframe now

        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)

    async def answer(self, participant_id: str, answer_sdp: str) -> None:
        pc = self.subscribers.get(participant_id)
        if pc is None:
            raise MediaError("not_subscribed", "尚未订阅")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def leave(self, participant_id: str) -> None:
        for track in self.tracks.values():
            forward = track.forwards.pop(participant_id, None)
            if forward is not None:
                forward.push(None)
        await self._close_pc(self.subscribers.pop(participant_id, None))
        await self._close_pc(self.publishers.pop(participant_id, None))

    async def close(self) -> None:
        for participant_id in {*self.publishers, *self.subscribers}:
            await self.leave(participant_id)

    @staticmethod
    async def _close_pc(pc: RTCPeerConnection | None) -> None:
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()


def _preferences(track: PublishedTrack) -> list[Any]:
    """The publisher's codec first (the sender packetizes with the first one), and RTX."""
    capabilities = RTCRtpSender.getCapabilities(track.kind).codecs
    chosen = [c for c in capabilities if c.mimeType.lower() == track.codec_mime.lower()]
    rtx = [c for c in capabilities if c.mimeType.lower().endswith("/rtx")]
    return chosen[:1] + rtx[:1]


class Relay:
    """All rooms of this node."""

    def __init__(self, ice_servers: Sequence[str] = (), sinks: Sequence[TrackSink] = ()) -> None:
        self.ice_servers = tuple(ice_servers)
        self.sinks = list(sinks)
        self.rooms: dict[str, Room] = {}

    def room(self, visit_id: str) -> Room:
        return self.rooms.setdefault(visit_id, Room(self, visit_id))

    async def close_room(self, visit_id: str) -> None:
        room = self.rooms.pop(visit_id, None)
        if room is not None:
            await room.close()
