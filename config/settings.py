"""Typed settings from a TOML file plus ``VRECEPTION_*`` environment overrides.

The defaults are the embedded mode: SQLite and recordings under ``./var/``, no Redis,
listening on 127.0.0.1:8080. A bad value stops start-up with a message naming the key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "VRECEPTION_"
CONFIG_ENV = "VRECEPTION_CONFIG"
# Conventional names honoured as aliases when the prefixed variable is absent.
ENV_ALIASES = {"redis_url": "REDIS_URL", "database_url": "DATABASE_URL"}


class ConfigError(Exception):
    """A setting is missing, unknown or invalid; the message names the key."""


class Settings(BaseModel):
    """All settings of one vreception process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Address the web server listens on.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the web server.")
    data_dir: Path = Field(Path("var"), description="Directory for the database, keys, state.")
    recordings_dir: Path | None = Field(
        None, description="Where recordings are written; default <data_dir>/recordings."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; default SQLite file <data_dir>/vreception.db."
    )
    redis_url: str | None = Field(None, description="Redis URL; unset means embedded mode.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines on stderr: text, or json (one object per line: time, level, "
        "logger, message) for the journal and log collectors.",
    )
    session_ttl_minutes: int = Field(480, ge=5, le=7 * 24 * 60)
    session_idle_minutes: int = Field(60, ge=1, le=24 * 60)
    cookie_secure: bool = Field(False, description="Mark cookies Secure (set behind HTTPS).")
    trust_forwarded_for: bool = Field(
        False, description="Take the client address from X-Forwarded-For (behind a proxy)."
    )
    login_max_failures_per_account: int = Field(5, ge=1, le=1000)
    login_max_failures_per_address: int = Field(20, ge=1, le=10000)
    login_failure_window_seconds: int = Field(900, ge=10, le=86400)
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    visit_code_length: int = Field(10, ge=8, le=32)
    visit_code_ttl_minutes: int = Field(24 * 60, ge=1, le=30 * 24 * 60)
    password_min_length: int = Field(10, ge=8, le=128)
    timezone: str = Field("Asia/Shanghai", description="Time zone people see and enter.")
    default_visit_minutes: int = Field(30, ge=5, le=240)
    no_show_grace_minutes: int = Field(15, ge=1, le=240)
    reminder_minutes: int = Field(10, ge=1, le=120)
    visit_abandon_minutes: int = Field(10, ge=1, le=240)
    booking_horizon_days: int = Field(120, ge=1, le=730)
    housekeeping_seconds: float = Field(30.0, gt=0, le=3600)
    media_announced_addresses: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Host addresses the relay offers in ICE (aioice leaves out 127.0.0.1 "
        "unless told); set the server's LAN address in production.",
    )
    media_allowed_networks: list[str] | None = Field(
        None,
        description="Networks (CIDR) the relay may send ICE checks to; candidates outside "
        "them, and mDNS (.local) candidates, are dropped. Default: the networks of the "
        "announced addresses on this host's interfaces (a /24 for an address on none).",
    )
    media_ice_servers: list[str] = Field(
        default_factory=list, description="STUN/TURN URLs; empty on closed court networks."
    )
    media_udp_ports: tuple[int, int] | None = Field(
        None,
        description="UDP port range [first, last] for media (open it in the court firewall); "
        "unset: any free port. About one port per participant connection is needed.",
    )
    public_url: str | None = Field(
        None,
        description="This node's address as browsers reach it (e.g. https://node1.court:8443); "
        "with Redis, a visit's room is pinned to one node and participants are sent to it. "
        "Default http://<host>:<port>.",
    )
    transcribe_engine: Literal["sherpa-onnx", "pocketsphinx", "none"] = Field(
        "sherpa-onnx",
        description="Speech to text for transcripts: sherpa-onnx (Paraformer, Mandarin; needs "
        "transcribe_model_dir), pocketsphinx (bundled English model), none.",
    )
    transcribe_model_dir: Path | None = Field(
        None, description="Folder of the Mandarin model (model.onnx and tokens.txt), copied in."
    )
    transcribe_grammar: Path | None = Field(
        None, description="Optional JSGF grammar that holds PocketSphinx to known phrases."
    )
    overlay_font: str | None = Field(
        None, description="Font file with Chinese glyphs for the composite's overlay."
    )
    retention_years: int = Field(
        30, ge=1, le=200, description="How long a recording is kept after its visit."
    )
    retention_years_by_category: dict[str, int] = Field(
        default_factory=dict,
        description='Per petition category, e.g. {"涉诉信访" = 50}; others use retention_years.',
    )
    secret_key: str | None = Field(
        None,
        min_length=32,
        description="Server secret (at least 32 characters); default: generated once into "
        "<data_dir>/secret.key. Every node of a multi-node install needs the same value.",
    )

    @field_validator("database_url", "redis_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return None
        allowed = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith(allowed):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("media_udp_ports", mode="before")
    @classmethod
    def _port_range_text(cls, value: Any) -> Any:
        if isinstance(value, str) and "-" in value:  # "40000-40999"
            first, _, last = value.partition("-")
            try:
                return (int(first), int(last))
            except ValueError:
                raise ValueError("must be FIRST-LAST, e.g. 40000-40999") from None
        return value

    @field_validator("media_udp_ports")
    @classmethod
    def _port_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is None:
            return None
        first, last = value
        if not 1024 <= first <= last <= 65535:
            raise ValueError("must be [first, last] with 1024 <= first <= last <= 65535")
        return value

    @field_validator("media_allowed_networks", mode="before")
    @classmethod
    def _networks_text(cls, value: Any) -> Any:
        if isinstance(value, str):  # "10.1.0.0/16, 10.2.0.0/16"
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("media_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        try:
            return [str(ipaddress.ip_network(v, strict=False)) for v in value]
        except ValueError as exc:
            raise ValueError(f"must be CIDR networks, e.g. 10.20.0.0/16: {exc}") from None

    @property
    def media_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
        """``media_allowed_networks`` parsed; None: the default (media/transport.py)."""
        if self.media_allowed_networks is None:
            return None
        return [ipaddress.ip_network(v) for v in self.media_allowed_networks]

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def node_url(self) -> str:
        """Where browsers reach this node."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: one process does everything."""
        return self.redis_url is None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'vreception.db').resolve()}"

    @property
    def resolved_recordings_dir(self) -> Path:
        return self.recordings_dir or self.data_dir / "recordings"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


def _env_value(raw: str, annotation: Any) -> Any:
    """Environment values are strings; lists and dicts may be given as JSON."""
    text = raw.strip()
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return raw
    return raw


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Read the TOML file (if any), apply environment overrides, then keyword overrides."""
    environ = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = config_file or environ.get(CONFIG_ENV)
    source: dict[str, str] = {}
    if path:
        file = Path(path)
        try:
            with file.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {file}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from exc
        for key, value in data.items():
            values[key] = value
            source[key] = f"config file {file}"
    fields = Settings.model_fields
    for name, field in fields.items():
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            values[name] = _env_value(environ[env_name], field.annotation)
            source[name] = f"environment variable {env_name}"
        elif name in ENV_ALIASES and ENV_ALIASES[name] in environ:
            values[name] = environ[ENV_ALIASES[name]]
            source[name] = f"environment variable {ENV_ALIASES[name]}"
    for name, value in overrides.items():
        if value is not None:
            values[name] = value
            source[name] = "command line"
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "?"
            where = source.get(str(err["loc"][0]), "default") if err["loc"] else "?"
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown setting '{key}' (from {where})")
            else:
                problems.append(f"invalid setting '{key}' (from {where}): {err['msg']}")
        raise ConfigError("; ".join(problems)) from None
