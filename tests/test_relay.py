"""The relay forwards encoded media: an aiortc publisher → Relay → an aiortc subscriber on
127.0.0.1 with no STUN. What arrives decodes, is byte-identical to what the relay received,
and no decoder is ever created (the subscriber's frames are decoded here with PyAV)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import socket
import types
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import av
import pytest
from aiortc import (
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs import h264, opus, vpx
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import RtpPacket

import media.room
from config.settings import Settings
from media import seams
from media.encoded import EncodedFrame, tap_receiver
from media.errors import MediaError
from media.room import PublishedTrack, Relay, Room, Source, Stream, SubscribeOffer
from media.transport import announce_addresses, create_peer_connection, use_port_range
from tests.conftest import MakeClient
from tests.helpers import login, wait_for
from tests.media_fixtures import av_offer, fail_connection, publish_av
from tests.visits import Peer, _cookie, room_events


class HashSink:
    """A recorder stand-in: remembers a hash of every packet the relay received."""

    def __init__(self) -> None:
        self.hashes: dict[str, set[str]] = defaultdict(set)
        self.started: list[str] = []
        self.ended: list[str] = []

    def start(self, visit_id: str, details: dict[str, Any] | None = None) -> None:
        return None

    def stop(self, visit_id: str) -> None:
        return None

    def track_started(self, visit_id: str, track: PublishedTrack) -> None:
        self.started.append(track.kind)

    def frame(self, track: PublishedTrack, frame: EncodedFrame, arrival: float) -> None:
        self.hashes[track.kind].add(hashlib.sha256(frame.data).hexdigest())

    def track_ended(self, track: PublishedTrack) -> None:
        self.ended.append(track.kind)


@pytest.fixture
def decoders_created(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every aiortc decoder constructed in this process (there must be none)."""
    created: list[str] = []
    for cls in (vpx.Vp8Decoder, opus.OpusDecoder, h264.H264Decoder):
        original = cls.__init__

        def spy(
            self: Any, *args: Any, _name: str = cls.__name__, _orig: Any = original, **kw: Any
        ) -> None:
            created.append(_name)
            _orig(self, *args, **kw)

        monkeypatch.setattr(cls, "__init__", spy)
    return created


async def _collect(track: Any, into: list[av.Packet[Any]]) -> None:
    try:
        while True:
            into.append(await track.recv())
    except MediaStreamError:
        pass


def test_a_tap_hands_frames_on_as_assembled_and_holds_them_until_attached() -> None:
    transport: Any = types.SimpleNamespace(state="new")
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    key, delta = b"\x10\x02\x00\x9d\x01\x2a", b"\x11\x02\x00"

    def frame(data: bytes, timestamp: int) -> Any:
        return types.SimpleNamespace(data=data, timestamp=timestamp)

    def receiver() -> RTCRtpReceiver:  # with its track, as setRemoteDescription leaves it
        made = RTCRtpReceiver("video", transport)
        made._track = RemoteStreamTrack(kind="video")  # type: ignore[attr-defined]
        return made

    held_receiver = receiver()
    tap = tap_receiver(held_receiver, hold=True)
    tap.put((codec, frame(key, 1000)))
    got: list[tuple[bytes, int, bool]] = []
    tap.attach(lambda f: got.append((f.data, f.pts, f.is_keyframe)))
    assert got == [(key, 1000, True)]  # the frame held until then, first
    tap.put((codec, frame(delta, 4000)))
    assert got[1:] == [(delta, 4000, False)]  # at once, in the receiver's handling
    assert seams.track_queue(held_receiver).empty()
    tap.put(None)  # the stop sentinel still goes to the decoder thread, which ends the track
    assert tap.get_nowait() is None

    flooded = tap_receiver(receiver(), hold=True)  # held frames are bounded
    for n in range(flooded.HOLD_MAX + 5):
        flooded.put((codec, frame(delta, n)))
    kept: list[int] = []
    flooded.attach(lambda f: kept.append(f.pts))
    assert kept == list(range(flooded.HOLD_MAX))

    plain_receiver = receiver()
    tap_receiver(plain_receiver).put((codec, frame(key, 2000)))  # no function: the track
    packet = seams.track_queue(plain_receiver).get_nowait()
    assert isinstance(packet, av.Packet) and bytes(packet) == key and packet.is_keyframe


class FailingSink(HashSink):
    def frame(self, track: PublishedTrack, frame: EncodedFrame, arrival: float) -> None:
        raise OSError("disk gone")


def test_a_failing_sink_is_logged_once_and_the_others_still_get_every_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing, kept = FailingSink(), HashSink()
    room = Relay(sinks=[failing, kept]).room("e" * 32)
    transport: Any = types.SimpleNamespace(state="new")
    receiver = RTCRtpReceiver("audio", transport)
    track = PublishedTrack(
        id="t1",
        visit_id=room.visit_id,
        participant_id="judge1",
        kind="audio",
        receiver=receiver,
        remote=RemoteStreamTrack(kind="audio"),
        codec_mime="audio/opus",
        counters=room.counters,
    )
    deliver = room._to_sinks(track)
    with caplog.at_level("ERROR", logger="vreception.media"):
        for n in range(3):
            deliver(EncodedFrame(bytes([n]), n * 960, True))
    assert len(kept.hashes["audio"]) == 3 and track.packets == 3
    assert [r.getMessage() for r in caplog.records] == ["a sink failed on track t1"]


async def test_relay_forwards_encoded_media_without_decoding(decoders_created: list[str]) -> None:
    announce_addresses(["127.0.0.1"])
    sink = HashSink()
    relay = Relay(sinks=[sink])
    room = relay.room("f" * 32)

    assert await room.subscribe("petitioner1") is None  # nothing to offer yet
    publisher = create_peer_connection()
    publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
    publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await publisher.setLocalDescription(await publisher.createOffer())
    answer = await room.publish("judge1", publisher.localDescription.sdp)
    await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    assert sorted(sink.started) == ["audio", "video"]

    subscriber: RTCPeerConnection = create_peer_connection()
    received: dict[str, list[av.Packet[Any]]] = {"video": [], "audio": []}
    tasks: list[asyncio.Task[None]] = []

    @subscriber.on("track")
    def on_track(track: Any) -> None:
        receiver = next(r for r in subscriber.getReceivers() if r.track is track)
        tap_receiver(receiver)  # the test decodes with PyAV itself, below
        tasks.append(asyncio.create_task(_collect(track, received[track.kind])))

    offer = await room.subscribe("petitioner1")
    assert offer is not None
    assert sorted((t.kind, t.source.value) for t in offer.tracks) == [
        ("audio", "microphone"),
        ("video", "camera"),
    ]
    await subscriber.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
    await subscriber.setLocalDescription(await subscriber.createAnswer())
    await room.answer("petitioner1", subscriber.localDescription.sdp)

    deadline = asyncio.get_running_loop().time() + 60
    while len(received["video"]) < 30 or len(received["audio"]) < 50:
        assert asyncio.get_running_loop().time() < deadline, {
            k: len(v) for k, v in received.items()
        }
        await asyncio.sleep(0.1)

    video = received["video"]
    assert video[0].is_keyframe  # gated: a subscriber starts on a keyframe
    decoder = av.CodecContext.create("vp8", "r")
    frames = [f for p in video for f in decoder.decode(av.Packet(bytes(p)))]
    assert len(frames) >= 25 and frames[0].width == 640 and frames[0].height == 480
    for kind in ("video", "audio"):
        got = {hashlib.sha256(bytes(p)).hexdigest() for p in received[kind]}
        assert got <= sink.hashes[kind], f"{kind}: subscriber got bytes the relay never received"
    assert decoders_created == []
    for track in room.tracks.values():  # frames reached the sink from the tap, not the track
        assert track.packets >= 30 and seams.track_queue(track.receiver).empty()
        assert track.task is not None and not track.task.done()

    await room.close()
    await publisher.close()
    await subscriber.close()
    for task in tasks:
        task.cancel()


async def test_visit_media_through_signaling(
    make_client: MakeClient,
    visit: dict[str, Any],
    decoders_created: list[str],
    migrated: Settings,
) -> None:
    """The judge publishes through /visit; the admitted petitioner subscribes and receives it.
    Before admission the petitioner may neither publish nor subscribe."""
    staff = await make_client()
    await login(staff, "judge_a")
    judge = await Peer().connect(staff, _cookie(staff))
    assert (await judge.call("join", {"v": 1, "visit_id": visit["id"]}))["ok"]
    guest = await Peer().connect(staff)
    joined = await guest.call(
        "join", {"v": 1, "visit_id": visit["id"], "code": visit["codes"]["petitioner"]}
    )
    early = await guest.call("subscribe")
    assert early["error"]["code"] == "not_admitted"  # still in the lobby

    publisher = create_peer_connection()
    publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
    publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await publisher.setLocalDescription(await publisher.createOffer())
    answer = await judge.call("publish", {"type": "offer", "sdp": publisher.localDescription.sdp})
    assert answer["ok"] and answer["type"] == "answer"
    await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    assert (await judge.call("admit", {"participant_id": joined["participant_id"]}))["ok"]
    await guest.next("admitted")
    subscriber = create_peer_connection()
    received: dict[str, list[av.Packet[Any]]] = {"video": [], "audio": []}
    tasks: list[asyncio.Task[None]] = []

    @subscriber.on("track")
    def on_track(track: Any) -> None:
        receiver = next(r for r in subscriber.getReceivers() if r.track is track)
        tap_receiver(receiver)
        tasks.append(asyncio.create_task(_collect(track, received[track.kind])))

    offer = await guest.call("subscribe")
    assert offer["ok"] and offer["type"] == "offer"
    await subscriber.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
    await subscriber.setLocalDescription(await subscriber.createAnswer())
    assert (
        await guest.call(
            "subscribe_answer", {"type": "answer", "sdp": subscriber.localDescription.sdp}
        )
    )["ok"]
    deadline = asyncio.get_running_loop().time() + 60
    while len(received["video"]) < 20 or len(received["audio"]) < 20:
        assert asyncio.get_running_loop().time() < deadline, {
            k: len(v) for k, v in received.items()
        }
        await asyncio.sleep(0.1)
    assert received["video"][0].is_keyframe
    assert {(t["role"], t["source"]) for t in offer["tracks"]} == {
        ("judge", "camera"),
        ("judge", "microphone"),
    }

    # the judge shows evidence on a second connection; the petitioner is told and sees it
    evidence = create_peer_connection()
    evidence.addTransceiver(VideoStreamTrack(), direction="sendonly")
    await evidence.setLocalDescription(await evidence.createOffer())
    shown = await judge.call(
        "publish",
        {"type": "offer", "sdp": evidence.localDescription.sdp, "stream": "evidence"},
    )
    assert shown["ok"], shown
    await evidence.setRemoteDescription(RTCSessionDescription(sdp=shown["sdp"], type="answer"))
    changed = await guest.next("tracks_changed")
    assert changed["participant"]["evidence"] is True
    again = await guest.call("subscribe")
    assert sorted(t["source"] for t in again["tracks"]) == ["camera", "evidence", "microphone"]
    assert offer["renegotiation"] is False and again["renegotiation"] is True  # the same pc
    assert (await judge.call("unpublish", {"stream": "evidence"}))["ok"]
    assert (await guest.next("tracks_changed"))["participant"]["evidence"] is False
    events = await room_events(migrated, visit["id"])
    assert [(e.detail["event"], e.detail["role"]) for e in events] == [
        ("joined", "judge"),
        ("joined", "petitioner"),
        ("evidence_shown", "judge"),
        ("evidence_stopped", "judge"),
    ]
    await evidence.close()

    too_big = await judge.call("publish", {"type": "offer", "sdp": "x" * (64 * 1024 + 1)})
    assert too_big["error"]["code"] == "invalid_message"
    assert decoders_created == []

    assert (await judge.call("end"))["ok"]
    for task in tasks:
        task.cancel()
    await publisher.close()
    await subscriber.close()
    await guest.close()
    await judge.close()


async def test_a_subscriber_receives_every_track_of_several_publishers() -> None:
    """Two parties publish audio + video; a third receives all four tracks on one connection
    (two transceivers of one kind must share the bundled transport)."""
    announce_addresses(["127.0.0.1"])
    relay = Relay()
    room = relay.room("e" * 32)
    publishers = [await publish_av(room, name) for name in ("judge1", "petitioner1")]

    subscriber = create_peer_connection()
    received: dict[str, list[av.Packet[Any]]] = {}
    tasks: list[asyncio.Task[None]] = []

    @subscriber.on("track")
    def on_track(track: Any) -> None:
        receiver = next(r for r in subscriber.getReceivers() if r.track is track)
        tap_receiver(receiver)
        tasks.append(asyncio.create_task(_collect(track, received.setdefault(track.id, []))))

    offer = await room.subscribe("lawyer1")
    assert offer is not None
    await subscriber.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
    await subscriber.setLocalDescription(await subscriber.createAnswer())
    await room.answer("lawyer1", subscriber.localDescription.sdp)

    deadline = asyncio.get_running_loop().time() + 60
    while len(received) < 4 or min(len(v) for v in received.values()) < 20:
        assert asyncio.get_running_loop().time() < deadline, {
            k: len(v) for k, v in received.items()
        }
        await asyncio.sleep(0.1)
    for track in room.tracks.values():
        assert track.forwards["lawyer1"].forwarded >= 20, (track.participant_id, track.kind)

    await room.close()
    for pc in (*publishers, subscriber):
        await pc.close()
    for task in tasks:
        task.cancel()


async def test_media_ports_stay_inside_the_configured_range() -> None:
    announce_addresses(["127.0.0.1"])
    use_port_range((41000, 41003))
    try:
        relay = Relay()
        room = relay.room("d" * 32)
        publishers = []
        for name in ("judge1", "petitioner1"):
            pc = await publish_av(room, name)
            answer = pc.remoteDescription.sdp  # the relay's answer
            ports = {
                int(line.split()[5])
                for line in answer.splitlines()
                if line.startswith("a=candidate:")
            }
            assert ports and all(41000 <= p <= 41003 for p in ports), ports
            publishers.append(pc)
        deadline = asyncio.get_running_loop().time() + 30
        while min(t.packets for t in room.tracks.values()) < 10:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
        # our own peers (publishers) took the other ports of the range as well; one more
        # connection finds none free and says so
        with pytest.raises(MediaError, match="41000-41003"):
            for _ in range(4):
                extra = create_peer_connection()
                publishers.append(extra)
                extra.addTransceiver(AudioStreamTrack(), direction="sendonly")
                await extra.setLocalDescription(await extra.createOffer())
        await room.close()
        for pc in publishers:
            await pc.close()
    finally:
        use_port_range(None)


async def test_a_drained_socket_reads_the_largest_datagram_whole_with_a_64_kib_buffer() -> None:
    """The draining reader asks for 64 KiB, not asyncio's 256 KiB (whose allocation costs
    an mmap per datagram), and that still holds the largest UDP payload."""
    loop = asyncio.get_running_loop()
    got: list[bytes] = []

    class Keep(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            got.append(data)

    transport, _ = await loop.create_datagram_endpoint(Keep, local_addr=("127.0.0.1", 0))
    assert seams.drain_transport(transport)
    assert seams.READ_SIZE == 65536 < getattr(transport, "max_size", 0)
    largest = bytes(range(256)) * 255 + bytes(range(227))  # 65,507 bytes
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.sendto(largest, transport.get_extra_info("sockname"))
    sender.sendto(b"\x80next", transport.get_extra_info("sockname"))
    deadline = loop.time() + 10
    while len(got) < 2:
        assert loop.time() < deadline
        await asyncio.sleep(0.01)
    assert got == [largest, b"\x80next"]
    sender.close()
    transport.close()


async def test_a_drained_socket_reads_every_queued_datagram_in_one_wake_up() -> None:
    """asyncio reads one datagram per event-loop iteration; the relay's sockets read all
    that is queued (up to seams.DRAIN_LIMIT) in one."""
    loop = asyncio.get_running_loop()
    iteration = 0
    arrivals: dict[str, list[int]] = {"asyncio": [], "drained": []}

    def count_iterations() -> None:
        nonlocal iteration
        iteration += 1
        if sum(map(len, arrivals.values())) < 20:
            loop.call_soon(count_iterations)

    class Arrivals(asyncio.DatagramProtocol):
        def __init__(self, name: str) -> None:
            self.name = name

        def datagram_received(self, data: bytes, addr: Any) -> None:
            arrivals[self.name].append(iteration)

    transports = {}
    for name in arrivals:
        transport, _ = await loop.create_datagram_endpoint(
            lambda name=name: Arrivals(name),  # type: ignore[misc]
            local_addr=("127.0.0.1", 0),
        )
        transports[name] = transport
    assert seams.drain_transport(transports["drained"])
    assert not seams.is_draining(transports["asyncio"])
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for transport in transports.values():
        for k in range(10):  # queued before the loop runs again
            sender.sendto(bytes([k]), transport.get_extra_info("sockname"))
    count_iterations()
    deadline = loop.time() + 10
    while sum(map(len, arrivals.values())) < 20:
        assert loop.time() < deadline
        await asyncio.sleep(0.01)
    sender.close()
    for transport in transports.values():
        transport.close()
    assert len(set(arrivals["drained"])) == 1  # all ten in one wake-up
    assert len(set(arrivals["asyncio"])) == 10  # one per iteration


async def test_srtp_is_handed_on_by_the_socket_reader_not_through_the_dtls_task() -> None:
    """Once a connection's DTLS transport is connected, its socket's reader unprotects each
    SRTP and SRTCP datagram and hands it to aiortc's routing itself: the ICE connection's
    queue, which wakes aiortc's DTLS task, gets none of them, and the transport's counters
    still count them."""
    announce_addresses(["127.0.0.1"])
    relay = Relay()
    room = relay.room("f" * 32)
    publisher = await publish_av(room, "judge1")
    relay_pc = room.publishers[("judge1", Stream.main)]
    dtls = relay_pc.getTransceivers()[0].receiver.transport
    connection = dtls.transport._connection
    queued: list[int] = []
    data_received = connection.data_received

    def spy(data: bytes, component: int) -> None:
        queued.append(data[0])
        data_received(data, component)

    connection.data_received = spy  # type: ignore[method-assign]
    deadline = asyncio.get_running_loop().time() + 30
    while min((t.packets for t in room.tracks.values()), default=0) < 5:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    before = dtls._get_stats()
    packets = {t.kind: t.packets for t in room.tracks.values()}
    queued.clear()
    while min(t.packets - packets[t.kind] for t in room.tracks.values()) < 20:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    after = dtls._get_stats()
    (stats_before,), (stats_after,) = before.values(), after.values()
    assert stats_after.packetsReceived - stats_before.packetsReceived >= 40
    assert stats_after.bytesReceived > stats_before.bytesReceived
    assert [b for b in queued if 127 < b < 192] == []  # no SRTP went through the queue
    await room.close()
    await publisher.close()


async def test_a_packet_handled_inline_that_must_wait_is_finished_by_a_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Handling runs at once in the reader; handling that has to wait (a send through a
    TURN channel not yet bound) goes on in a task, with what it awaited; one that fails is
    logged, and the reader goes on."""
    done: list[str] = []

    async def at_once() -> None:
        done.append("at once")

    seams.run_inline(at_once())
    assert done == ["at once"]  # before any other callback ran

    ready = asyncio.get_running_loop().create_future()

    async def waits() -> None:
        done.append("waits: " + await ready)

    seams.run_inline(waits())
    assert done == ["at once"]
    ready.set_result("got it")
    deadline = asyncio.get_running_loop().time() + 5
    while len(done) < 2:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    assert done == ["at once", "waits: got it"]

    failing = asyncio.get_running_loop().create_future()

    async def fails_now() -> None:
        raise ConnectionError("not connected")

    async def fails_later() -> None:
        await failing

    with caplog.at_level("ERROR", logger="vreception.media"):
        seams.run_inline(fails_now())
        seams.run_inline(fails_later())
        failing.set_exception(OSError("gone"))
        while len(caplog.records) < 2:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [ConnectionError, OSError]


async def test_h264_only_publisher_is_forwarded_as_h264(decoders_created: list[str]) -> None:
    """A browser that offers only H.264: the relay forwards it as H.264, undecoded."""
    announce_addresses(["127.0.0.1"])
    relay = Relay()
    room = relay.room("c" * 32)
    publisher = create_peer_connection()
    transceiver = publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
    transceiver.setCodecPreferences(
        [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() in ("video/h264", "video/rtx")
        ]
    )
    await publisher.setLocalDescription(await publisher.createOffer())
    answer = await room.publish("judge1", publisher.localDescription.sdp)
    await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    assert [t.codec for t in room.tracks.values()] == ["h264"]

    subscriber = create_peer_connection()
    received: list[av.Packet[Any]] = []
    tasks: list[asyncio.Task[None]] = []

    @subscriber.on("track")
    def on_track(track: Any) -> None:
        receiver = next(r for r in subscriber.getReceivers() if r.track is track)
        tap_receiver(receiver)
        tasks.append(asyncio.create_task(_collect(track, received)))

    offer = await room.subscribe("petitioner1")
    assert offer is not None and "H264/90000" in offer.sdp
    await subscriber.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
    await subscriber.setLocalDescription(await subscriber.createAnswer())
    await room.answer("petitioner1", subscriber.localDescription.sdp)
    deadline = asyncio.get_running_loop().time() + 60
    while len(received) < 20:
        assert asyncio.get_running_loop().time() < deadline, len(received)
        await asyncio.sleep(0.1)
    assert received[0].opaque == "h264" and received[0].is_keyframe
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p in received for f in decoder.decode(av.Packet(bytes(p)))]
    assert len(frames) >= 15 and frames[0].width == 640
    assert decoders_created == []
    await room.close()
    await publisher.close()
    await subscriber.close()
    for task in tasks:
        task.cancel()


async def _answer(room: Room, who: str, pc: RTCPeerConnection, offer: SubscribeOffer) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    await room.answer(who, pc.localDescription.sdp)


def _section(sdp: str, mid: str) -> list[str]:
    """The lines of one media section of an SDP."""
    sections: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        if sections:
            sections[-1].append(line)
    return next(s for s in sections if f"a=mid:{mid}" in s)


def _directions(sdp: str) -> dict[str, str]:
    """Each media section's direction in an SDP, by mid."""
    out: dict[str, str] = {}
    mid, direction = "", ""
    for line in [*sdp.splitlines(), "m="]:
        if line.startswith("m=") and mid:
            out[mid] = direction
        if line.startswith("m="):
            mid, direction = "", ""
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line[2:].strip() in ("sendrecv", "sendonly", "recvonly", "inactive"):
            direction = line[2:].strip()
    return out


async def test_a_track_added_and_removed_renegotiates_the_same_connection() -> None:
    """Evidence shown and then stopped reaches a subscriber by a re-offer on its existing
    connection: the new section gets media, the gone one turns inactive, the camera that
    was already flowing never pauses, and the ICE and DTLS transports stay the same; when
    the publisher leaves, its sections turn inactive on the same connection too."""
    announce_addresses(["127.0.0.1"])
    relay = Relay()
    room = relay.room("b" * 32)
    judge = await publish_av(room, "judge1")

    subscriber = create_peer_connection()
    arrivals: dict[str, list[float]] = defaultdict(list)  # track id → arrival times
    tasks: list[asyncio.Task[None]] = []

    async def collect(track: Any) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                arrivals[track.id].append(loop.time())

    @subscriber.on("track")
    def on_track(track: Any) -> None:
        receiver = next(r for r in subscriber.getReceivers() if r.track is track)
        tap_receiver(receiver)
        tasks.append(asyncio.create_task(collect(track)))

    async def flowing(count: int, *mids: str) -> None:
        """Wait until the tracks of ``mids`` received ``count`` more packets each."""
        ids = {t.mid: t.receiver.track.id for t in subscriber.getTransceivers()}
        start = {mid: len(arrivals[ids[mid]]) for mid in mids}
        deadline = asyncio.get_running_loop().time() + 60
        while any(len(arrivals[ids[m]]) < start[m] + count for m in mids):
            counts = {m: len(arrivals[ids[m]]) for m in mids}
            assert asyncio.get_running_loop().time() < deadline, counts
            await asyncio.sleep(0.05)

    first = await room.subscribe("petitioner1")
    assert first is not None and not first.renegotiation
    await _answer(room, "petitioner1", subscriber, first)
    camera = next(t.mid for t in first.tracks if t.kind == "video")
    await flowing(30, camera)
    dtls = subscriber.getTransceivers()[0].receiver.transport
    ice = dtls.transport
    relay_pc = room.subscribers["petitioner1"]
    changes: list[str] = []
    dtls.on("statechange", lambda: changes.append(dtls.state))
    ice.on("statechange", lambda: changes.append(ice.state))
    shown_at = asyncio.get_running_loop().time()

    evidence = create_peer_connection()
    evidence.addTransceiver(VideoStreamTrack(), direction="sendonly")
    await evidence.setLocalDescription(await evidence.createOffer())
    answer = await room.publish("judge1", evidence.localDescription.sdp, Stream.evidence)
    await evidence.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    added = await room.subscribe("petitioner1")
    assert added is not None and added.renegotiation
    assert sorted(t.source.value for t in added.tracks) == ["camera", "evidence", "microphone"]
    shown = next(t.mid for t in added.tracks if t.source is Source.evidence)
    assert shown not in {t.mid for t in first.tracks}  # a new media section
    # the sections already flowing are offered exactly as before (nothing to reconfigure)
    for mid in (t.mid for t in first.tracks):
        assert _section(added.sdp, mid) == _section(first.sdp, mid)
    await _answer(room, "petitioner1", subscriber, added)
    await flowing(30, shown, camera)

    assert await room.unpublish("judge1", Stream.evidence)
    removed = await room.subscribe("petitioner1")
    assert removed is not None and removed.renegotiation
    assert sorted(t.source.value for t in removed.tracks) == ["camera", "microphone"]
    assert _directions(removed.sdp)[shown] == "inactive"
    assert _directions(removed.sdp)[camera] == "sendonly"
    assert _section(removed.sdp, camera) == _section(first.sdp, camera)
    await _answer(room, "petitioner1", subscriber, removed)
    await flowing(30, camera)

    # the same connection all along, and the camera never paused
    assert room.subscribers["petitioner1"] is relay_pc
    assert all(t.receiver.transport is dtls for t in subscriber.getTransceivers())
    assert dtls.transport is ice and dtls.state == "connected" and changes == []
    camera_id = next(t.receiver.track.id for t in subscriber.getTransceivers() if t.mid == camera)
    times = [t for t in arrivals[camera_id] if t >= shown_at]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 1.0, max(gaps)
    evidence_id = next(t.receiver.track.id for t in subscriber.getTransceivers() if t.mid == shown)
    stopped = len(arrivals[evidence_id])
    await flowing(30, camera)
    assert len(arrivals[evidence_id]) == stopped  # nothing more on the inactive section

    # the only publisher leaves: the subscription stays, every section inactive, ready for
    # whoever publishes next
    assert await room.leave("judge1")
    empty = await room.subscribe("petitioner1")
    assert empty is not None and empty.renegotiation and empty.tracks == []
    assert set(_directions(empty.sdp).values()) == {"inactive"}
    await _answer(room, "petitioner1", subscriber, empty)
    assert room.subscribers["petitioner1"] is relay_pc and dtls.state == "connected"

    await room.close()
    for pc in (judge, evidence, subscriber):
        await pc.close()
    for task in tasks:
        task.cancel()


def _tracks_only_of(room: Room, *participants: str) -> Callable[[], Awaitable[bool]]:
    """A condition for ``wait_for``: the room's tracks are those of ``participants`` only
    (none at all when none are named)."""

    async def check() -> bool:
        return {t.participant_id for t in room.tracks.values()} == set(participants)

    return check


async def test_a_publisher_gone_before_its_connection_was_up_leaves_no_track_behind() -> None:
    """A participant who leaves (its socket dropped) right after publishing, before its
    connection's DTLS was up: aiortc ends a remote track only through a receiver that had
    started, so its tracks stayed in the room for good and were offered to everyone who
    subscribed after, as pictures that never came (and the sinks never heard they ended)."""
    announce_addresses(["127.0.0.1"])
    sink = HashSink()
    room = Relay(sinks=[sink]).room("b" * 32)
    page = await av_offer()
    await room.publish("judge1", page.localDescription.sdp)  # its answer never reaches it
    assert sorted(t.kind for t in room.tracks.values()) == ["audio", "video"]

    assert await room.leave("judge1")
    assert await room.subscribe("petitioner1") is None  # nobody publishes: nothing offered

    await wait_for(_tracks_only_of(room), within=5)
    assert sorted(sink.ended) == ["audio", "video"]
    await room.close()
    await page.close()


async def test_a_publish_that_outlives_its_participant_leaves_no_track_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A participant publishes again (its connection had failed) and leaves while the relay
    is still closing the previous connection: the new connection, negotiated after the
    leave, would have had no one to close it, its tracks offered to everyone for good. It
    is refused instead."""
    announce_addresses(["127.0.0.1"])
    room = Relay().room("c" * 32)
    first = await publish_av(room, "judge1")
    closing, release = asyncio.Event(), asyncio.Event()
    close_pc = Room._close_pc

    async def slow_close(self: Room, pc: Any) -> None:
        if pc is not None and not closing.is_set():  # the previous connection: held here
            closing.set()
            await release.wait()
        await close_pc(self, pc)

    monkeypatch.setattr(Room, "_close_pc", slow_close)
    again = await av_offer()
    publishing = asyncio.ensure_future(room.publish("judge1", again.localDescription.sdp))
    await closing.wait()
    await room.leave("judge1")
    release.set()
    with pytest.raises(MediaError) as refused:
        await publishing
    assert refused.value.code == "participant_left"
    assert not room.publishers

    await wait_for(_tracks_only_of(room), within=5)
    await room.close()
    for pc in (first, again):
        await pc.close()


async def test_two_publishes_of_one_stream_keep_the_later_and_close_the_earlier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two publishes of a participant's camera arrive together (its camera switched while
    its network came back): they run one after the other, the later replaces the earlier,
    and every connection the relay made is either the one published or closed. Before,
    the second could slip in while the first closed the previous connection, and the
    first then took its place: a connection no one would ever close, its tracks offered to
    everyone for good."""
    announce_addresses(["127.0.0.1"])
    room = Relay().room("e" * 32)
    made: list[Any] = []

    def recorded_pc(*args: Any, **kwargs: Any) -> Any:
        made.append(create_peer_connection(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(media.room, "create_peer_connection", recorded_pc)
    first = await publish_av(room, "judge1")
    previous = room.publishers[("judge1", Stream.main)]
    closing, release = asyncio.Event(), asyncio.Event()
    close_pc = Room._close_pc

    async def slow_close(self: Room, pc: Any) -> None:
        if pc is previous:  # the first publish waits here while the second arrives
            closing.set()
            await release.wait()
        await close_pc(self, pc)

    monkeypatch.setattr(Room, "_close_pc", slow_close)
    offers = [await av_offer(), await av_offer()]
    publishing = asyncio.ensure_future(room.publish("judge1", offers[0].localDescription.sdp))
    await closing.wait()
    second = asyncio.ensure_future(room.publish("judge1", offers[1].localDescription.sdp))
    await asyncio.sleep(0)  # let the second publish run as far as it can
    release.set()
    await publishing
    await second

    kept = room.publishers[("judge1", Stream.main)]
    assert kept is made[-1] and len(made) == 3
    assert [pc.signalingState for pc in made] == ["closed", "closed", "stable"]

    async def only_the_kept_tracks() -> bool:
        receivers = set(kept.getReceivers())
        return len(room.tracks) == 2 and all(t.receiver in receivers for t in room.tracks.values())

    await wait_for(only_the_kept_tracks, within=5)
    await room.close()
    for pc in (first, *offers):
        await pc.close()


@pytest.mark.parametrize("then", ["leave", "unpublish"])
async def test_a_publish_stopped_while_it_negotiates_is_refused_and_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    """The participant leaves, or stops that stream, while the relay is still negotiating
    its publish (gathering candidates through a TURN server can take seconds): the publish
    is refused (so nothing is announced as shown after the participant left) and its
    connection and tracks go."""
    announce_addresses(["127.0.0.1"])
    room = Relay().room("f" * 32)
    negotiated, release = asyncio.Event(), asyncio.Event()
    negotiate = Room._negotiate

    async def slow_negotiate(self: Room, *args: Any) -> str:
        answer = await negotiate(self, *args)
        negotiated.set()
        await release.wait()
        return answer

    monkeypatch.setattr(Room, "_negotiate", slow_negotiate)
    offer = await av_offer()
    publishing = asyncio.ensure_future(room.publish("judge1", offer.localDescription.sdp))
    await negotiated.wait()
    if then == "leave":
        await room.leave("judge1")
    else:
        assert await room.unpublish("judge1", Stream.main)
    release.set()
    with pytest.raises(MediaError) as refused:
        await publishing
    assert refused.value.code == ("participant_left" if then == "leave" else "publish_stopped")
    assert not room.publishers

    await wait_for(_tracks_only_of(room), within=5)
    await room.close()
    await offer.close()


async def test_only_failed_publishing_connections_are_closed() -> None:
    """``close_failed_publishers`` closes a failed publishing connection and ends its tracks;
    a working one, and one still connecting, are left alone."""
    announce_addresses(["127.0.0.1"])
    room = Relay().room("9" * 32)
    judge = await publish_av(room, "judge1")
    offer = await av_offer()
    await room.publish("lawyer1", offer.localDescription.sdp)  # its answer never applied
    petitioner = await publish_av(room, "petitioner1")
    assert await room.close_failed_publishers() == []
    failed = room.publishers[("petitioner1", Stream.main)]
    fail_connection(failed)
    assert await room.close_failed_publishers() == [("petitioner1", Stream.main)]
    assert set(room.publishers) == {("judge1", Stream.main), ("lawyer1", Stream.main)}
    assert failed.signalingState == "closed"

    await wait_for(_tracks_only_of(room, "judge1", "lawyer1"), within=5)
    await room.close()
    for pc in (judge, offer, petitioner):
        await pc.close()


async def test_a_track_that_ends_while_a_subscription_restarts_is_not_offered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A subscriber restarts its subscription (its connection failed) and, while the relay
    closes the old connection, a publisher leaves: the new offer carries only the tracks
    still live, not a copy of a track that has already ended."""
    announce_addresses(["127.0.0.1"])
    room = Relay().room("8" * 32)
    judge = await publish_av(room, "judge1")
    lawyer = await publish_av(room, "lawyer1")
    first = await room.subscribe("petitioner1")
    assert first is not None and len(first.tracks) == 4
    drop = Room._drop_subscription

    async def drop_while_the_lawyer_leaves(self: Room, participant_id: str) -> None:
        await drop(self, participant_id)
        if participant_id == "petitioner1":
            await self.leave("lawyer1")

    monkeypatch.setattr(Room, "_drop_subscription", drop_while_the_lawyer_leaves)
    again = await room.subscribe("petitioner1", restart=True)
    monkeypatch.setattr(Room, "_drop_subscription", drop)
    assert again is not None
    assert {t.participant_id for t in again.tracks} == {"judge1"}
    # no media section, and no copy, for the tracks that ended
    assert again.sdp.count("\r\nm=") == 2
    assert set(room.sending["petitioner1"]) == {t.track_id for t in again.tracks}
    await room.close()
    for pc in (judge, lawyer):
        await pc.close()


async def test_a_subscription_is_replaced_on_restart_or_when_its_sections_run_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``restart`` (the page's connection failed: aiortc has no ICE restart) and a
    subscription that would outgrow MAX_SUBSCRIBER_SECTIONS get a new connection; an answer
    with no offer pending is refused."""
    announce_addresses(["127.0.0.1"])
    room = Relay().room("a" * 32)
    judge = await publish_av(room, "judge1")
    first = await room.subscribe("petitioner1")
    assert first is not None and not first.renegotiation
    pc = room.subscribers["petitioner1"]
    again = await room.subscribe("petitioner1")  # an offer not yet answered is offered anew
    assert again is not None and again.renegotiation and room.subscribers["petitioner1"] is pc
    restarted = await room.subscribe("petitioner1", restart=True)
    assert restarted is not None and not restarted.renegotiation
    assert room.subscribers["petitioner1"] is not pc and pc.signalingState == "closed"

    monkeypatch.setattr(media.room, "MAX_SUBSCRIBER_SECTIONS", 2)
    pc = room.subscribers["petitioner1"]
    lawyer = await publish_av(room, "lawyer1")
    grown = await room.subscribe("petitioner1")
    assert grown is not None and not grown.renegotiation and len(grown.tracks) == 4
    assert room.subscribers["petitioner1"] is not pc

    client = create_peer_connection()
    await _answer(room, "petitioner1", client, grown)
    with pytest.raises(MediaError) as refused:
        await room.answer("petitioner1", client.localDescription.sdp)
    assert refused.value.code == "no_offer"
    await room.close()
    for peer in (judge, lawyer, client):
        await peer.close()


async def test_a_packet_sent_without_awaiting_arrives_and_is_counted_as_aiortcs_send() -> None:
    """The forwarders send with seams.rtp_send_now: a plain call doing what aiortc's
    coroutine send does (protect, the nominated pair's socket, the transport's counters),
    and refusing as it does once the connection is closed."""
    announce_addresses(["127.0.0.1"])
    sending, receiving = create_peer_connection(), create_peer_connection()
    transceiver = sending.addTransceiver(VideoStreamTrack(), direction="sendonly")
    receiving.addTransceiver("video", direction="recvonly")
    await sending.setLocalDescription(await sending.createOffer())
    await receiving.setRemoteDescription(sending.localDescription)
    await receiving.setLocalDescription(await receiving.createAnswer())
    await sending.setRemoteDescription(receiving.localDescription)
    dtls = transceiver.sender.transport
    far = receiving.getTransceivers()[0].receiver.transport
    arrived: list[bytes] = []
    handle = far._handle_rtp_data

    async def spy(data: bytes, arrival_time_ms: int) -> None:
        arrived.append(data)
        await handle(data, arrival_time_ms)

    far._handle_rtp_data = spy  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while dtls.state != "connected" or far.state != "connected":
        assert loop.time() < deadline, "not connected"
        await asyncio.sleep(0.05)

    def counters() -> tuple[int, int]:
        stats = next(iter(dtls._get_stats().values()))
        return stats.packetsSent, stats.bytesSent

    numbers = itertools.count(1)

    def packet(payload: bytes) -> bytes:  # a stream of its own: SRTP checks replays per SSRC
        number = next(numbers)
        return RtpPacket(
            payload_type=96, sequence_number=number, ssrc=4321, payload=payload
        ).serialize()

    send_now = seams.rtp_send_now(dtls)
    before = counters()
    send_now(packet(b"sent-now"))
    now = counters()
    await dtls._send_rtp(packet(b"awaited!"))  # aiortc's own, the same size
    after = counters()
    assert now[0] - before[0] == after[0] - now[0] == 1
    assert now[1] - before[1] == after[1] - now[1] > len(packet(b"sent-now"))
    while not {b"sent-now", b"awaited!"} <= {RtpPacket.parse(d).payload for d in arrived}:
        assert loop.time() < deadline, "not received"
        await asyncio.sleep(0.05)
    await sending.close()
    await receiving.close()
    with pytest.raises(ConnectionError):
        send_now(packet(b"too late"))
