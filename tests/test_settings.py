"""Settings: embedded defaults, TOML file, environment overrides, errors naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import ConfigError, load_settings


def test_defaults_are_embedded_mode() -> None:
    s = load_settings(env={})
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.redis_url is None and s.embedded
    assert s.data_dir == Path("var")
    assert s.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert s.resolved_database_url.endswith("var/vreception.db")
    assert s.resolved_recordings_dir == Path("var/recordings")


def test_toml_file_then_environment_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "v.toml"
    cfg.write_text('port = 9000\nhost = "0.0.0.0"\nredis_url = "redis://r:6379/0"\n')
    s = load_settings(cfg, env={"VRECEPTION_PORT": "9100"})
    assert s.port == 9100 and s.host == "0.0.0.0"
    assert s.redis_url == "redis://r:6379/0" and not s.embedded


def test_conventional_aliases_and_postgres_scheme() -> None:
    s = load_settings(env={"REDIS_URL": "redis://x/1", "DATABASE_URL": "postgresql://u@h/db"})
    assert s.redis_url == "redis://x/1"
    assert s.database_url == "postgresql+asyncpg://u@h/db"
    prefixed = load_settings(
        env={"REDIS_URL": "redis://x/1", "VRECEPTION_REDIS_URL": "redis://y/2"}
    )
    assert prefixed.redis_url == "redis://y/2"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"VRECEPTION_PORT": "abc"}, "'port' (from environment variable VRECEPTION_PORT)"),
        ({"VRECEPTION_PORT": "70000"}, "'port'"),
        ({"VRECEPTION_LOG_LEVEL": "LOUD"}, "'log_level'"),
        ({"VRECEPTION_DATABASE_URL": "mysql://x"}, "'database_url'"),
        ({"VRECEPTION_REDIS_URL": "http://x"}, "'redis_url'"),
        ({"VRECEPTION_SECRET_KEY": "short"}, "'secret_key'"),
    ],
)
def test_bad_value_names_the_key(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    assert needle in str(err.value)


def test_unknown_or_bad_file_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "v.toml"
    cfg.write_text("prot = 9000\n")
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        load_settings(cfg, env={})
    cfg.write_text("port = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg, env={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", env={})


def test_cli_refuses_to_start_with_bad_setting(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "web.cli", "serve"],
        env={"VRECEPTION_PORT": "not-a-port", "VRECEPTION_DATA_DIR": str(tmp_path), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert out.returncode == 2
    assert "invalid setting 'port'" in out.stderr and "VRECEPTION_PORT" in out.stderr
