"""The relay benchmark's loads and how it pools repeated rounds (scripts/bench_relay.py)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("bench_relay", ROOT / "scripts" / "bench_relay.py")
assert _spec is not None and _spec.loader is not None
bench_relay: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_relay)


def test_a_meeting_is_nine_participants_by_default_and_counts_as_one_visit() -> None:
    args = bench_relay.parse_load(["--scenario", "meeting", "--visits", "3"])
    assert (args.participants, args.fanout, args.visits) == (9, 0, 1)
    five = bench_relay.parse_load(["--scenario", "meeting", "--participants", "5"])
    assert five.participants == 5
    fanout = bench_relay.parse_load(["--scenario", "fanout", "--participants", "5"])
    assert (fanout.fanout, fanout.participants, fanout.visits) == (8, 0, 1)
    visits = bench_relay.parse_load(["--visits", "4"])
    assert (visits.visits, visits.fanout, visits.participants, visits.repeat) == (4, 0, 0, 1)


@pytest.mark.parametrize(
    "argv", [["--scenario", "meeting", "--participants", "1"], ["--repeat", "0"]]
)
def test_a_meeting_of_one_or_no_rounds_is_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        bench_relay.parse_load(argv)


def test_repeated_rounds_average_cpu_and_pool_what_subscribers_received() -> None:
    def run(cpu: float, fps: list[float], rss: float) -> dict[str, Any]:
        return {
            "cpu_pct": cpu,
            "fps": fps,
            "first_ms": [40.0],
            "latencies_ms": [0.1, 0.2],
            "keyframes_on_request": 2,
            "never_started": 0,
            "max_rss_mb": rss,
            "idle_rss_mb": 88.0,
            "loaded_rss_mb": rss - 2,
        }

    pooled = bench_relay.pooled([run(4.0, [30.0, 29.0], 96.0), run(6.0, [28.0], 98.0)])
    assert pooled["cpu_pct"] == pytest.approx(5.0)
    assert pooled["cpu_pct_runs"] == [4.0, 6.0]
    assert pooled["fps"] == [30.0, 29.0, 28.0]  # the slowest video of any round shows
    assert pooled["first_ms"] == [40.0, 40.0] and len(pooled["latencies_ms"]) == 4
    assert pooled["keyframes_on_request"] == 4 and pooled["max_rss_mb"] == 98.0
    assert pooled["loaded_rss_mb"] == pytest.approx(95.0)
