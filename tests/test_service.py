"""Running as a service: the systemd units (checked by systemd-analyze), the install script
run against a staging root, and JSON log lines from a real ``vreception serve``."""

from __future__ import annotations

import configparser
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.logs import JsonFormatter
from config.privacy import MaskingFilter
from config.settings import load_settings
from tests.conftest import ROOT
from tests.helpers import free_port, wait_until

INSTALL = ROOT / "scripts" / "install-service"
UNITS = ROOT / "config" / "systemd"
SERVICES = ("vreception.service", "vreception-worker.service")


def _staging_root(path: Path) -> Path:
    """An empty system tree with just the account files useradd needs."""
    etc = path / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\n")
    for name in ("shadow", "gshadow"):
        (etc / name).chmod(0o600)
    return path


def _install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALL), "--root", str(root), "--no-venv", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _account(root: Path, file: str) -> list[str]:
    lines = [ln for ln in (root / "etc" / file).read_text().splitlines()]
    found = [ln.split(":") for ln in lines if ln.startswith("vreception:")]
    assert len(found) == 1, lines
    return found[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("install-service runs as root (it creates a user and chowns)")
    root = _staging_root(tmp_path_factory.mktemp("sysroot"))
    out = _install(root)
    assert out.returncode == 0, out.stdout + out.stderr
    return root


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


@pytest.mark.parametrize("name", SERVICES)
def test_unit_restarts_on_failure_stops_gracefully_and_runs_as_the_service_user(
    name: str,
) -> None:
    unit = _unit(name)
    service = unit["Service"]
    assert service["User"] == service["Group"] == "vreception"
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert 30 <= int(service["TimeoutStopSec"]) <= 120  # a stop takes seconds; slack for disks
    assert service["Environment"] == "PYTHONUNBUFFERED=1"  # the last of the two lines
    assert "VRECEPTION_CONFIG=/etc/vreception/vreception.toml" in (UNITS / name).read_text()
    assert service["StandardOutput"] == service["StandardError"] == "journal"
    assert service["StateDirectory"] == service["ConfigurationDirectory"] == "vreception"
    assert service["WorkingDirectory"] == "/var/lib/vreception"
    command = "serve" if name == "vreception.service" else "worker"
    assert service["ExecStart"] == f"/opt/vreception/venv/bin/vreception {command}"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_units_pass_systemd_analyze_verify(installed: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: run ./scripts/test, which installs systemd")
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    # the units they depend on (multi-user.target ...), as installed on this machine
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    # verify checks that ExecStart exists; the staging install made no virtualenv
    exe = root / "opt/vreception/venv/bin/vreception"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    out = subprocess.run(
        [analyze, "verify", f"--root={root}", *SERVICES],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "", out.stderr  # no unknown key, no warning at all


def test_install_service_creates_the_user_dirs_config_units_and_enables_the_server(
    installed: Path,
) -> None:
    root = installed
    user = _account(root, "passwd")
    uid, gid = int(user[2]), int(user[3])
    assert uid < 1000 and user[5] == "/var/lib/vreception" and user[6] == "/usr/sbin/nologin"
    assert int(_account(root, "group")[2]) == gid
    for folder in ("var/lib/vreception", "var/lib/vreception/recordings"):
        info = (root / folder).stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (uid, gid, 0o750)
    etc = (root / "etc/vreception").stat()
    assert (etc.st_uid, etc.st_gid, stat.S_IMODE(etc.st_mode)) == (0, gid, 0o750)
    config = root / "etc/vreception/vreception.toml"
    info = config.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, gid, 0o640)
    settings = load_settings(config, env={})
    assert settings.data_dir == Path("/var/lib/vreception")
    assert settings.resolved_recordings_dir == Path("/var/lib/vreception/recordings")
    assert settings.log_format == "text" and settings.embedded
    for name in SERVICES:
        unit = root / "etc/systemd/system" / name
        assert unit.read_bytes() == (UNITS / name).read_bytes()
        assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    wants = root / "etc/systemd/system/multi-user.target.wants"
    link = (wants / "vreception.service").readlink()
    assert link == Path("/etc/systemd/system/vreception.service")
    assert not (wants / "vreception-worker.service").exists()  # embedded: no worker
    app = root / "opt/vreception/app"
    assert (app / "web/cli.py").read_bytes() == (ROOT / "web/cli.py").read_bytes()
    assert (app / "web/node_modules/socket.io-client/dist/socket.io.min.js").is_file()
    assert not (app / ".git").exists() and not (app / "var").exists()
    wrapper = (root / "usr/local/bin/vreception").read_text()
    assert "runuser -u vreception -- /opt/vreception/venv/bin/vreception" in wrapper
    assert "/etc/vreception/vreception.toml" in wrapper


def test_install_service_again_keeps_the_config_and_the_user_and_adds_the_worker(
    installed: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    config = root / "etc/vreception/vreception.toml"
    edited = config.read_text() + 'redis_url = "redis://127.0.0.1:6379/0"\n'
    config.write_text(edited)
    out = _install(root, "--worker")
    assert out.returncode == 0, out.stderr
    assert "kept the existing config" in out.stderr
    assert config.read_text() == edited
    _account(root, "passwd")  # still exactly one vreception line
    _account(root, "group")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert (wants / "vreception.service").is_symlink()
    assert (wants / "vreception-worker.service").is_symlink()


def test_uninstall_removes_the_services_and_keeps_config_and_data(
    installed: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    kept = root / "var/lib/vreception/recordings/visit/composite.mp4"
    kept.parent.mkdir()
    kept.write_bytes(b"recording")
    out = _install(root, "--uninstall")
    assert out.returncode == 0, out.stderr
    for name in SERVICES:
        assert not (root / "etc/systemd/system" / name).exists()
        assert not (root / "etc/systemd/system/multi-user.target.wants" / name).is_symlink()
    assert not (root / "opt/vreception").exists()
    assert not (root / "usr/local/bin/vreception").exists()
    assert kept.read_bytes() == b"recording"
    assert (root / "etc/vreception/vreception.toml").is_file()
    _account(root, "passwd")


def test_install_service_says_what_is_wrong(tmp_path: Path) -> None:
    out = _install(tmp_path)  # no etc/passwd there
    assert out.returncode == 2
    assert "has no etc/passwd" in out.stderr or "run as root" in out.stderr
    out = _install(tmp_path, "--frobnicate")
    assert out.returncode == 2 and "unknown option --frobnicate" in out.stderr


# ---------------------------------------------------------------- JSON log lines

ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+08:00$")


def test_serve_writes_masked_json_log_lines_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    """Every line the server writes is one JSON object on stderr; a logged path holding a
    phone number is masked; SIGTERM (what systemd sends) stops the server with status 0."""
    port = free_port()
    model_dir = tmp_path / "model-13812345678"  # logged at start-up: it does not exist
    env = {
        **os.environ,
        "VRECEPTION_DATA_DIR": str(tmp_path / "var"),
        "VRECEPTION_PORT": str(port),
        "VRECEPTION_LOG_FORMAT": "json",
        "VRECEPTION_TRANSCRIBE_MODEL_DIR": str(model_dir),
        "PYTHONUNBUFFERED": "1",
    }
    out_file, err_file = tmp_path / "stdout", tmp_path / "stderr"
    with out_file.open("w") as out, err_file.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "web.cli", "serve"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            text=True,
        )
    try:

        def started() -> bool:
            assert proc.poll() is None, err_file.read_text()
            logged = err_file.read_text()
            return "listening on" in logged and "transcribe_model_dir not found" in logged

        wait_until(started, timeout=120)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # within the unit's TimeoutStopSec
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out_file.read_text() == ""  # nothing outside the log
    lines = err_file.read_text().splitlines()
    assert lines
    entries = [json.loads(line) for line in lines]  # each line is one JSON object
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry), entry
        assert ISO_WITH_OFFSET.match(entry["time"]), entry["time"]
        datetime.fromisoformat(entry["time"])
    model = [e for e in entries if "transcribe_model_dir not found" in e["message"]]
    assert model and model[0]["level"] == "WARNING"
    assert model[0]["logger"].startswith("vreception")
    assert "138****5678" in model[0]["message"]
    assert "13812345678" not in err_file.read_text()
    assert any(e["message"].startswith("vreception listening on") for e in entries)


def test_json_log_line_carries_the_traceback_masked() -> None:
    formatter = JsonFormatter(ZoneInfo("Asia/Shanghai"))
    try:
        raise ValueError("petitioner 110101199003071234 called from 13812345678")
    except ValueError:
        record = logging.LogRecord(
            "vreception.app", logging.ERROR, __file__, 1, "failed for %s", ("13812345678",),
            sys.exc_info(),
        )  # fmt: skip
    MaskingFilter().filter(record)
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "failed for 138****5678"
    assert entry["level"] == "ERROR" and entry["logger"] == "vreception.app"
    assert entry["time"].endswith("+08:00")
    assert (
        "ValueError: petitioner 1101**********1234 called from 138****5678" in (entry["exception"])
    )
