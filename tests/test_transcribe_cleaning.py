"""What the Whisper engine does to its own output before it goes into the record, without a
model: loops kept once but numbers and what people say untouched, Traditional characters to
Simplified without swapping words or names, a line said again later kept, and a model folder
that would make faster-whisper reach for the Hugging Face Hub refused."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from recorder import transcribe
from recorder.state import RecordingState, TrackFile, VisitRecording
from recorder.transcribe import (
    WhisperTranscriber,
    collapse_repeats,
    create_transcriber,
    is_hallucination,
    simplified,
    whisper_model_problem,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "said",
    [
        "赔偿金额是100000元",
        "我的电话是13888888888",
        "身份证号码110105194912317777",
        "电话１３８８８８８８８８８",
        "账号6222 8888 8888 8888",
        "八八八八八八八八八八",  # a number read out digit by digit, ten times 8
        "幺三八八八八八八八八八",
        "欠款一千万万万万元",
        "1010101010101010",
    ],
)
def test_numbers_are_never_shortened(said: str) -> None:
    assert collapse_repeats(said) == said
    assert not is_hallucination(said, 0.1, -0.3)


def test_a_number_alone_on_a_line_is_not_taken_for_a_loop() -> None:
    assert not is_hallucination("88888888", 0.1, -0.3)
    assert not is_hallucination("8888 8888 8888 8888", 0.1, -0.3)
    assert not is_hallucination("八八八八八八八八八八八八八八", 0.1, -0.3)
    assert is_hallucination("憲,憲,憲。" * 4, 0.1, -0.3)  # the same over and over is made up


@pytest.mark.parametrize(
    ("made_up", "kept"),
    [
        ("嵐" * 30, "嵐"),
        ("我们要去" * 12, "我们要去"),
        ("请求再审" + "谢谢，" * 12, "请求再审谢谢，"),
        ("我不服我不服我不服我不服", "我不服"),
        ("我不服，" + "请求再审，" * 5, "我不服，请求再审，"),
        ("哈" * 9, "哈"),
    ],
)
def test_whisper_loops_are_kept_once(made_up: str, kept: str) -> None:
    assert collapse_repeats(made_up) == kept


@pytest.mark.parametrize(
    "said",
    [
        "哈哈哈哈",
        "哈哈哈哈哈哈哈",
        "对对对对对对",
        "谢谢，谢谢，谢谢，谢谢",
        "好的好的，我明白了",
        "他当时一直跟我说我们要去我们要去我们要去我们要去，可是后来谁也没有去成",
    ],
)
def test_what_people_say_over_and_over_stays_as_said(said: str) -> None:
    assert collapse_repeats(said) == said
    assert not is_hallucination(said, 0.1, -0.3)


def test_simplified_converts_characters_not_words_and_never_a_surname() -> None:
    assert simplified("在這兒請說") == "在这儿请说"
    assert simplified("頭髮") == "头发"
    # regional vocabulary is what was said: not swapped for the mainland word
    assert simplified("滑鼠") == "滑鼠"
    assert simplified("軟體") == "软体"
    # the surnames 乾 and 甯 are Simplified characters themselves
    assert simplified("乾先生說") == "乾先生说"
    assert simplified("我姓乾") == "我姓乾"
    assert simplified("甯女士") == "甯女士"
    assert simplified("寧靜") == "宁静"


class _FakeModel:
    def __init__(self, lines: list[tuple[float, float, str]]) -> None:
        self.lines = lines

    def transcribe(self, audio: Any, **options: Any) -> tuple[list[Any], None]:
        segments = [
            SimpleNamespace(start=s, end=e, text=t, no_speech_prob=0.01, avg_logprob=-0.2)
            for s, e, t in self.lines
        ]
        return segments, None


def _utterances(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lines: list[tuple[float, float, str]]
) -> list[tuple[float, float, str]]:
    monkeypatch.setattr(transcribe, "_whisper_model", lambda *_: _FakeModel(lines))
    transcriber = WhisperTranscriber(tmp_path, language="zh")
    return transcriber.utterances(bytes(2 * 16000 * 30))


def test_the_same_answer_to_two_questions_is_kept_twice(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    said = [(2.0, 2.4, "是"), (9.0, 9.4, "是"), (20.0, 20.5, "是")]
    assert _utterances(monkeypatch, tmp_path, said) == said


def test_a_line_repeated_at_once_or_overlapping_is_kept_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    right_after = [(2.0, 2.4, "是"), (3.2, 3.6, "是")]
    assert _utterances(monkeypatch, tmp_path, right_after) == [(2.0, 2.4, "是")]
    overlapping = [(5.0, 8.0, "我不服判决"), (7.5, 9.0, "我不服判决")]
    assert _utterances(monkeypatch, tmp_path, overlapping) == [(5.0, 8.0, "我不服判决")]


def _model_folder(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    for name in names:
        (folder / name).write_text("x")
    return folder


def test_a_whisper_model_without_tokenizer_json_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _model_folder(tmp_path, "model.bin", "config.json", "vocabulary.txt")
    problem = whisper_model_problem(folder)
    assert problem is not None and "tokenizer.json" in problem and "缺少" in problem
    assert create_transcriber("whisper", folder).problem() == problem

    # and the model is not loaded (faster-whisper would fetch a tokenizer from the Hub)
    import faster_whisper

    def no_load(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("WhisperModel loaded from a folder without tokenizer.json")

    monkeypatch.setattr(faster_whisper, "WhisperModel", no_load)
    transcribe._whisper_model.cache_clear()
    with pytest.raises(RuntimeError, match=r"tokenizer\.json"):
        transcribe._whisper_model(str(folder), 1)
    transcribe._whisper_model.cache_clear()


def test_a_whisper_model_folder_with_its_files_is_accepted(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path, "model.bin", "config.json", "tokenizer.json")
    assert whisper_model_problem(folder) is None


def test_the_hugging_face_hub_is_offline_once_transcription_is_imported() -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    code = (
        "import os, recorder.transcribe, faster_whisper, huggingface_hub.constants as c;"
        "print(os.environ.get('HF_HUB_OFFLINE'), c.HF_HUB_OFFLINE)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["1", "True"], out


def test_a_long_track_is_cut_into_windows_in_its_quiet_moments() -> None:
    """Windows of at most the window's length, each cut in the quietest fifth of a second
    of its last seconds (between words), covering the whole track without a gap."""
    rng = np.random.default_rng(7)
    rate = transcribe.RATE
    audio = (rng.standard_normal(25 * rate) * 3000).astype(np.int16)
    audio[int(8.6 * rate) : int(8.8 * rate)] = 0  # a pause between two words
    windows = transcribe.speech_windows(audio.tobytes(), window=10.0, search=3.0)
    assert windows[0][0] == 0 and windows[-1][1] == len(audio)
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(windows))
    assert all(b - a <= 10 * rate for a, b in windows)
    assert abs(windows[0][1] / rate - 8.7) < 0.15  # in the pause
    assert transcribe.speech_windows(audio[: 5 * rate].tobytes(), window=10.0) == [(0, 5 * rate)]


def test_each_window_is_recognised_alone_and_its_lines_keep_their_time(tmp_path: Path) -> None:
    """The recogniser gets a window at a time (never the whole track: a three-hour track at
    once took it several GB) and each line is placed at its window's time on the visit."""

    out = tmp_path / "tracks" / "petitioner-microphone-1.webm"
    out.parent.mkdir(parents=True)
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=f=440:d=5",
         "-ar", "48000", "-ac", "2", "-c:a", "libopus", str(out)],
        check=True,
    )  # fmt: skip
    t0 = 1_790_000_000.0
    track = TrackFile(
        "a1", "p1", "petitioner", "王某某", "audio", "opus", "microphone",
        ["tracks/petitioner-microphone-1.webm"], t0 + 1, 0, 48000, t0 + 6,
    )  # fmt: skip
    recording = VisitRecording("v", state=RecordingState.queued, started_at=t0, tracks=[track])
    heard: list[float] = []

    class Counting:
        name = "test"

        def problem(self) -> str | None:
            return None

        def utterances(self, pcm: bytes) -> list[tuple[float, float, str]]:
            heard.append(len(pcm) / 2 / transcribe.RATE)
            return [(0.1, 0.3, f"第{len(heard)}段")]

    done = transcribe.transcribe_recording(
        tmp_path, recording, Counting(), visit_start=t0, tz=ZoneInfo("Asia/Shanghai"),
        window=2.0,
    )  # fmt: skip
    assert done["lines"] == len(heard) >= 3
    assert max(heard) <= 2.0 and abs(sum(heard) - 5.0) < 0.1
    lines = json.loads((tmp_path / "transcript.json").read_text())["lines"]
    starts = [line["start"] for line in lines]
    assert starts == sorted(starts) and abs(starts[0] - 1.1) < 0.05
    assert abs(starts[1] - (1.0 + heard[0] + 0.1)) < 0.05
