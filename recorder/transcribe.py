"""Transcripts of a visit: each party's microphone track is transcribed on its own, so every
line carries its speaker's role and its start and end on the visit's timeline.

Engines (``transcribe_engine``): ``sherpa-onnx`` with a Paraformer Mandarin model copied in
by an administrator (``transcribe_model_dir``: ``model.onnx`` or ``model.int8.onnx`` and
``tokens.txt``), the production default; ``pocketsphinx`` with its bundled English model
(optionally held to a JSGF grammar, ``transcribe_grammar``); ``none``. Speech is cut into
utterances by PocketSphinx's voice-activity segmenter for every engine. Nothing is fetched:
an engine whose model is missing says why (in Chinese), and the recording records
"转写不可用：<原因>" instead of an empty transcript.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import av
import numpy as np

from recorder.decode import decoded
from recorder.state import VisitRecording, role_name

log = logging.getLogger("vreception.recorder")

RATE = 16000


class Transcriber(Protocol):
    """Speech to text for one speaker's 16 kHz mono audio."""

    name: str

    def problem(self) -> str | None:
        """None when usable; otherwise why not, in Chinese for the record and the pages
        (checked at start-up and by each job)."""
        ...

    def utterances(self, pcm: bytes) -> list[tuple[float, float, str]]:
        """(start s, end s, text) of each utterance in 16-bit 16 kHz mono PCM."""
        ...


def _segments(pcm: bytes) -> list[tuple[float, float, bytes]]:
    from pocketsphinx import Segmenter

    return [
        (float(s.start_time), float(s.end_time), bytes(s.pcm))
        for s in Segmenter(sample_rate=RATE).segment(io.BytesIO(pcm))
    ]


class NoTranscriber:
    """Transcription switched off."""

    name = "none"

    def problem(self) -> str | None:
        return "未启用语音转写（transcribe_engine = none）"

    def utterances(self, pcm: bytes) -> list[tuple[float, float, str]]:
        return []


class PocketSphinxTranscriber:
    """PocketSphinx with the English model its package carries (tests, English speech)."""

    name = "pocketsphinx"

    def __init__(self, grammar: Path | None = None) -> None:
        self.grammar = grammar
        self._decoder: Any = None

    def problem(self) -> str | None:
        try:
            import pocketsphinx  # noqa: F401
        except ImportError as exc:
            log.warning("pocketsphinx cannot be imported: %s", exc)
            return "未安装 PocketSphinx 语音识别组件"
        if self.grammar is not None and not Path(self.grammar).is_file():
            log.warning("transcribe_grammar not found: %s", self.grammar)
            return "找不到语法文件（transcribe_grammar）"
        return None

    def utterances(self, pcm: bytes) -> list[tuple[float, float, str]]:
        from pocketsphinx import Decoder

        if self._decoder is None:
            options: dict[str, Any] = {"samprate": RATE, "loglevel": "FATAL"}
            if self.grammar is not None:
                options["jsgf"] = str(self.grammar)
            self._decoder = Decoder(**options)
        out = []
        for start, end, chunk in _segments(pcm):
            self._decoder.start_utt()
            self._decoder.process_raw(chunk, full_utt=True)
            self._decoder.end_utt()
            hyp = self._decoder.hyp()
            if hyp is not None and hyp.hypstr.strip():
                out.append((start, end, hyp.hypstr.strip()))
        return out


class SherpaParaformerTranscriber:
    """sherpa-onnx with an offline Paraformer model (Mandarin) from ``model_dir``."""

    name = "sherpa-onnx"

    def __init__(self, model_dir: Path | None, threads: int = 1) -> None:
        self.model_dir = Path(model_dir) if model_dir else None
        self.threads = threads
        self._recognizer: Any = None

    def _model(self) -> Path | None:
        if self.model_dir is None:
            return None
        for name in ("model.int8.onnx", "model.onnx"):
            if (self.model_dir / name).is_file():
                return self.model_dir / name
        return None

    def problem(self) -> str | None:
        try:
            import sherpa_onnx  # noqa: F401
        except ImportError as exc:
            log.warning("sherpa-onnx cannot be imported: %s", exc)
            return "未安装 sherpa-onnx 语音识别组件"
        if self.model_dir is None:
            return "未配置普通话识别模型（transcribe_model_dir）"
        if not self.model_dir.is_dir():
            log.warning("transcribe_model_dir not found: %s", self.model_dir)
            return "找不到识别模型目录（transcribe_model_dir）"
        if self._model() is None or not (self.model_dir / "tokens.txt").is_file():
            log.warning("%s lacks model.onnx (or model.int8.onnx) and tokens.txt", self.model_dir)
            return "识别模型目录缺少 model.onnx（或 model.int8.onnx）和 tokens.txt"
        return None

    def utterances(self, pcm: bytes) -> list[tuple[float, float, str]]:
        import sherpa_onnx

        if self._recognizer is None:
            assert self.model_dir is not None
            self._recognizer = sherpa_onnx.OfflineRecognizer.from_paraformer(
                paraformer=str(self._model()),
                tokens=str(self.model_dir / "tokens.txt"),
                num_threads=self.threads,
                sample_rate=RATE,
            )
        out = []
        for start, end, chunk in _segments(pcm):
            stream = self._recognizer.create_stream()
            samples = np.frombuffer(chunk, np.int16).astype(np.float32) / 32768.0
            stream.accept_waveform(RATE, samples)
            self._recognizer.decode_stream(stream)
            text = str(stream.result.text).strip()
            if text:
                out.append((start, end, text))
        return out


def create_transcriber(
    engine: str, model_dir: Path | None = None, grammar: Path | None = None
) -> Transcriber:
    if engine == "sherpa-onnx":
        return SherpaParaformerTranscriber(model_dir)
    if engine == "pocketsphinx":
        return PocketSphinxTranscriber(grammar)
    return NoTranscriber()


def pcm_16k(path: Path) -> tuple[bytes, float]:
    """A track file's audio as 16-bit 16 kHz mono PCM, and the time of its first sample."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = bytearray()
    first: float | None = None
    expected = 0  # samples written so far: silence fills any hole in the track
    for at, frame in decoded(path, "audio"):
        if first is None:
            first = at
        position = int((at - first) * RATE)
        if position > expected:
            out += bytes(2 * (position - expected))
            expected = position
        for resampled in resampler.resample(frame):
            data = resampled.to_ndarray().astype(np.int16).tobytes()
            out += data
            expected += len(data) // 2
    return bytes(out), first or 0.0


@dataclass
class Line:
    """One utterance on the visit's timeline."""

    start: float  # seconds from the visit's start
    end: float
    role: str
    name: str
    text: str
    track_id: str


def _clock(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def transcribe_recording(
    folder: Path,
    recording: VisitRecording,
    transcriber: Transcriber,
    *,
    visit_start: float,
    tz: ZoneInfo,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Write transcript.json, transcript.vtt and transcript.txt (for the case file)."""
    reason = transcriber.problem()
    lines: list[Line] = []
    tracks = [t for t in recording.tracks if t.kind == "audio" and t.wall_start is not None]
    if reason is None:
        for i, track in enumerate(tracks):
            assert track.wall_start is not None
            for name in track.files:
                path = folder / name
                if not path.exists():
                    continue
                pcm, first = pcm_16k(path)
                offset = track.wall_start - visit_start + first
                for start, end, text in transcriber.utterances(pcm):
                    lines.append(
                        Line(offset + start, offset + end, track.role, track.name, text,
                             track.track_id)
                    )  # fmt: skip
            if progress is not None:
                progress((i + 1) / max(1, len(tracks)))
    lines.sort(key=lambda line: (line.start, line.role))
    available = reason is None
    notes = list(recording.details.get("notes", []))
    data = {
        "visit_id": recording.visit_id,
        "engine": transcriber.name,
        "available": available,
        "reason": reason or "",
        "visit_start": visit_start,
        "lines": [asdict(line) for line in lines],
        "notes": notes,
    }
    (folder / "transcript.json").write_text(json.dumps(data, ensure_ascii=False, indent=1))
    vtt = ["WEBVTT", ""]
    for i, line in enumerate(lines, 1):
        who = f"{role_name(line.role)} {line.name}".strip()
        vtt += [str(i), f"{_clock(line.start)} --> {_clock(line.end)}", f"<v {who}>{line.text}", ""]
    (folder / "transcript.vtt").write_text("\n".join(vtt))
    (folder / "transcript.txt").write_text(
        case_file_text(recording, lines, notes, visit_start, tz, reason)
    )
    return {"available": available, "reason": reason or "", "lines": len(lines)}


def case_file_text(
    recording: VisitRecording,
    lines: list[Line],
    notes: list[dict[str, Any]],
    visit_start: float,
    tz: ZoneInfo,
    reason: str | None,
    watermark: str = "",
) -> str:
    """The transcript as it goes into the case file: a header, then one line per utterance
    with its wall-clock time and speaker, then the judge's notes."""
    d = recording.details
    when = datetime.fromtimestamp(visit_start, tz)
    named = {("petitioner", d.get("petitioner_name", "")), ("judge", d.get("judge_name", ""))}
    named |= {(t.role, t.name) for t in recording.tracks}
    parties = "；".join(sorted(f"{role_name(role)} {name}".strip() for role, name in named if name))
    out = [
        "远程视频接访笔录（录音转写）",
        "",
        f"法院：{d.get('court_name', '')}　接访法院：{d.get('receiving_court_name', '')}",
        f"信访事项编号：{d.get('petition_number', '')}",
        f"参与人：{parties}",
        f"日期：{when:%Y年%m月%d日}　开始时间：{when:%H:%M:%S}",
        f"接访编号：{recording.visit_id}",
    ]
    if watermark:
        out.append(watermark)
    out.append("")
    if reason is not None:
        out.append(f"（转写不可用：{reason}）")
    elif not lines:
        out.append("（录音中未识别到语音）")
    for line in lines:
        at = datetime.fromtimestamp(visit_start + line.start, tz)
        who = f"{role_name(line.role)} {line.name}".strip()
        out.append(f"[{at:%H:%M:%S}] {who}：{line.text}")
    if notes:
        out += ["", "法官笔记："]
        for note in notes:
            at = datetime.fromtimestamp(float(note.get("at", visit_start)), tz)
            out.append(f"[{at:%H:%M:%S}] {note.get('author', '')}：{note.get('text', '')}")
    return "\n".join(out) + "\n"
