"""scripts/python-for-venv: which interpreter the virtualenvs are made with."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT

CHOOSE = ROOT / "scripts" / "python-for-venv"


def fake_python(folder: Path, name: str, version: tuple[int, int]) -> Path:
    """An executable that answers the version check as Python ``version`` would and gives
    its own path as its interpreter's, so the choice can be told apart."""
    path = folder / name
    path.write_text(
        "#!/bin/sh\n"
        f'case "$2" in *version_info*) exit {1 if version < (3, 11) else 0};; esac\n'
        f'case "$2" in *realpath*) echo "{path}"; exit 0;; esac\n'
        "exit 2\n"
    )
    path.chmod(0o755)
    return path


def choose(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHOOSE)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def environment(
    tmp_path: Path, path_python: tuple[int, int], system: tuple[int, int]
) -> dict[str, str]:
    """PATH's python3 and the system's, of these versions; no VRECEPTION_PYTHON."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake_python(bin_dir, "python3", path_python)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "VRECEPTION_SYSTEM_PYTHON": str(fake_python(tmp_path, "system-python3", system)),
    }
    env.pop("VRECEPTION_PYTHON", None)
    return env


def test_the_systems_python_is_chosen_over_the_first_python3_on_path(tmp_path: Path) -> None:
    done = choose(environment(tmp_path, path_python=(3, 12), system=(3, 11)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "system-python3")


def test_an_old_system_python_falls_back_to_python3_on_path(tmp_path: Path) -> None:
    done = choose(environment(tmp_path, path_python=(3, 11), system=(3, 7)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "bin" / "python3")


def test_no_python_new_enough_is_a_clear_refusal(tmp_path: Path) -> None:
    refused = choose(environment(tmp_path, path_python=(3, 9), system=(3, 7)))
    assert refused.returncode == 1
    assert "Python >= 3.11 is required" in refused.stderr
    assert refused.stdout == ""


def test_vreception_python_wins_and_is_checked(tmp_path: Path) -> None:
    env = environment(tmp_path, path_python=(3, 11), system=(3, 11))
    mine = fake_python(tmp_path, "my-python", (3, 11))
    assert choose({**env, "VRECEPTION_PYTHON": str(mine)}).stdout.strip() == str(mine)
    too_old = fake_python(tmp_path, "old-python", (3, 9))
    refused = choose({**env, "VRECEPTION_PYTHON": str(too_old)})
    assert refused.returncode == 1
    assert "is not a Python >= 3.11 interpreter" in refused.stderr
