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
instead of an empty transcript. Importing this module sets ``HF_HUB_OFFLINE=1`` (unless the
environment already says otherwise) before faster-whisper or huggingface_hub is imported, so a
model never reaches for the Hugging Face Hub: the court network is closed.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
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

# Before faster-whisper (and with it huggingface_hub, which reads this once, at its import) is
# imported anywhere in the process: every path to faster-whisper goes through this module.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

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

# Digits of any script (str.isdecimal: ASCII, full-width…) and Chinese numerals, Simplified and
# Traditional, everyday and financial (幺 is 1 read out in phone numbers): a repeat of these is
# a number (100000元, 13888888888, an ID number ending 7777), never a loop.
CHINESE_NUMERALS = frozenset(
    "〇零一二三四五六七八九十百千万亿两幺壹贰叁肆伍陆柒捌玖拾佰仟萬億兩貳參陸"
)
# What may stand between the copies of a loop ("谢谢，谢谢，谢谢"); never part of its ends.
_SEPARATORS = frozenset(" \t\n\u3000,，、。.!！?？;；:：…")
LOOP_MAX_UNIT = 8  # characters in the repeated unit
LOOP_LONG_COPIES = 8  # this many copies of any unit are a loop wherever they stand
LOOP_MIN_COPIES = 4  # fewer copies are never a loop
LOOP_LINE_SHARE = 0.5  # ...between the two, the run must be at least this share of the line
# A line of at least this many characters (numerals aside) that is mostly one of them is made
# up (憲,憲。憲,憲…); shorter, it can be said: 谢谢，谢谢，谢谢，谢谢 (8), 对对对对对对.
REPEATED_LINE_MIN = 12
# Traditional characters that are Simplified characters themselves in names (the surnames 乾
# and 甯; 乾 also in 乾坤, 乾隆): zhconv would write 干 and 宁, changing a name. Left as said.
KEEP_AS_SAID = "乾甯"
# A line the same as the previous one on the track is dropped only when it overlaps it or
# starts within this many seconds of its end (Whisper repeating itself at a window's edge);
# later, it is the speaker saying it again (是 … 是 to two questions) and it stays.
DUPLICATE_GAP = 1.0


def is_numeral(char: str) -> bool:
    """A digit of any script or a Chinese numeral."""
    return char.isdecimal() or char in CHINESE_NUMERALS


def simplified(text: str) -> str:
    """Traditional characters to Simplified, character by character (zhconv's ``zh-hans``
    table, OpenCC's/MediaWiki's, whose phrases only choose among a character's Simplified
    forms): no regional vocabulary is swapped (滑鼠 stays 滑鼠, ``zh-cn`` would write 鼠标).
    The characters of ``KEEP_AS_SAID`` stay as written, whatever their sense: zhconv cannot
    tell the surname 乾 from 乾 "dry" (干), and a name must not change; 乾燥 then stays 乾燥,
    which still says what was said."""
    import zhconv

    return str(zhconv.convert(text, "zh-hans", {c: c for c in KEEP_AS_SAID}))


def _run_at(text: str, start: int, size: int) -> tuple[int, int]:
    """(copies, end) of the run of ``text[start:start + size]`` at ``start``: copies next to
    each other or separated by the same separators each time (consistent, as a loop is)."""
    unit = text[start : start + size]
    if len(unit) < size or unit[0] in _SEPARATORS or unit[-1] in _SEPARATORS:
        return 1, start + size
    copies, end, gap = 1, start + size, None
    while True:
        at = end
        while at < len(text) and text[at] in _SEPARATORS:
            at += 1
        if text[at : at + size] != unit or (gap is not None and text[end:at] != gap):
            return copies, end
        gap = text[end:at]
        copies, end = copies + 1, at + size


def _is_loop(unit: str, copies: int, span: int, line: int) -> bool:
    if copies >= LOOP_LONG_COPIES:
        return True
    return copies >= LOOP_MIN_COPIES and len(set(unit)) >= 2 and span >= LOOP_LINE_SHARE * line


def collapse_repeats(text: str) -> str:
    """Whisper's loops kept once; everything else exactly as transcribed.

    A run is copies of one unit of 1–8 characters, next to each other or separated by the
    same punctuation or spaces each time (the shortest unit is tried first). It is a loop,
    and only its first copy is kept, when its unit holds no digit or Chinese numeral (a
    number is never shortened: 100000元, 13888888888, an ID number ending 7777) and either

    * it has ``LOOP_LONG_COPIES`` (8) or more copies: 嵐 ×30, 我们要去 ×12, 哈 ×8; or
    * it has ``LOOP_MIN_COPIES`` (4) or more copies of a unit of at least two different
      characters and makes up at least half of the line: 我不服我不服我不服我不服.

    So what people do say stays as said: 哈哈哈哈 (laughter) and 对对对对对对 (one character,
    fewer than 8 times), 谢谢，谢谢，谢谢，谢谢 (a doubled word), 好的 said twice."""
    line = len(text.strip())
    out: list[str] = []
    i = 0
    while i < len(text):
        loop = _loop_at(text, i, line)
        if loop is None:
            out.append(text[i])
            i += 1
        else:
            out.append(text[i : i + loop[0]])
            i = loop[1]
    return "".join(out)


def _loop_at(text: str, start: int, line: int) -> tuple[int, int] | None:
    """(unit size, end) of the loop at ``start``, None when there is none."""
    for size in range(1, min(LOOP_MAX_UNIT, len(text) - start) + 1):
        unit = text[start : start + size]
        if any(is_numeral(c) for c in unit):
            return None  # a number, and every longer unit from here holds it too
        copies, end = _run_at(text, start, size)
        if copies > 1 and _is_loop(unit, copies, end - start, line):
            return size, end
    return None


def is_hallucination(text: str, no_speech_prob: float, avg_logprob: float) -> bool:
    """A line Whisper made up: a known silence phrase, a line that is mostly one repeated
    token (of at least ``REPEATED_LINE_MIN`` characters; numerals are left out, they are a
    number however they repeat), or one the model itself thinks is no speech."""
    bare = _PUNCTUATION.sub("", text).lower()
    if not bare:
        return True
    if bare in SILENCE_PHRASES or any(p in bare for p in SILENCE_PHRASES[:3]):
        return True
    words = "".join(c for c in bare if not is_numeral(c))
    if len(words) >= REPEATED_LINE_MIN and len(set(words)) <= max(1, len(words) // 6):
        return True
    return no_speech_prob > 0.6 and avg_logprob < -1.0


@functools.lru_cache(maxsize=1)
def _whisper_model(model_dir: str, threads: int) -> Any:
    """One model per worker process (loading takes about a second; a worker keeps it). Only
    from the folder: without its tokenizer.json faster-whisper would fetch one from the Hub."""
    problem = whisper_model_problem(Path(model_dir))
    if problem is not None:
        raise RuntimeError(problem)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel

    return WhisperModel(
        model_dir, device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=True
    )


def whisper_model_problem(model_dir: Path) -> str | None:
    """Why ``model_dir`` is not a CTranslate2 Whisper model (None when its files are there).
    tokenizer.json is required: with only vocabulary.txt faster-whisper downloads the tokenizer
    of openai/whisper-tiny from the Hugging Face Hub, which the court network cannot reach."""
    needed = ("model.bin", "config.json", "tokenizer.json")
    missing = [n for n in needed if not (model_dir / n).is_file()]
    if not missing:
        return None
    problem = "识别模型目录缺少 " + "、".join(missing)
    if "tokenizer.json" in missing and (model_dir / "vocabulary.txt").is_file():
        problem += "（只有 vocabulary.txt 不够，请把模型发布的 tokenizer.json 放入模型目录）"
    return problem


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
            if out and out[-1][2] == text and start <= out[-1][1] + DUPLICATE_GAP:
                continue  # the same line again at once: Whisper repeating itself
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


# A track is recognised in windows of at most this many seconds, each cut in the quietest
# fifth of a second of its last WINDOW_SEARCH_S (between words): a whole three-hour track at
# once took the recogniser several GB (features of all the speech at once), and the worker
# was killed for lack of memory, leaving the visit without a transcript.
WINDOW_S = 600.0
WINDOW_SEARCH_S = 30.0
_QUIET_STEP = RATE // 5


def speech_windows(
    pcm: bytes | bytearray, window: float = WINDOW_S, search: float = WINDOW_SEARCH_S
) -> list[tuple[int, int]]:
    """(first sample, end sample) of each window of ``pcm`` (16-bit mono at RATE)."""
    total = len(pcm) // 2
    size, look = int(window * RATE), int(search * RATE)
    out: list[tuple[int, int]] = []
    start = 0
    while total - start > size:
        end = start + size
        lo = max(start + 1, end - look)
        tail = np.frombuffer(pcm, np.int16, count=end - lo, offset=2 * lo).astype(np.float32)
        frames = len(tail) // _QUIET_STEP
        cut = end
        if frames:
            energy = (tail[: frames * _QUIET_STEP].reshape(frames, _QUIET_STEP) ** 2).sum(axis=1)
            cut = lo + int(np.argmin(energy)) * _QUIET_STEP + _QUIET_STEP // 2
        out.append((start, cut))
        start = cut
    if total > start:
        out.append((start, total))
    return out


def pcm_16k(path: Path) -> tuple[bytearray, float]:
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
    return out, first or 0.0  # not copied: a three-hour track is 345 MB


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
    window: float = WINDOW_S,
) -> dict[str, Any]:
    """Write transcript.json, transcript.vtt and transcript.txt (for the case file); each
    track recognised in windows of at most ``window`` seconds (``speech_windows``)."""
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
                for a, b in speech_windows(pcm, window):
                    at = offset + a / RATE
                    for start, end, text in transcriber.utterances(bytes(pcm[2 * a : 2 * b])):
                        lines.append(
                            Line(at + start, at + end, track.role, track.name, text,
                                 track.track_id)
                        )  # fmt: skip
                del pcm
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
