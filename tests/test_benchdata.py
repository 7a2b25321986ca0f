"""The benchmarks' shared helpers (scripts/benchdata.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT


def _benchdata(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchdata", ROOT / "scripts" / "benchdata.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "benchdata", module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_a_benchmark_removes_the_dataset_directory_it_made_and_keeps_a_given_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset is 0.8-2.5 GB: left behind on every run, a few dozen filled the disk."""
    bench_dir = _benchdata(monkeypatch).bench_dir
    with pytest.raises(RuntimeError), bench_dir(None, "vr-test-bench-") as made:
        (made / "vreception.db").write_bytes(b"x" * 1024)
        raise RuntimeError("the benchmark failed half-way")
    assert not made.exists()
    given = tmp_path / "kept"
    given.mkdir()
    with bench_dir(str(given), "vr-test-bench-") as used:
        (used / "vreception.db").write_bytes(b"x")
    assert used == given and (given / "vreception.db").exists()
