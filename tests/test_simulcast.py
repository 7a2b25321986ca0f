"""Simulcast with a real browser: Chromium publishes its camera as two layers (as the call
page does), the relay gives a subscriber whose estimate is thin the half-size layer and one
with room the full picture, without a gap in its video, while the recording keeps the full
picture throughout."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import time
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp import web
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from playwright.async_api import async_playwright

from media import seams
from media.bandwidth import BandwidthReport
from media.encoded import EncodedFrame
from media.room import FIRST_REPORTS_S, PublishedTrack, Relay
from media.transport import create_peer_connection
from tests.conftest import launch_chromium
from tests.media_fixtures import write_counter_y4m

# what web/static/call.js publishes (CAMERA_LAYERS)
LAYERS = [
    {"rid": "l", "scaleResolutionDownBy": 2, "maxBitrate": 150000},
    {"rid": "f", "scaleResolutionDownBy": 1},
]
PUBLISH = """
async (encodings) => {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: true, video: { width: 640, height: 480 },
  });
  const pc = new RTCPeerConnection();
  window.pc = pc;
  for (const t of stream.getTracks()) {
    const init = { direction: "sendonly" };
    if (t.kind === "video") init.sendEncodings = encodings;
    pc.addTransceiver(t, init);
  }
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === "complete") done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && done();
  });
  return pc.localDescription.sdp;
}
"""


class KeyframeSizes:
    """A sink that decodes the recorded video's keyframes only, to read their size."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []
        self.frames = 0
        self._decoder: Any = av.CodecContext.create("vp8", "r")

    def start(self, visit_id: str, details: dict[str, Any] | None = None) -> None: ...

    def stop(self, visit_id: str) -> None: ...

    def track_started(self, visit_id: str, track: PublishedTrack) -> None: ...

    def track_ended(self, track: PublishedTrack) -> None: ...

    def frame(self, track: PublishedTrack, frame: EncodedFrame, arrival: float) -> None:
        if track.kind != "video":
            return
        self.frames += 1
        if frame.is_keyframe:
            decoded = self._decoder.decode(av.Packet(frame.data))
            self.sizes += [(f.width, f.height) for f in decoded]


async def _until(predicate: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@pytest.mark.browser
async def test_a_thin_subscriber_gets_the_half_size_layer_and_the_recording_the_full(
    tmp_path: Path,
) -> None:
    camera = write_counter_y4m(tmp_path / "camera.y4m")
    sink = KeyframeSizes()
    relay = Relay(allowed_networks=[ipaddress.ip_network("127.0.0.0/8")], sinks=[sink])
    room = relay.room("visit")

    async def blank(_: web.Request) -> web.Response:
        return web.Response(text="<html></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", blank)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    subscriber = create_peer_connection()
    frames: list[tuple[float, int]] = []  # (arrival, height) of each decoded frame
    watching: set[asyncio.Future[None]] = set()

    async def watch(track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                frames.append((time.monotonic(), frame.height))
        except MediaStreamError:
            pass

    @subscriber.on("track")
    def on_track(track: Any) -> None:
        if track.kind == "video":
            receiver = next(r for r in subscriber.getReceivers() if r.track is track)
            seams.stop_receive_estimator(receiver)  # its estimate is the test's to set
            watching.add(asyncio.ensure_future(watch(track)))

    try:
        async with async_playwright() as pw:
            browser = await launch_chromium(pw, f"--use-file-for-fake-video-capture={camera}")
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            offer = await page.evaluate(PUBLISH, LAYERS)
            assert "a=simulcast:send l;f" in offer
            answer = await room.publish("judge", offer)
            assert "a=simulcast:recv l;f" in answer
            await page.evaluate(
                "a => window.pc.setRemoteDescription({type: 'answer', sdp: a})", answer
            )
            video = next(t for t in room.tracks.values() if t.kind == "video")
            layers = video.layers
            assert layers is not None
            await _until(
                lambda: all(layer.active(time.monotonic()) for layer in layers.layers),
                30,
                "both layers flowing",
            )
            # the recording starts on the first layer heard and moves to the full picture
            await _until(lambda: (640, 480) in sink.sizes, 10, "the full picture recorded")
            from_full = sink.sizes.index((640, 480))

            made = await room.subscribe("petitioner")
            assert made is not None
            await subscriber.setRemoteDescription(RTCSessionDescription(made.sdp, "offer"))
            await subscriber.setLocalDescription(await subscriber.createAnswer())
            await room.answer("petitioner", subscriber.localDescription.sdp)
            await _until(lambda: len(frames) > 30, 30, "the subscriber's first frames")
            assert frames[-1][1] == 480  # no estimate yet: the full picture

            copy = video.forwards["petitioner"]

            async def estimate(bps: int, lost: float = 0.0) -> None:
                copy.bandwidth = BandwidthReport(bps, time.monotonic())
                copy.loss = (lost, time.monotonic())
                await room.choose_layers(video)

            started = copy.started
            assert started is not None
            await _until(
                lambda: time.monotonic() - started >= FIRST_REPORTS_S, 10, "estimates counted"
            )
            # far below the full layer's bitrate, and losing packets: down at once
            await estimate(200_000, lost=0.1)
            switched = time.monotonic()
            await _until(lambda: frames[-1][1] == 240, 10, "the half-size layer")
            down = next(t for t, h in frames if t > switched and h == 240)
            assert down - switched < 2  # its keyframe asked for and forwarded
            await estimate(200_000, lost=0.1)
            await _until(lambda: frames[-1][0] - down > 2, 10, "two seconds on it")
            assert {h for t, h in frames if t >= down} == {240}
            await estimate(5_000_000)  # room again: the full picture
            back = time.monotonic()
            await _until(lambda: frames[-1][1] == 480, 10, "the full picture again")
            around = [t for t, _ in frames if switched - 1 < t]
            gaps = [b - a for a, b in itertools.pairwise(around)]
            assert max(gaps) < 0.5, max(gaps)  # each change of layer went without a freeze
            assert copy.switches >= 2 and back > switched
            assert room.traffic().layer_switches == copy.switches  # what /metrics reads
            # the recording kept the publisher's full picture since, frames flowing
            assert set(sink.sizes[from_full:]) == {(640, 480)}, sink.sizes
            assert video.recorded is not None and video.recorded.layer is layers.layers[1]
            recorded = sink.frames
            await _until(lambda: sink.frames > recorded + 30, 10, "the recording going on")
            await browser.close()
    finally:
        await subscriber.close()
        await relay.close_room("visit")
        await runner.cleanup()
