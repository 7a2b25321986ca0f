"""The composite of a visit: one H.264 + AAC MP4 with every party side by side (the evidence
large while it is shown) and an overlay naming the court, the petition, the parties and the
wall-clock time. Runs in a worker process, never in the relay's event loop.

Every per-track original is decoded once, in timeline order: each frame is placed at its
wall-clock time (the track's first-frame time plus its own timestamps), so gaps stay gaps
and rejoins land where they happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import av
import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from recorder.decode import decoded
from recorder.state import TrackFile, VisitRecording, role_name

log = logging.getLogger("vreception.recorder")

WIDTH, HEIGHT, FPS = 1280, 720, 15
SAMPLE_RATE = 48000
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
)

Image8 = npt.NDArray[np.uint8]
Progress = Callable[[float], None]


def find_font(configured: str | None = None) -> str | None:
    """A font with Chinese glyphs (fonts-noto-cjk), or None."""
    for candidate in (configured, *FONT_CANDIDATES):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@dataclass
class _Source:
    """One track's file with its place on the visit's timeline."""

    track: TrackFile
    path: Path
    offset: float  # seconds from the visit's start to the file's first frame


def _sources(folder: Path, recording: VisitRecording, kind: str) -> list[_Source]:
    out = []
    start = visit_start(recording)
    for track in recording.tracks:
        if track.kind != kind or track.wall_start is None:
            continue
        for name in track.files:
            path = folder / name
            if path.exists():  # every segment's timestamps count from the track's first frame
                out.append(_Source(track, path, track.wall_start - start))
    return out


def visit_start(recording: VisitRecording) -> float:
    starts = [t.wall_start for t in recording.tracks if t.wall_start is not None]
    return min(starts) if starts else recording.started_at


def visit_end(recording: VisitRecording) -> float:
    ends = [t.wall_end for t in recording.tracks if t.wall_end is not None]
    return max(ends) if ends else visit_start(recording)


def _video_frames(source: _Source) -> Iterator[tuple[float, av.VideoFrame]]:
    """(seconds on the visit timeline, frame) for every decodable frame; frames are
    converted only when shown (see _fit)."""
    for at, frame in decoded(source.path, "video"):
        yield source.offset + at, frame


def _audio_chunks(source: _Source) -> Iterator[tuple[float, npt.NDArray[np.float32]]]:
    """(seconds on the visit timeline, mono float samples at 48 kHz)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    for at, frame in decoded(source.path, "audio"):
        for out in resampler.resample(frame):
            yield source.offset + at, out.to_ndarray().reshape(-1).astype(np.float32)


class _Latest:
    """The frame a track shows at a given time (its latest frame not after it)."""

    def __init__(self, source: _Source) -> None:
        self.source = source
        self.frames = _video_frames(source)
        self.current: av.VideoFrame | None = None
        self.current_at = -1.0
        self.pending: tuple[float, av.VideoFrame] | None = next(self.frames, None)
        self.last_at = -1.0

    def at(self, t: float) -> av.VideoFrame | None:
        while self.pending is not None and self.pending[0] <= t:
            self.current_at, self.current = self.pending
            self.pending = next(self.frames, None)
        if self.current is None:
            return None
        if self.pending is None and t - self.current_at > 1.0:
            return None  # the track ended (left, or a gap): no frozen picture
        if (
            self.pending is not None
            and self.pending[0] - self.current_at > 2.0
            and t - self.current_at > 1.0
        ):
            return None  # inside a gap
        return self.current


class Planes:
    """A YUV 4:2:0 picture as three arrays: the composite is laid out in the encoder's own
    format, so no frame is converted from RGB (which cost more than encoding it)."""

    def __init__(self, y: Image8, u: Image8, v: Image8) -> None:
        self.y, self.u, self.v = y, u, v

    @classmethod
    def blank(cls, width: int, height: int, luma: int = 40) -> Planes:
        return cls(
            np.full((height, width), luma, np.uint8),
            np.full((height // 2, width // 2), 128, np.uint8),
            np.full((height // 2, width // 2), 128, np.uint8),
        )

    @classmethod
    def from_i420(cls, data: Image8, width: int, height: int) -> Planes:
        """From an I420 array (height * 3/2 rows of width), as PyAV and OpenCV give it;
        ``height`` a multiple of 4 and ``width`` of 2, so each chroma plane fills whole rows."""
        assert height % 4 == 0 and width % 2 == 0, (width, height)
        q = height // 4
        return cls(
            data[:height],
            data[height : height + q].reshape(height // 2, width // 2),
            data[height + q : height + 2 * q].reshape(height // 2, width // 2),
        )

    @classmethod
    def from_bgr(cls, image: Image8) -> Planes:
        h, w = image.shape[:2]
        return cls.from_i420(
            np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), np.uint8), w, h
        )

    def paste(self, other: Planes, x: int, y: int) -> None:
        """Copy ``other`` in at (x, y) (even), clipped to this picture."""
        h = min(other.y.shape[0], self.y.shape[0] - y)
        w = min(other.y.shape[1], self.y.shape[1] - x)
        if h <= 0 or w <= 0:
            return
        self.y[y : y + h, x : x + w] = other.y[:h, :w]
        self.u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = other.u[: h // 2, : w // 2]
        self.v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = other.v[: h // 2, : w // 2]

    def frame(self) -> av.VideoFrame:
        h, w = self.y.shape
        data = np.concatenate([self.y, self.u.reshape(h // 4, w), self.v.reshape(h // 4, w)])
        return av.VideoFrame.from_ndarray(data, format="yuv420p")


class Overlay:
    """Static text (Chinese, drawn once with a CJK font) and the live clock (OpenCV)."""

    def __init__(self, lines: list[str], font_path: str | None, tz: ZoneInfo) -> None:
        self.tz = tz
        self.banner = Planes.from_bgr(self._render(lines, font_path, 24))
        self.height = self.banner.y.shape[0]
        self.labels: dict[str, Planes] = {}
        self.font_path = font_path

    @staticmethod
    def _render(lines: list[str], font_path: str | None, size: int) -> Image8:
        font: Any = ImageFont.truetype(font_path, size) if font_path else ImageFont.load_default()
        height = -(-((size + 8) * max(1, len(lines)) + 8) // 4) * 4
        image = Image.new("RGB", (WIDTH, height), (20, 20, 20))
        draw = ImageDraw.Draw(image)
        for i, line in enumerate(lines):
            draw.text((12, 6 + i * (size + 8)), line, font=font, fill=(255, 255, 255))
        return np.asarray(image)[:, :, ::-1].copy()

    def label(self, text: str) -> Planes:
        if text not in self.labels:
            rendered = self._render([text], self.font_path, 20)
            width = min(WIDTH, 24 + 20 * len(text)) // 2 * 2
            self.labels[text] = Planes.from_bgr(np.ascontiguousarray(rendered[:, :width]))
        return self.labels[text]

    def draw(self, canvas: Planes, wall: float) -> None:
        canvas.paste(self.banner, 0, HEIGHT - self.height)
        clock = datetime.fromtimestamp(wall, self.tz).strftime("%Y-%m-%d %H:%M:%S")
        cv2.putText(
            canvas.y, clock, (WIDTH - 330, HEIGHT - self.height + 30), cv2.FONT_HERSHEY_SIMPLEX,
            0.8, 235, 2, cv2.LINE_AA,
        )  # fmt: skip


def _layout(n_cameras: int, evidence: bool, top: int) -> list[tuple[int, int, int, int]]:
    """Boxes (x, y, w, h): evidence first (large) when shown, then the cameras."""
    area_h = HEIGHT - top
    boxes: list[tuple[int, int, int, int]] = []
    if evidence:
        boxes.append((0, 0, WIDTH * 2 // 3, area_h))
        side = max(1, n_cameras)
        for i in range(n_cameras):
            boxes.append((WIDTH * 2 // 3, i * area_h // side, WIDTH // 3, area_h // side))
    else:
        cols = max(1, min(3, n_cameras))
        rows = max(1, -(-n_cameras // cols))
        for i in range(n_cameras):
            r, c = divmod(i, cols)
            boxes.append((c * WIDTH // cols, r * area_h // rows, WIDTH // cols, area_h // rows))
    even = [(x // 2 * 2, y // 2 * 2, w // 2 * 2, h // 2 * 2) for x, y, w, h in boxes]
    return even


def _fit(frame: av.VideoFrame, w: int, h: int) -> tuple[Planes, int, int]:
    """``frame`` scaled to fit w×h (one libswscale call, no colour conversion), and where
    it goes inside the box to be centred."""
    k = min(w / frame.width, h / frame.height)
    nw, nh = max(2, int(frame.width * k) // 2 * 2), max(4, int(frame.height * k) // 4 * 4)
    data = np.asarray(frame.reformat(width=nw, height=nh, format="yuv420p").to_ndarray(), np.uint8)
    return Planes.from_i420(data, nw, nh), (w - nw) // 4 * 2, (h - nh) // 4 * 2


def overlay_lines(recording: VisitRecording) -> list[str]:
    d = recording.details
    parties = "；".join(
        f"{role_name(t.role)} {t.name}"
        for t in {(t.role, t.name): t for t in recording.tracks if t.name}.values()
    )
    first = "　".join(x for x in (d.get("court_name", ""), d.get("receiving_court_name", "")) if x)
    second = "　".join(
        x
        for x in (
            f"案号 {d['petition_number']}" if d.get("petition_number") else "",
            parties,
        )
        if x
    )
    return [line for line in (first, second) if line] or ["远程视频接访"]


def render(
    folder: Path,
    recording: VisitRecording,
    out_path: Path,
    *,
    font_path: str | None = None,
    tz: ZoneInfo | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the composite MP4; returns its duration, frame count and size."""
    start, end = visit_start(recording), visit_end(recording)
    duration = max(0.0, end - start)
    overlay = Overlay(overlay_lines(recording), find_font(font_path), tz or ZoneInfo("UTC"))
    videos = [_Latest(s) for s in _sources(folder, recording, "video")]
    audio_sources = _sources(folder, recording, "audio")
    # a name the manifest neither signs nor checks (recorder/manifest.py SKIPPED_SUFFIXES),
    # removed if the render fails: a half-made composite is never part of the record
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        frames = _render(tmp, start, duration, overlay, videos, audio_sources, progress)
        tmp.replace(out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"duration": duration, "frames": frames, "bytes": out_path.stat().st_size}


def _render(
    tmp: Path,
    start: float,
    duration: float,
    overlay: Overlay,
    videos: list[_Latest],
    audio_sources: list[_Source],
    progress: Progress | None,
) -> int:
    """The composite's frames into ``tmp``; returns how many."""
    frames = 0
    with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        vstream: Any = out.add_stream("libx264", rate=FPS)
        vstream.width, vstream.height, vstream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        vstream.options = {"preset": "ultrafast", "crf": "26"}
        vstream.codec_context.time_base = Fraction(1, FPS)
        astream: Any = out.add_stream("aac", rate=SAMPLE_RATE)
        astream.layout = "mono"
        mixer = _Mixer(audio_sources, duration)
        total = int(duration * FPS)
        for i in range(total):
            t = i / FPS
            canvas = Planes.blank(WIDTH, HEIGHT)
            evidence: tuple[av.VideoFrame, str] | None = None
            cameras: list[tuple[av.VideoFrame, str]] = []
            for latest in videos:
                image = latest.at(t)
                if image is None:
                    continue
                track = latest.source.track
                label = f"{role_name(track.role)} {track.name}".strip()
                if track.source == "evidence":
                    evidence = evidence or (image, label + " 出示的证据")
                else:
                    cameras.append((image, label))
            boxes = _layout(len(cameras), evidence is not None, overlay.height)
            placed = ([evidence] if evidence else []) + cameras
            for (x, y, w, h), (image, label) in zip(boxes, placed, strict=False):
                tile, dx, dy = _fit(image, w, h)
                canvas.paste(tile, x + dx, y + dy)
                tag = overlay.label(label)
                canvas.paste(tag, x, y + h - tag.y.shape[0])
            overlay.draw(canvas, start + t)
            frame = canvas.frame()
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            for packet in vstream.encode(frame):
                out.mux(packet)
            for aframe in mixer.until(t + 1 / FPS):
                for packet in astream.encode(aframe):
                    out.mux(packet)
            frames += 1
            if progress is not None and i % (FPS * 10) == 0:
                progress(i / max(1, total))
        for packet in vstream.encode(None):
            out.mux(packet)
        for aframe in mixer.until(duration, final=True):
            for packet in astream.encode(aframe):
                out.mux(packet)
        for packet in astream.encode(None):
            out.mux(packet)
    return frames


class _Mixer:
    """Sums every audio track into one mono timeline, in 1024-sample AAC frames."""

    FRAME = 1024

    def __init__(self, sources: list[_Source], duration: float) -> None:
        self.readers = [_audio_chunks(s) for s in sources]
        self.pending: list[tuple[float, npt.NDArray[np.float32]] | None] = [
            next(r, None) for r in self.readers
        ]
        self.total = int(duration * SAMPLE_RATE)
        self.buffer = np.zeros(0, np.float32)
        self.buffer_start = 0  # sample index of buffer[0]
        self.emitted = 0

    def until(self, t: float, final: bool = False) -> Iterator[av.AudioFrame]:
        limit = self.total if final else min(self.total, int(t * SAMPLE_RATE))
        # bring in every chunk that starts before the limit
        need = limit + SAMPLE_RATE
        if len(self.buffer) < need - self.buffer_start:
            self.buffer = np.concatenate(
                [self.buffer, np.zeros(need - self.buffer_start - len(self.buffer), np.float32)]
            )
        for k, reader in enumerate(self.readers):
            while self.pending[k] is not None:
                at, samples = self.pending[k]  # type: ignore[misc]
                first = round(at * SAMPLE_RATE) - self.buffer_start
                if first + self.buffer_start > limit:
                    break
                if first >= 0:
                    end = first + len(samples)
                    if end > len(self.buffer):
                        self.buffer = np.concatenate(
                            [self.buffer, np.zeros(end - len(self.buffer), np.float32)]
                        )
                    self.buffer[first:end] += samples
                self.pending[k] = next(reader, None)
        while self.emitted + self.FRAME <= limit or (final and self.emitted < limit):
            lo = self.emitted - self.buffer_start
            chunk = np.clip(self.buffer[lo : lo + self.FRAME], -1.0, 1.0)
            if len(chunk) < self.FRAME:
                chunk = np.pad(chunk, (0, self.FRAME - len(chunk)))
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = self.emitted
            self.emitted += self.FRAME
            yield frame
        # drop what has been emitted
        drop = self.emitted - self.buffer_start
        if drop > SAMPLE_RATE * 4:
            self.buffer = self.buffer[drop:]
            self.buffer_start = self.emitted
