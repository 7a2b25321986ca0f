#!/usr/bin/env python3
"""Network benchmark: a visit whose petitioner's terminal (Chromium in its own network
namespace) reaches the server only through an impaired link, the judge's Chromium on the
server's side; what each side receives, read from its page's getStats() (the test bed of
tests/netbed.py and tests/netimpair.py; needs root, network namespaces and /dev/net/tun).

    sudo .venv/bin/python scripts/bench_network.py --window 20 --outage 10
    VRECEPTION_LOG_LEVEL=DEBUG .venv/bin/python scripts/bench_network.py \
        --conditions downlink_300k --keep-log /tmp/server.log    (the relay's decisions kept)

Conditions, each measured right after a clean run of the same length in the same visit
(clean, condition, clean, condition, ...):

- ``downlink_300k``: the petitioner's downlink capped at 300 kbit/s (token bucket, a 300 ms
  drop-tail queue), the uplink clean;
- ``jitter_50_30``: 50 ± 30 ms of delay both ways (uniform, packets keep their order);
- ``loss_5``: 5 % of packets lost both ways, independently;
- ``outage_10s``: nothing gets through either way for ``--outage`` seconds; its window starts
  with the outage and ends ``--window`` seconds after the network returns.

The last line printed is one JSON object: a key per condition (``clean``: the first clean run)
holding ``to_judge`` (what the judge's page receives: the petitioner's camera and
microphone) and ``to_petitioner``, each with fps, max_freeze_s (the longest time without a
new decoded frame), audio_concealed_pct, frame_height (median), kbps (video), packets_lost,
freeze_count and freezes_s (Chromium's own freeze detection), sender_cpu_limited_pct and
sender_bandwidth_limited_pct (share of the window the sending browser's encoder held back its
picture for its CPU or for its bandwidth estimate: which of the two made a 240p); the outage
adds recovery_s (network back → first frame decoded again) per side. Each condition also
holds ``clean``, its clean reference run, and ``picture_back_s``: once the condition ended,
the seconds until both sides received the first clean run's frame height again (within 2.5
s; null: not within ``PICTURE_BACK_MAX_S``), the next clean run starting only then.
Top-level: window_s, outage_s, load_avg (1 min, at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import wait_until  # noqa: E402
from tests.netbed import (  # noqa: E402
    NetworkVisit,
    Received,
    network_visit,
    start_window,
)
from tests.netimpair import CLEAN, Impairment, tun_problem  # noqa: E402
from tests.netns import netns_problem  # noqa: E402

JITTER = Impairment(delay_ms=50, jitter_ms=30)
CONDITIONS: dict[str, tuple[Impairment, Impairment]] = {  # (down, up) of the petitioner
    "downlink_300k": (Impairment(rate_kbps=300), CLEAN),
    "jitter_50_30": (JITTER, JITTER),
    "loss_5": (Impairment(loss=0.05), Impairment(loss=0.05)),
}
ORDER = ("downlink_300k", "jitter_50_30", "loss_5", "outage_10s")


PICTURE_BACK_MAX_S = 90.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def figures(run: dict[str, Received]) -> dict[str, dict[str, Any]]:
    return {side: got.figures() for side, got in run.items()}


def outage_run(bed: NetworkVisit, outage_s: float, window_s: float) -> dict[str, dict[str, Any]]:
    for page in bed.pages().values():
        start_window(page)
    recovery = bed.outage(outage_s)
    ended = bed.link.outage_ended_at()
    assert ended is not None
    wait_until(lambda: time.time() >= ended + window_s, timeout=window_s + 5, interval=0.2)
    return {
        side: {**got.figures(), "recovery_s": round(recovery[side].recovery_s, 2)}
        for side, got in bed.read().items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=20.0, help="seconds per measuring window")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds of the outage")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the first run")
    parser.add_argument(
        "--conditions",
        default=",".join(ORDER),
        help=f"which conditions, comma-separated (of {', '.join(ORDER)})",
    )
    parser.add_argument(
        "--keep-log", metavar="PATH", help="copy the server's log there at the end (diagnosis)"
    )
    args = parser.parse_args()
    chosen = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(ORDER))
    if unknown:
        parser.error(f"unknown conditions: {', '.join(unknown)} (known: {', '.join(ORDER)})")
    if args.window <= 0 or args.outage <= 0 or args.warmup < 0:
        parser.error("--window and --outage must be positive, --warmup not negative")
    problem = netns_problem() or tun_problem()
    if problem is not None:
        sys.exit(f"the network test bed cannot run here: {problem}")

    result: dict[str, Any] = {}
    with network_visit() as bed:
        if args.warmup:
            bed.measure(args.warmup)
        heights: dict[str, int] = {}  # the first clean run's picture, per side
        for name in chosen:
            clean = figures(bed.measure(args.window))
            log(f"clean: {json.dumps(clean)}")
            if not heights:
                heights = {side: int(clean[side]["frame_height"]) for side in clean}
            result.setdefault("clean", clean)
            if name == "outage_10s":
                measured = outage_run(bed, args.outage, args.window)
            else:
                down, up = CONDITIONS[name]
                bed.link.set(down=down, up=up)
                try:
                    measured = figures(bed.measure(args.window))
                finally:
                    bed.link.both(CLEAN)
                bed.wait_for_video()
            # the next clean run starts from the first one's picture: how long that took
            since = time.monotonic()
            back = bed.wait_for_picture(heights, timeout=PICTURE_BACK_MAX_S)
            back_s = round(time.monotonic() - since, 1) if back else None
            log(f"{name}: {json.dumps(measured)}; picture back after {back_s} s")
            result[name] = {**measured, "clean": clean, "picture_back_s": back_s}
        if args.keep_log:
            shutil.copyfile(bed.server.log, args.keep_log)
    result["window_s"] = args.window
    result["outage_s"] = args.outage
    result["load_avg"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
