"""The relay: one Room per Visit; each participant publishes on one peer connection and
subscribes on another; encoded frames are fanned out to subscribers and to sinks (the
recorder) without decoding."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import (
    MediaStreamError,
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from config.turn import IceServers
from media import seams
from media.bandwidth import REPORT_MAX_AGE_S, BandwidthReport, PublisherFeedback
from media.congestion import TransportFeedback
from media.encoded import (
    Deliver,
    EncodedFrame,
    Tap,
    forward_keyframe_requests,
    keyframe_requester,
    tap_receiver,
)
from media.errors import MediaError
from media.forward import ForwardTrack, KeyframeCache, forward_rtp, starts_keyframe
from media.layers import LayerChoice, Layers, RecordedStream
from media.quality import LinkQuality
from media.stats import Traffic, count_nacks_received, count_nacks_sent, peer_traffic
from media.transport import (
    Network,
    accept_simulcast,
    announced,
    create_peer_connection,
    default_allowed_networks,
    opus_inband_fec,
    screen_sdp,
    simulcast_rids,
    use_draining_sockets,
)

log = logging.getLogger("vreception.media")
RELAY_KEY = "relay"  # whose TURN credentials the relay's own peer connections carry
# a subscription is renegotiated while it has at most this many media sections (aiortc
# cannot reuse the inactive section of a gone track); beyond, it is replaced by a new one
MAX_SUBSCRIBER_SECTIONS = 32
# a copy's first estimates are the browser's estimator starting up, far below what it receives
FIRST_REPORTS_S = 5.0


class TrackSink(Protocol):
    """Receives every published track's encoded frames with their arrival time, and is told
    when a visit's recording starts and stops (the recorder)."""

    def start(self, visit_id: str, details: dict[str, Any] | None = None) -> None: ...

    def stop(self, visit_id: str) -> Any: ...

    def track_started(self, visit_id: str, track: PublishedTrack) -> None: ...

    def frame(self, track: PublishedTrack, frame: EncodedFrame, arrival: float) -> None: ...

    def track_ended(self, track: PublishedTrack) -> None: ...


class Stream(enum.StrEnum):
    """A participant's publishing connections: camera + microphone, and evidence."""

    main = "main"
    evidence = "evidence"


class Source(enum.StrEnum):
    """What a published track carries."""

    microphone = "microphone"
    camera = "camera"
    evidence = "evidence"


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
    source: Source = Source.camera
    clock_rate: int = 90000
    role: str = ""  # the publisher's role and name in the room (for recordings)
    name: str = ""
    forwards: dict[str, ForwardTrack] = field(default_factory=dict)
    keyframes: KeyframeCache | None = None  # video: its latest keyframe, for new subscribers
    recorded: RecordedStream | None = None  # simulcast: its layers, and the one recorded
    feedback: PublisherFeedback | None = None  # video: the REMB its publisher gets
    packets: int = 0
    task: asyncio.Task[None] | None = None
    counters: Traffic | None = None  # the room's (keyframe requests sent are counted)

    def __post_init__(self) -> None:
        self.request_keyframe = keyframe_requester(self.receiver, counters=self.counters)

    @property
    def codec(self) -> str:
        return self.codec_mime.split("/")[-1].lower()

    @property
    def layers(self) -> Layers | None:
        return self.recorded.layers if self.recorded is not None else None


@dataclass(frozen=True)
class OfferedTrack:
    """One track in a subscriber's offer: its media section and whose it is."""

    mid: str
    track_id: str
    participant_id: str
    kind: str
    source: Source


@dataclass(frozen=True)
class SubscribeOffer:
    """An offer for a subscriber: ``renegotiation`` when it is for its existing connection."""

    sdp: str
    tracks: list[OfferedTrack]
    renegotiation: bool = False


class Room:
    """The media of one visit on this relay node (``room_id == visit_id``)."""

    def __init__(self, relay: Relay, visit_id: str) -> None:
        self.relay = relay
        self.visit_id = visit_id
        self.publishers: dict[tuple[str, Stream], RTCPeerConnection] = {}
        self.subscribers: dict[str, RTCPeerConnection] = {}
        # per subscriber: published track id → the transceiver carrying it (media sections
        # of gone tracks are inactive and no longer listed), the copies a re-offer added
        # that start once answered, and the lock of its negotiation
        self.sending: dict[str, dict[str, RTCRtpTransceiver]] = {}
        self.waiting: dict[str, dict[str, ForwardTrack]] = {}
        self._negotiating: dict[str, asyncio.Lock] = {}
        # per published stream: one publish at a time (the second replaces the first)
        self._publishing: dict[tuple[str, Stream], asyncio.Lock] = {}
        self.tracks: dict[str, PublishedTrack] = {}
        self.people: dict[str, tuple[str, str]] = {}  # participant id → (role, name)
        self.gone: set[str] = set()  # who left (a participant id is never used again)
        self.links: dict[str, LinkQuality] = {}  # subscriber → its downlink's verdict
        # subscriber → its connection's transport-wide numbering and estimate
        self.transports: dict[str, TransportFeedback] = {}
        # counts of this room's media since it opened, and of its closed connections
        self.counters = Traffic()

    @property
    def participants(self) -> set[str]:
        """Who has a media connection in this room now."""
        return {p for p, _ in self.publishers} | set(self.subscribers)

    def traffic(self) -> Traffic:
        """Both legs' counts since the room opened (read at a scrape; nothing per packet)."""
        total = self.counters.copy()
        for pc in [*self.publishers.values(), *self.subscribers.values()]:
            peer_traffic(pc, total)
        for track in list(self.tracks.values()):
            if track.recorded is not None:
                total.packets_in += track.recorded.other_packets
        return total

    def describe(self, participant_id: str, role: str, name: str) -> None:
        """Who a participant is (its tracks carry it to the sinks)."""
        self.people[participant_id] = (role, name)

    def start_recording(self, details: dict[str, Any] | None = None) -> None:
        """Record every track of this room, now and to come (the visit is in progress)."""
        for sink in self.relay.sinks:
            sink.start(self.visit_id, details)

    def stop_recording(self) -> None:
        for sink in self.relay.sinks:
            sink.stop(self.visit_id)

    async def publish(
        self, participant_id: str, offer_sdp: str, stream: Stream = Stream.main
    ) -> str:
        """Answer a participant's offer of one stream's tracks (camera + microphone, or
        evidence); publishing a stream again replaces its connection. A refused SDP
        (MediaError ``invalid_sdp``) changes nothing; a failed negotiation leaves no
        connection behind."""
        offer_sdp = screen_sdp(offer_sdp, self.relay.allowed_networks)
        key = (participant_id, stream)
        # two publishes of one stream (a camera switched while the network came back) run
        # one after the other: the later replaces the earlier, which is closed, never lost
        async with self._publishing.setdefault(key, asyncio.Lock()):
            await self.unpublish(participant_id, stream)
            if participant_id in self.gone:  # it left while its previous connection closed
                raise MediaError("participant_left", "参与人已离开，未发布媒体")
            pc = create_peer_connection(self.relay.ice_servers.issue(RELAY_KEY))
            self.publishers[key] = pc
            try:
                answer = await self._negotiate(pc, participant_id, offer_sdp, stream)
                # it left, or stopped this stream, while the connection was negotiated
                if participant_id in self.gone:
                    raise MediaError("participant_left", "参与人已离开，未发布媒体")
                if self.publishers.get(key) is not pc:
                    raise MediaError("publish_stopped", "该路媒体已停止发布")
                return answer
            except BaseException:
                if self.publishers.get(key) is pc:  # else whoever took it out closed it
                    del self.publishers[key]
                    await self._close_pc(pc)
                raise

    async def _negotiate(
        self, pc: RTCPeerConnection, participant_id: str, offer_sdp: str, stream: Stream
    ) -> str:
        pending: list[tuple[MediaStreamTrack, RTCRtpReceiver, Tap]] = []

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            receiver = next(r for r in pc.getReceivers() if r.track is track)
            # before receive() starts the decoder thread; frames wait for _start_track
            tap = tap_receiver(receiver, hold=True)
            seams.stop_receive_estimator(receiver)  # subscribers' REMB drive the publisher
            seams.repeat_nacks(receiver)  # a lost NACK or retransmission is asked again
            count_nacks_sent(receiver, self.counters)
            pending.append((track, receiver, tap))

        simulcast = simulcast_rids(offer_sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        accepted: dict[str, list[str]] = {}
        for transceiver in pc.getTransceivers():
            for track, receiver, tap in pending:
                if transceiver.receiver is receiver:
                    codecs = seams.negotiated_codecs(transceiver)
                    if not codecs:
                        raise MediaError("no_codec", "没有可用的编码格式")
                    source = (
                        Source.evidence
                        if stream is Stream.evidence
                        else Source.microphone
                        if track.kind == "audio"
                        else Source.camera
                    )
                    published = self._start_track(
                        participant_id, track, receiver, tap, codecs[0], source
                    )
                    rids = simulcast.get(str(transceiver.mid)) if track.kind == "video" else None
                    if rids:
                        accepted[str(transceiver.mid)] = rids
                        published.recorded = RecordedStream(
                            Layers(rids, published.codec, seams.rtx_ssrcs(receiver)),
                            published.clock_rate,
                            published.request_keyframe,
                        )
                        seams.wrap_send_nack(receiver, _nacks_of(published.recorded))
                    published.keyframes = forward_rtp(
                        receiver, codecs, published.forwards, published.recorded
                    )
                    if published.kind == "video":
                        published.feedback = self._feedback(published)
                        buffer = seams.jitter_buffer(receiver)
                        if isinstance(buffer, seams.LowLatencyJitterBuffer):
                            # a gap before a keyframe is not waited for (the recording goes
                            # on from it: a change of simulcast layer, a loss never repaired)
                            buffer.keyframe = functools.partial(starts_keyframe, published.codec)
        return accept_simulcast(opus_inband_fec(str(pc.localDescription.sdp)), accepted)

    def _feedback(self, track: PublishedTrack) -> PublisherFeedback:
        """The REMB of a published video track: its subscribers' smallest estimate, or the
        relay's ceiling (media/bandwidth.py)."""
        receiver = track.receiver

        async def send(bps: int) -> bool:
            rtx = seams.rtx_ssrcs(receiver)
            ssrcs = [s for s in seams.remote_streams(receiver) if s not in rtx]
            return bool(ssrcs) and await seams.send_remb(receiver, bps, ssrcs)

        if track.recorded is None:
            feedback = PublisherFeedback(
                send, lambda: self._reports(track), self.relay.max_video_kbps * 1000
            )
        else:
            # simulcast: the layers serve thin links, the publisher sends all it can (the
            # recording keeps its best layer); each new estimate chooses the layers
            feedback = PublisherFeedback(
                send,
                lambda: [],
                self.relay.max_video_kbps * 1000,
                on_estimate=lambda: self.choose_layers(track),
            )
        feedback.start()
        return feedback

    async def choose_layers(self, track: PublishedTrack) -> None:
        """Each subscriber of a simulcast track gets the best layer its estimate carries."""
        layers = track.layers
        if layers is None:
            return
        now = time.monotonic()
        for participant_id, forward in list(track.forwards.items()):
            report = forward.bandwidth
            budget = None
            settled = forward.started is not None and now - forward.started >= FIRST_REPORTS_S
            if report is not None and now - report.at <= REPORT_MAX_AGE_S and settled:
                budget = self._share(participant_id, report.bps)
            choice = forward.choice
            if choice is None:
                continue
            before, probes, failed = forward.wanted, choice.probes, choice.failed
            congested = forward.congested(now)
            ceiling = layers.ceiling(forward.shown_height)
            chosen = choice.pick(layers, budget, now, before, congested, forward.queued(), ceiling)
            if chosen is not before and chosen is not None:
                log.info(
                    "visit %s: %s gets layer %s of %s (estimate %s kbit/s)",
                    self.visit_id,
                    participant_id,
                    chosen.rid,
                    track.participant_id,
                    budget // 1000 if budget is not None else "-",
                )
            if choice.probes != probes or choice.failed != failed:
                log.info(
                    "visit %s: %s %s (estimate %s kbit/s)",
                    self.visit_id,
                    participant_id,
                    "probe started" if choice.probes != probes else "probe ended: congestion",
                    budget // 1000 if budget is not None else "-",
                )
            hurry = choice.hurried(chosen, forward.layer, budget, now, congested)
            await forward.want(chosen, drop_current=hurry)
            forward.pad(choice.padding_bps)

    def _reports(self, track: PublishedTrack) -> list[BandwidthReport]:
        """Each subscriber's latest estimate for ``track``: a REMB covers the subscriber's
        whole connection, shared evenly by the video tracks it receives."""
        reports = []
        for participant_id, forward in list(track.forwards.items()):
            if forward.bandwidth is not None:
                share = self._share(participant_id, forward.bandwidth.bps)
                reports.append(BandwidthReport(share, forward.bandwidth.at))
        return reports

    def _share(self, participant_id: str, bps: int) -> int:
        """A subscriber's estimate for one of the video tracks it receives."""
        videos = sum(
            1
            for t in self.sending.get(participant_id, {})
            if (other := self.tracks.get(t)) is not None and other.kind == "video"
        )
        return bps // max(1, videos)

    def downlink_bps(self, participant_id: str, now: float) -> int | None:
        """The participant's latest recent downlink estimate (its browser's REMB covers its
        whole connection), or None when it sent none lately."""
        latest: BandwidthReport | None = None
        for track in list(self.tracks.values()):
            forward = track.forwards.get(participant_id)
            report = forward.bandwidth if forward is not None else None
            if report is None or now - report.at > REPORT_MAX_AGE_S:
                continue
            if latest is None or report.at > latest.at:
                latest = report
        return latest.bps if latest is not None else None

    def network_changes(self, now: float) -> list[tuple[str, bool]]:
        """The subscribers whose downlink verdict (网络较差 or not) changed since the last
        look, with the new verdict (media/quality.py); ``now``: monotonic seconds."""
        changes = []
        for participant_id in list(self.subscribers):
            link = self.links.get(participant_id)
            if link is None:
                link = self.links[participant_id] = LinkQuality(self.relay.poor_network_kbps * 1000)
            verdict = link.observe(self.downlink_bps(participant_id, now), now)
            if verdict is not None:
                changes.append((participant_id, verdict))
        for gone in set(self.links) - set(self.subscribers):
            del self.links[gone]
        return changes

    def poor_networks(self) -> list[str]:
        """The subscribers whose downlink is too thin for video now."""
        return [p for p, link in self.links.items() if link.poor]

    async def close_failed_publishers(self) -> list[tuple[str, Stream]]:
        """Close every publishing connection that failed and end its tracks (aiortc never
        brings a failed connection back; its page publishes anew, and until then the others
        would be offered tracks that carry nothing). A page that never applied the relay's
        answer ends this way too, once the relay's connectivity checks give up. Returns the
        streams closed: (participant, stream)."""
        failed = [key for key, pc in self.publishers.items() if pc.connectionState == "failed"]
        closed: list[tuple[str, Stream]] = []
        for participant_id, stream in failed:
            pc = self.publishers.get((participant_id, stream))
            if pc is not None and pc.connectionState == "failed":  # not replaced meanwhile
                await self.unpublish(participant_id, stream)
                closed.append((participant_id, stream))
        return closed

    async def unpublish(self, participant_id: str, stream: Stream) -> bool:
        """Stop one of a participant's streams; its tracks end for every subscriber."""
        pc = self.publishers.pop((participant_id, stream), None)
        await self._close_pc(pc)
        return pc is not None

    def _start_track(
        self,
        participant_id: str,
        track: MediaStreamTrack,
        receiver: RTCRtpReceiver,
        tap: Tap,
        codec: Any,
        source: Source,
    ) -> PublishedTrack:
        published = PublishedTrack(
            id=secrets.token_hex(8),
            visit_id=self.visit_id,
            participant_id=participant_id,
            kind=track.kind,
            receiver=receiver,
            remote=track,
            codec_mime=codec.mimeType,
            source=source,
            clock_rate=codec.clockRate,
            role=self.people.get(participant_id, ("", ""))[0],
            name=self.people.get(participant_id, ("", ""))[1],
            counters=self.counters,
        )
        self.tracks[published.id] = published
        for sink in self.relay.sinks:
            sink.track_started(self.visit_id, published)
        tap.attach(self._to_sinks(published))
        published.task = asyncio.create_task(self._pump(published), name=f"pump-{published.id}")
        return published

    def _to_sinks(self, track: PublishedTrack) -> Deliver:
        """What a published track's tap does with each frame, as the receiver assembles it
        (once per track; subscribers get the RTP packets, forward_rtp): the sinks get it
        with its arrival time. A sink's failure is logged once per track; the others and
        the receiver go on."""
        counters, sinks = self.counters, self.relay.sinks
        failed: set[int] = set()

        def deliver(frame: EncodedFrame) -> None:
            arrival = time.time()
            track.packets += 1
            counters.frames_in += 1
            counters.bytes_in += len(frame.data)
            for sink in sinks:
                try:
                    sink.frame(track, frame, arrival)
                except Exception:
                    if id(sink) not in failed:
                        failed.add(id(sink))
                        log.exception("a sink failed on track %s", track.id)

        return deliver

    async def _pump(self, track: PublishedTrack) -> None:
        """Wait for the publisher's track to end, then tell the sinks and the subscribers'
        copies. Its frames never come this way: the tap hands them on (_to_sinks)."""
        try:
            await track.remote.recv()  # returns a frame only if a decoder ran
            raise MediaError("decoded_frame", "relay received a decoded frame")
        except MediaStreamError:
            pass
        finally:
            if track.feedback is not None:
                track.feedback.stop()
            if track.recorded is not None:  # its other layers' packets stay in the totals
                self.counters.packets_in += track.recorded.other_packets
                track.recorded.other_packets = 0
            for forward in list(track.forwards.values()):
                _end_copy(forward)
            for sink in self.relay.sinks:
                sink.track_ended(track)
            self.tracks.pop(track.id, None)

    async def subscribe(self, participant_id: str, restart: bool = False) -> SubscribeOffer | None:
        """An offer carrying every live track published by the others. On the participant's
        existing subscription (unless ``restart``) it is a re-offer on the same connection:
        new tracks get a media section, gone ones turn ``inactive``, media already flowing
        goes on (no new ICE or DTLS). Otherwise (first subscription, ``restart`` after a
        failed connection, too many sections) a new connection; None while there is neither
        a connection nor a track (an offer without media sections is refused by browsers).
        One negotiation per subscriber at a time."""
        async with self._negotiation(participant_id):
            pc = self.subscribers.get(participant_id)
            chosen = [
                t
                for t in self.tracks.values()
                if t.participant_id != participant_id and t.remote.readyState == "live"
            ]
            if pc is not None and not restart and _renegotiable(pc):
                new = [t for t in chosen if t.id not in self.sending.get(participant_id, {})]
                if len(pc.getTransceivers()) + len(new) <= MAX_SUBSCRIBER_SECTIONS:
                    return await self._reoffer(participant_id, pc, chosen)
            return await self._new_subscription(participant_id, chosen)

    def _negotiation(self, participant_id: str) -> asyncio.Lock:
        """The lock that keeps one subscription negotiation per subscriber at a time."""
        return self._negotiating.setdefault(participant_id, asyncio.Lock())

    async def _new_subscription(
        self, participant_id: str, chosen: list[PublishedTrack]
    ) -> SubscribeOffer | None:
        await self._drop_subscription(participant_id)
        # closing the old connection waited: a track may have ended meanwhile
        chosen = [t for t in chosen if self.tracks.get(t.id) is t and t.remote.readyState == "live"]
        if not chosen:
            return None
        pc = create_peer_connection(self.relay.ice_servers.issue(RELAY_KEY))
        self.subscribers[participant_id] = pc
        self.transports[participant_id] = TransportFeedback(self._estimates_to(participant_id))
        sending = self.sending[participant_id] = {}
        for track in chosen:
            transceiver, forward = self._add_sender(pc, track, participant_id)
            track.forwards[participant_id] = forward
            sending[track.id] = transceiver

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                for t in self.tracks.values():
                    copy = t.forwards.get(participant_id)
                    if copy is not None and t.kind == "video":
                        copy.ask_keyframe()  # a new subscriber needs a keyframe now

        with seams.transport_wide_cc():
            await pc.setLocalDescription(await pc.createOffer())
        return self._offer(participant_id, pc, renegotiation=False)

    def _estimates_to(self, participant_id: str) -> Callable[[int, float], Awaitable[None]]:
        """Where the relay's estimate of a subscriber's connection goes: to each copy it
        receives, as its browser's REMB would."""

        async def estimated(bps: int, loss: float) -> None:
            for track in list(self.tracks.values()):
                forward = track.forwards.get(participant_id)
                if forward is not None:
                    await forward.estimated(bps, loss)

        return estimated

    async def _reoffer(
        self, participant_id: str, pc: RTCPeerConnection, chosen: list[PublishedTrack]
    ) -> SubscribeOffer:
        """Renegotiate the existing subscription to carry exactly ``chosen``."""
        sending = self.sending.setdefault(participant_id, {})
        waiting = self.waiting.setdefault(participant_id, {})
        live = {t.id for t in chosen}
        for track_id in [t for t in sending if t not in live]:
            transceiver = sending.pop(track_id)
            gone = self.tracks.get(track_id)
            forward = gone.forwards.pop(participant_id, None) if gone is not None else None
            for copy in (forward, waiting.pop(track_id, None)):
                if copy is not None:
                    _end_copy(copy)
            transceiver.direction = "inactive"  # aiortc cannot reject (port 0) a section
            with contextlib.suppress(Exception):
                await transceiver.stop()  # its sender's RTP and RTCP end; the section stays
        for track in chosen:
            if track.id not in sending:
                transceiver, forward = self._add_sender(pc, track, participant_id)
                sending[track.id] = transceiver
                waiting[track.id] = forward  # fed once the subscriber has answered
        with seams.transport_wide_cc():
            await pc.setLocalDescription(await pc.createOffer())
        return self._offer(participant_id, pc, renegotiation=True)

    def _add_sender(
        self, pc: RTCPeerConnection, track: PublishedTrack, participant_id: str
    ) -> tuple[RTCRtpTransceiver, ForwardTrack]:
        """A send-only media section for one published track on a subscriber's connection."""
        forward = ForwardTrack(
            track.kind,
            track.codec,
            track.clock_rate,
            track.request_keyframe,
            track.keyframes,
            self.transports.get(participant_id),
        )
        if track.layers is not None:
            forward.layered(track.layers, LayerChoice())
        transceiver = pc.addTransceiver(forward, direction="sendonly")
        forward.attach(transceiver)
        if track.feedback is not None:
            forward.on_bandwidth = track.feedback.report
        transceiver.setCodecPreferences(_preferences(track))
        forward_keyframe_requests(transceiver.sender, forward.ask_keyframe, self.counters)
        count_nacks_received(transceiver.sender, self.counters)
        return transceiver, forward

    def _offer(
        self, participant_id: str, pc: RTCPeerConnection, renegotiation: bool
    ) -> SubscribeOffer:
        offered = []
        for track_id, transceiver in self.sending.get(participant_id, {}).items():
            t = self.tracks.get(track_id)
            if t is not None:
                offered.append(
                    OfferedTrack(str(transceiver.mid), t.id, t.participant_id, t.kind, t.source)
                )
        return SubscribeOffer(str(pc.localDescription.sdp), offered, renegotiation)

    async def view(self, participant_id: str, heights: Mapping[str, int]) -> None:
        """How tall the subscriber shows each picture it receives (media section's MID →
        device pixels; 0: not shown): each simulcast track's layer is chosen again, none
        higher than the picture needs (a gallery of small tiles gets the half-size layers).
        MIDs it does not receive are ignored (a re-offer may have removed them)."""
        mids = {
            str(transceiver.mid): track_id
            for track_id, transceiver in self.sending.get(participant_id, {}).items()
        }
        waiting = self.waiting.get(participant_id, {})
        changed = []
        for mid, height in heights.items():
            track = self.tracks.get(mids.get(mid, ""))
            if track is None or track.kind != "video":
                continue
            forward = track.forwards.get(participant_id) or waiting.get(track.id)
            if forward is not None and forward.shown_height != height:
                forward.shown_height = height
                changed.append(track)
        for track in changed:
            await self.choose_layers(track)

    async def answer(self, participant_id: str, answer_sdp: str) -> None:
        async with self._negotiation(participant_id):
            pc = self.subscribers.get(participant_id)
            if pc is None:
                raise MediaError("not_subscribed", "尚未订阅")
            if pc.signalingState != "have-local-offer":
                raise MediaError("no_offer", "没有待应答的订阅请求")
            answer_sdp = screen_sdp(answer_sdp, self.relay.allowed_networks)
            with seams.transport_wide_cc():
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
            # tracks added by a re-offer start now, from a keyframe
            for track_id, forward in self.waiting.pop(participant_id, {}).items():
                track = self.tracks.get(track_id)
                if track is None:
                    _end_copy(forward)
                    continue
                track.forwards[participant_id] = forward
                if track.kind == "video":
                    forward.ask_keyframe()

    async def _drop_subscription(self, participant_id: str) -> None:
        """Close a participant's subscription and stop feeding its copies of the tracks."""
        for track in self.tracks.values():
            forward = track.forwards.pop(participant_id, None)
            if forward is not None:
                _end_copy(forward)
        for forward in self.waiting.pop(participant_id, {}).values():
            _end_copy(forward)
        self.sending.pop(participant_id, None)
        self.transports.pop(participant_id, None)
        await self._close_pc(self.subscribers.pop(participant_id, None))

    async def leave(self, participant_id: str) -> bool:
        """The participant is gone: its subscription and publications close. True when it
        was publishing (the others' subscriptions carried its tracks)."""
        self.gone.add(participant_id)
        async with self._negotiation(participant_id):
            await self._drop_subscription(participant_id)
        self._negotiating.pop(participant_id, None)
        published = False
        for stream in Stream:
            published = await self.unpublish(participant_id, stream) or published
            self._publishing.pop((participant_id, stream), None)
        return published

    async def close(self) -> None:
        for participant_id in {*(p for p, _ in self.publishers), *self.subscribers}:
            await self.leave(participant_id)

    async def _close_pc(self, pc: RTCPeerConnection | None) -> None:
        if pc is not None:
            # its RTP counts stay in the totals: the room's, or the relay's once it closed
            open_room = self.relay.rooms.get(self.visit_id) is self
            peer_traffic(pc, self.counters if open_room else self.relay.retired)
            with contextlib.suppress(Exception):
                await pc.close()
            # a publisher's connection closed before its DTLS was up: its receivers never
            # started, so aiortc leaves their tracks live; ending them ends their pumps,
            # which take them out of the room and tell the sinks and subscribers' copies
            for receiver in pc.getReceivers():
                seams.end_remote_track(receiver)


def _end_copy(forward: ForwardTrack) -> None:
    """A subscriber's copy of a published track ends: its sender stops sending it."""
    forward.end()


_SendNack = Callable[[int, list[int]], Awaitable[None]]


def _nacks_of(recorded: RecordedStream) -> Callable[[_SendNack], _SendNack]:
    """The receiver's NACKs of a simulcast track go upstream in the numbers of the layer
    being recorded (the receiver sees one continuous stream, media/layers.py)."""

    def wrap(original: _SendNack) -> _SendNack:
        recorded.send_nack = original

        async def send(media_ssrc: int, lost: list[int]) -> None:
            ssrc, numbers = recorded.upstream(media_ssrc, lost)
            if numbers:
                await original(ssrc, numbers)

        return send

    return wrap


def _renegotiable(pc: RTCPeerConnection) -> bool:
    """Whether a subscription can take a re-offer: not closed and not failed (aiortc has no
    ICE restart; a failed connection is replaced, docs/relay-design.md)."""
    return pc.connectionState not in ("closed", "failed") and pc.signalingState != "closed"


def _preferences(track: PublishedTrack) -> list[Any]:
    """The publisher's codec first (the sender packetizes with the first one), and RTX."""
    capabilities = RTCRtpSender.getCapabilities(track.kind).codecs
    chosen = [c for c in capabilities if c.mimeType.lower() == track.codec_mime.lower()]
    rtx = [c for c in capabilities if c.mimeType.lower().endswith("/rtx")]
    return chosen[:1] + rtx[:1]


class Relay:
    """All rooms of this node."""

    def __init__(
        self,
        ice_servers: IceServers | None = None,
        sinks: Sequence[TrackSink] = (),
        allowed_networks: Sequence[Network] | None = None,
        max_video_kbps: int = 1500,
        poor_network_kbps: int = 150,
    ) -> None:
        """``allowed_networks``: where ICE checks may go (default: the networks of the
        announced addresses, media/transport.py). ``max_video_kbps``: the most a publisher's
        video is told it may send (all of it while no subscriber reports less).
        ``poor_network_kbps``: a subscriber's downlink below this is too thin for video
        (media/quality.py)."""
        seams.check_seams()  # refuse to run on aiortc/aioice internals it does not know
        use_draining_sockets()
        seams.use_fast_clock()
        seams.quiet_closed_connects()  # a connection closed while connecting is no error
        seams.accept_rid_extensions()  # simulcast publishers name their layers with them
        seams.offer_transport_wide_cc()  # subscribers' feedback: media/congestion.py
        self.ice_servers = ice_servers or IceServers()
        self.allowed_networks = (
            list(allowed_networks)
            if allowed_networks is not None
            else default_allowed_networks(announced())
        )
        self.sinks = list(sinks)
        self.max_video_kbps = max_video_kbps
        self.poor_network_kbps = poor_network_kbps
        self.rooms: dict[str, Room] = {}
        self.retired = Traffic()  # the counts of rooms that have closed

    def room(self, visit_id: str) -> Room:
        return self.rooms.setdefault(visit_id, Room(self, visit_id))

    async def close_room(self, visit_id: str) -> None:
        """Nobody is left, or the visit ended: its recording (if any) stops with it."""
        room = self.rooms.pop(visit_id, None)
        if room is not None:
            self.retired.add(room.counters)  # its connections' counts follow as they close
            room.stop_recording()
            await room.close()
