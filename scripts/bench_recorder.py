#!/usr/bin/env python3
"""Recorder benchmark.

1. The relay benchmark's load (scripts/bench_relay.py: pre-encoded 640x480 30 fps VP8 + Opus
   two-party visits on loopback) runs with and without the recorder, alternately, in fresh
   relay processes of the same run: ``record_overhead_pct`` is the relay CPU with recording
   over the CPU without, minus one, in percent (means over ``--repeat`` pairs).
2. The recording made is rendered into its composite on one core (``taskset -c 0``):
   ``composite_speed_x`` is seconds of visit per second of rendering.
3. ``transcribe_rtf``: processing time over audio time, per engine available here, on
   espeak-ng speech (PocketSphinx's bundled English model; sherpa-onnx when
   ``--model-dir`` names a Paraformer model); the model's one-time load per recording is
   reported apart (``model_load_s``).
4. ``bytes_per_minute``: the per-track originals' size per minute of visit.

    .venv/bin/python scripts/bench_recorder.py [--visits 1] [--seconds 20] [--repeat 2]

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


def speech_pcm(folder: Path, repeat: int = 4) -> bytes:
    """About thirty seconds of espeak-ng sentences with pauses, as 16 kHz mono PCM."""
    parts = []
    for i in range(repeat):
        for j, sentence in enumerate(SENTENCES):
            wav = folder / f"s{i}-{j}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), sentence], check=True)
            padded = folder / f"p{i}-{j}.wav"  # a pause after each sentence, as people speak
            subprocess.run(["sox", str(wav), str(padded), "pad", "0", "0.8"], check=True)
            parts.append(padded)
    joined = folder / "speech.wav"
    subprocess.run(
        ["sox", *map(str, parts), "-r", "16000", "-c", "1", "-b", "16", str(joined)], check=True
    )
    with wave.open(str(joined)) as w:
        return bytes(w.readframes(w.getnframes()))


def transcribe_rtf(model_dir: Path | None, work: Path) -> dict[str, Any]:
    pcm = speech_pcm(work)
    seconds = len(pcm) / 2 / 16000
    out: dict[str, Any] = {}
    for engine in ("pocketsphinx", "sherpa-onnx"):
        transcriber = create_transcriber(engine, model_dir)
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
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=2, help="pairs of runs (without, with)")
    parser.add_argument("--model-dir", type=Path, help="a Paraformer model for sherpa-onnx")
    args = parser.parse_args()
    args.fanout = 0
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
        rtf = transcribe_rtf(args.model_dir, work)
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
                    "transcribe_rtf": {k: v["rtf"] for k, v in rtf.items()},
                    "transcribe": rtf,
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
