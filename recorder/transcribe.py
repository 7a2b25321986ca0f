"""Transcripts of a visit: each party's microphone track is transcribed on its own, so every
line carries its speaker's role and its start and end on the visit's timeline.

Engines (``transcribe_engine``): ``whisper`` (faster-whisper / CTranslate2, e.g. Whisper
base; each track transcribed whole with its bundled VAD, output in Simplified Chinese), the
default; ``sherpa-onnx`` with a Paraformer or SenseVoice model; both take the model an
administrator imported (``vreception models import``, docs/transcription.md) or
``transcribe_model_dir``. ``pocketsphinx`` with its bundled English model (optionally held to
a JSGF grammar, ``transcribe_grammar``); ``none``. For sherpa-onnx and PocketSphinx speech is
cut into utterances by PocketSphinx's voice-activity segmenter. Nothing is fetched: an engine
whose model is missing says why (in Chinese), and the recording records "转写不可用：<原因>"
instead of an empty transcript.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import av
import numpy as np

from config.settings import NO_MODEL
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
    """sherpa-onnx with an offline Paraformer or SenseVoice model (Mandarin) from
    ``model_dir`` (SenseVoice when its ONNX metadata says so, see ``sherpa_kind``)."""

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
            return NO_MODEL
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
            model, tokens = str(self._model()), str(self.model_dir / "tokens.txt")
            if sherpa_kind(Path(model)) == "sense-voice":
                self._recognizer = sherpa_onnx.OfflineRecognizer.from_sense_voice(
                    model=model, tokens=tokens, num_threads=self.threads, use_itn=True
                )
            else:
                self._recognizer = sherpa_onnx.OfflineRecognizer.from_paraformer(
                    paraformer=model, tokens=tokens, num_threads=self.threads, sample_rate=RATE
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


def sherpa_kind(model: Path) -> str:
    """``sense-voice`` or ``paraformer``, from the metadata sherpa-onnx's export scripts write
    into the ONNX file (SenseVoice's carries its language ids and ITN switch)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    if "with_itn" in meta or "lang_zh" in meta or "sense" in meta.get("model_type", "").lower():
        return "sense-voice"
    return "paraformer"


# Whisper's well-known inventions over silence and noise (credits of subtitle groups, calls to
# subscribe), Simplified, without punctuation: a line that is only one of these is dropped.
SILENCE_PHRASES = (
    "字幕由amaraorg社区提供",
    "请不吝点赞订阅转发打赏支持明镜与点点栏目",
    "点赞订阅转发打赏",
    "谢谢观看",
    "感谢观看",
    "谢谢大家",
    "请订阅",
    "优优独播剧场",
    "中文字幕",
    "字幕",
    "thankyouforwatching",
    "thanksforwatching",
)
_PUNCTUATION = re.compile(r"[\s\W_]+", re.UNICODE)
_REPEAT = re.compile(r"(.{1,8}?)(?:[\s,，、。.!！?？]*\1){3,}", re.DOTALL)


def simplified(text: str) -> str:
    """Traditional characters to Simplified (OpenCC's tables, through zhconv)."""
    import zhconv

    return str(zhconv.convert(text, "zh-cn"))


def collapse_repeats(text: str) -> str:
    """A run of four or more of the same 1–8 characters (嵐嵐嵐嵐, 谢谢谢谢谢谢) kept once."""
    return _REPEAT.sub(r"\1", text)


def is_hallucination(text: str, no_speech_prob: float, avg_logprob: float) -> bool:
    """A line Whisper made up: a known silence phrase, a line that is mostly one repeated
    token, or one the model itself thinks is no speech."""
    bare = _PUNCTUATION.sub("", text).lower()
    if not bare:
        return True
    if bare in SILENCE_PHRASES or any(p in bare for p in SILENCE_PHRASES[:3]):
        return True
    if len(bare) >= 6 and len(set(bare)) <= max(1, len(bare) // 6):
        return True
    return no_speech_prob > 0.6 and avg_logprob < -1.0


@functools.lru_cache(maxsize=1)
def _whisper_model(model_dir: str, threads: int) -> Any:
    """One model per worker process (loading takes about a second; a worker keeps it)."""
    from faster_whisper import WhisperModel

    return WhisperModel(
        model_dir, device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=True
    )


def whisper_model_problem(model_dir: Path) -> str | None:
    """Why ``model_dir`` is not a CTranslate2 Whisper model (None when its files are there)."""
    missing = [n for n in ("model.bin", "config.json") if not (model_dir / n).is_file()]
    if (
        not (model_dir / "tokenizer.json").is_file()
        and not (model_dir / "vocabulary.txt").is_file()
    ):
        missing.append("tokenizer.json")
    if missing:
        return "识别模型目录缺少 " + "、".join(missing)
    return None


class WhisperTranscriber:
    """faster-whisper (CTranslate2) with a Whisper model from ``model_dir``.

    Each speaker's track is transcribed whole: faster-whisper's VAD (Silero, bundled) cuts
    out the silence and the speech is decoded in 30 s windows, with its times put back on the
    track's clock. One call per utterance would cost Whisper a padded 30 s window each (RTF
    about 2 against 0.1). Greedy decoding at temperature 0 without the previous window as
    context or any prompt (nothing to echo), with a repetition penalty; what it still makes
    up over silence or in loops is dropped, and Chinese comes out Simplified."""

    name = "whisper"

    def __init__(self, model_dir: Path | None, threads: int = 1, language: str = "zh") -> None:
        self.model_dir = Path(model_dir) if model_dir else None
        self.threads = threads
        self.language = language

    def problem(self) -> str | None:
        try:
            import faster_whisper  # noqa: F401
            import zhconv  # noqa: F401
        except ImportError as exc:
            log.warning("faster-whisper cannot be imported: %s", exc)
            return "未安装 faster-whisper 语音识别组件"
        if self.model_dir is None:
            return NO_MODEL
        if not self.model_dir.is_dir():
            log.warning("transcribe_model_dir not found: %s", self.model_dir)
            return "找不到识别模型目录（transcribe_model_dir）"
        return whisper_model_problem(self.model_dir)

    def load(self) -> None:
        assert self.model_dir is not None
        _whisper_model(str(self.model_dir), self.threads)

    def utterances(self, pcm: bytes) -> list[tuple[float, float, str]]:
        assert self.model_dir is not None
        if len(pcm) < 2 * RATE // 10:
            return []
        model = _whisper_model(str(self.model_dir), self.threads)
        audio = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0
        duration = len(audio) / RATE
        segments, _info = model.transcribe(
            audio,
            language=self.language,
            task="transcribe",
            beam_size=1,
            temperature=0.0,
            condition_on_previous_text=False,
            initial_prompt=None,
            repetition_penalty=1.2,
            no_repeat_ngram_size=3,
            vad_filter=True,
            vad_parameters={"min_silence_duration_ms": 500},
        )
        out: list[tuple[float, float, str]] = []
        chinese = self.language.startswith("zh")
        for seg in segments:
            text = collapse_repeats(str(seg.text).strip())
            if chinese:
                text = simplified(text)
            start, end = float(seg.start), min(float(seg.end), duration)
            if start >= duration or end <= start:
                continue  # a time past the audio's end: decoded from padding
            if is_hallucination(text, float(seg.no_speech_prob), float(seg.avg_logprob)):
                log.debug("dropped as made up: %r", text)
                continue
            if out and out[-1][2] == text:
                continue  # the same line again
            out.append((start, end, text))
        return out


def create_transcriber(
    engine: str,
    model_dir: Path | None = None,
    grammar: Path | None = None,
    *,
    threads: int = 1,
    language: str = "zh",
) -> Transcriber:
    if engine == "whisper":
        return WhisperTranscriber(model_dir, threads, language)
    if engine == "sherpa-onnx":
        return SherpaParaformerTranscriber(model_dir, threads)
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
    with its wall-clock time and speaker, the judge's notes interleaved at their times."""
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
    # the utterances and the judge's notes in the order of the visit
    entries: list[tuple[float, int, str]] = []
    for line in lines:
        at = datetime.fromtimestamp(visit_start + line.start, tz)
        who = f"{role_name(line.role)} {line.name}".strip()
        entries.append((visit_start + line.start, 0, f"[{at:%H:%M:%S}] {who}：{line.text}"))
    for note in notes:
        when_s = float(note.get("at", visit_start))
        at = datetime.fromtimestamp(when_s, tz)
        author = note.get("author", "")
        entries.append((when_s, 1, f"[{at:%H:%M:%S}] 〔法官笔记 {author}〕{note.get('text', '')}"))
    out += [text for _, _, text in sorted(entries, key=lambda e: (e[0], e[1]))]
    return "\n".join(out) + "\n"
