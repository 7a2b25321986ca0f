"""Test media that can be recognised after a trip through encoders and the relay: a y4m
video whose every frame carries its own number as large black/white blocks (with a parity
block), over a smooth moving background, and helpers to read the number back and compare a
received frame with its source (PSNR)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from media.encoded import EncodedFrame
from media.room import PublishedTrack, Room
from media.transport import create_peer_connection

WIDTH, HEIGHT, FPS = 640, 480, 30
BITS = 7  # frame numbers 0..127
BLOCK, GAP, TOP, LEFT = 64, 8, 400, 32

Luma = npt.NDArray[np.uint8]


def _blocks() -> list[tuple[int, int]]:
    """Top-left corners of the BITS number blocks and the parity block."""
    return [(LEFT + k * (BLOCK + GAP), TOP) for k in range(BITS + 1)]


def counter_frame(index: int) -> Luma:
    """The luma plane (limited range, 16..235) of frame ``index``."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    phase = index / 120.0
    background = 120 + 60 * np.sin(2 * math.pi * (x / 400 + phase)) * np.cos(
        2 * math.pi * (y / 600 + phase / 2)
    )
    frame = background.astype(np.uint8)
    bits = [(index >> k) & 1 for k in range(BITS)]
    bits.append(sum(bits) % 2)
    for bit, (bx, by) in zip(bits, _blocks(), strict=True):
        frame[by : by + BLOCK, bx : bx + BLOCK] = 235 if bit else 16
    return frame


def write_counter_y4m(path: Path, frames: int = 120) -> Path:
    """A 640x480 30 fps 4:2:0 y4m of ``frames`` numbered frames."""
    chroma = np.full((HEIGHT // 2, WIDTH // 2), 128, np.uint8).tobytes()
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            out.write(b"FRAME\n")
            out.write(counter_frame(i).tobytes())
            out.write(chroma)
            out.write(chroma)
    return path


def to_limited(full: npt.NDArray[np.floating] | Luma) -> npt.NDArray[np.float32]:
    """Full-range luma (as a canvas gives it) to limited range (as the y4m holds it)."""
    return np.asarray(np.asarray(full, np.float32) * 219 / 255 + 16, np.float32)


def read_counter(luma: Luma, limited: bool = True) -> int | None:
    """The frame number shown in a received 640x480 frame, or None when the blocks are not
    clearly black or white (a frame in transition, or not our pattern)."""
    frame = np.asarray(luma, np.float32) if limited else to_limited(luma)
    if frame.shape != (HEIGHT, WIDTH):
        return None
    bits = []
    for bx, by in _blocks():
        centre = frame[by + 16 : by + BLOCK - 16, bx + 16 : bx + BLOCK - 16].mean()
        if centre > 170:
            bits.append(1)
        elif centre < 80:
            bits.append(0)
        else:
            return None
    if sum(bits[:BITS]) % 2 != bits[BITS]:
        return None
    return sum(bit << k for k, bit in enumerate(bits[:BITS]))


def psnr(received: Luma, index: int, limited: bool = True) -> float:
    """PSNR (dB) of a received luma plane against source frame ``index``."""
    frame = np.asarray(received, np.float32) if limited else to_limited(received)
    mse = float(np.mean((frame - counter_frame(index).astype(np.float32)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(235.0**2 / mse)


async def av_offer() -> RTCPeerConnection:
    """An aiortc peer offering to send aiortc's test video and audio (its offer is its
    ``localDescription``)."""
    pc = create_peer_connection()
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc


async def publish_av(room: Room, who: str) -> RTCPeerConnection:
    """An aiortc peer publishing aiortc's test video and audio into ``room`` as ``who``;
    the relay's answer is its ``remoteDescription``."""
    pc = await av_offer()
    answer = await room.publish(who, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc


class PacketCounter:
    """A relay sink that measures, per participant and kind, how much media the relay has
    passed on while the visit was being recorded (from the packets' own RTP timestamps):
    tests wait for "N seconds recorded" instead of sleeping."""

    RATES: ClassVar[dict[str, int]] = {"audio": 48000, "video": 90000}

    def __init__(self) -> None:
        self.recording = False
        self.span: dict[tuple[str, str], tuple[int, int]] = {}  # (participant, kind) → pts

    def start(self, visit_id: str, details: dict[str, Any] | None = None) -> None:
        self.recording = True

    def stop(self, visit_id: str) -> None:
        self.recording = False

    def track_started(self, visit_id: str, track: PublishedTrack) -> None:
        return None

    def frame(self, track: PublishedTrack, frame: EncodedFrame, arrival: float) -> None:
        if not self.recording:
            return
        key = (track.participant_id, track.kind)
        first, _ = self.span.get(key, (frame.pts, 0))
        self.span[key] = (first, frame.pts)

    def track_ended(self, track: PublishedTrack) -> None:
        return None

    def seconds(self, participant_id: str, kind: str = "audio") -> float:
        first, last = self.span.get((participant_id, kind), (0, 0))
        return max(0.0, (last - first) / self.RATES[kind])

    def recorded(self, seconds: float, *participants: str) -> Callable[[], Awaitable[bool]]:
        """A condition for ``tests.helpers.wait_for``: every one of ``participants`` has
        ``seconds`` of audio and of video recorded."""

        async def check() -> bool:
            return all(
                self.seconds(p, kind) >= seconds for p in participants for kind in self.RATES
            )

        return check


def fail_connection(pc: Any) -> None:
    """Mark ``pc`` failed, as aiortc does when its ICE or DTLS transport fails (its checks
    time out after tens of seconds, too long to wait for in a test)."""
    pc._RTCPeerConnection__connectionState = "failed"
