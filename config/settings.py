"""Typed settings from a TOML file plus ``VRECEPTION_*`` environment overrides.

The defaults are the embedded mode: SQLite and recordings under ``./var/``, no Redis,
listening on 127.0.0.1:8080. A bad value stops start-up with a message naming the key.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography import x509
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from config.turn import IceServers, check_stun_url, check_turn_url

ENV_PREFIX = "VRECEPTION_"
CONFIG_ENV = "VRECEPTION_CONFIG"
# Conventional names honoured as aliases when the prefixed variable is absent.
ENV_ALIASES = {"redis_url": "REDIS_URL", "database_url": "DATABASE_URL"}
# What ``trust_forwarded_for = true`` (the older setting) means: a proxy on this machine.
LOOPBACK_PROXIES = ("127.0.0.1", "::1")


# What pages, documents and logs say when no Mandarin model is set up (one home for it).
NO_MODEL = "未配置中文语音识别模型，请按 docs/transcription.md 导入模型"
# In the data directory: the models `vreception models import` installed and the one in use.
MODELS_FILE = "models.json"
MODEL_KEYS = ("transcribe_engine", "transcribe_model_dir")


class ConfigError(Exception):
    """A setting is missing, unknown or invalid; the message names the key."""


class Settings(BaseModel):
    """All settings of one vreception process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Address the web server listens on.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port of the web server.")
    tls_cert: Path | None = Field(
        None,
        description="PEM certificate (chain) of the server: with tls_key, serve HTTPS itself.",
    )
    tls_key: Path | None = Field(
        None,
        validate_default=True,
        description="PEM private key of tls_cert (unencrypted); give both or neither.",
    )
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
    cookie_secure: bool = Field(
        False,
        description="Mark cookies Secure; default: true when tls_cert is set or public_url "
        "is https://.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks of reverse proxies (e.g. nginx on 127.0.0.1): "
        "X-Forwarded-For and X-Forwarded-Proto are honoured only on their connections.",
    )
    trust_forwarded_for: bool = Field(
        False,
        description="Older setting: true means trusted_proxies = 127.0.0.1 and ::1 when "
        "trusted_proxies is not set.",
    )
    login_max_failures_per_account: int = Field(5, ge=1, le=1000)
    login_max_failures_per_address: int = Field(20, ge=1, le=10000)
    login_failure_window_seconds: int = Field(900, ge=10, le=86400)
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    case_material_max_mb: int = Field(
        20,
        ge=1,
        le=1024,
        description="Largest scanned material (PDF, JPEG or PNG) one case upload may be, in MB.",
    )
    sms_webhook_url: str | None = Field(
        None,
        description="The court's SMS platform: each message is POSTed there as JSON "
        "(phone, text, id) with an X-Signature HMAC-SHA-256 of the body keyed with "
        "sms_webhook_secret. Unset: messages wait in the outbox operators see.",
    )
    sms_webhook_secret: SecretStr | None = Field(None, description="Key of the X-Signature.")
    sms_webhook_attempts: int = Field(3, ge=1, le=10)
    portal_code_ttl_minutes: int = Field(5, ge=1, le=60)
    portal_code_max_failures: int = Field(5, ge=1, le=20)
    portal_codes_per_phone_hour: int = Field(5, ge=1, le=1000)
    portal_codes_per_address_hour: int = Field(20, ge=1, le=100000)
    portal_session_minutes: int = Field(30, ge=5, le=24 * 60)
    message_reply_days: int = Field(
        5,
        ge=1,
        le=60,
        description="Days a court has to answer a petitioner's online question (有信必复); "
        "an unanswered one is then overdue.",
    )
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
    stats_refresh_seconds: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="How old the stored statistics of the current and the previous month may "
        "be: housekeeping recomputes them at this interval and the dashboard before reading "
        "older ones (0: at every read). Earlier months are recomputed once a day.",
    )
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
        default_factory=list,
        description="STUN URLs (stun:HOST[:PORT]); empty on closed court networks. TURN "
        "servers go in turn_urls.",
    )
    turn_urls: list[str] = Field(
        default_factory=list,
        description="TURN URLs of the court's coturn, e.g. turn:turn.court:3478 (pages get it "
        "over UDP and TCP) and turns:turn.court:5349?transport=tcp; empty: no TURN.",
    )
    turn_secret: SecretStr | None = Field(
        None,
        min_length=16,
        validate_default=True,
        description="coturn's static-auth-secret (at least 16 characters); required with "
        "turn_urls. Never logged or sent to pages.",
    )
    turn_ttl_seconds: int = Field(
        6 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="How long a participant's TURN credentials stay valid.",
    )
    media_udp_ports: tuple[int, int] | None = Field(
        None,
        description="UDP port range [first, last] for media (open it in the court firewall); "
        "unset: any free port. About one port per participant connection is needed.",
    )
    media_max_video_kbps: int = Field(
        1500,
        ge=100,
        le=20000,
        description="The most video bitrate (kbit/s) the relay tells a publisher's browser it "
        "may send; less when a subscriber's browser reports a thinner downlink (REMB). Nobody "
        "watching: this much, so the recording keeps the full picture.",
    )
    media_poor_network_kbps: int = Field(
        150,
        ge=10,
        le=5000,
        description="A participant whose browser reports a downlink below this (kbit/s) for "
        "2 s is shown as 网络较差 to everyone in the visit, until it stays above for 3 s.",
    )
    public_url: str | None = Field(
        None,
        description="This node's address as browsers reach it (e.g. https://node1.court:8443); "
        "with Redis, a visit's room is pinned to one node and participants are sent to it. "
        "Default http(s)://<host>:<port>.",
    )
    transcribe_engine: Literal["whisper", "sherpa-onnx", "pocketsphinx", "none"] = Field(
        "whisper",
        description="Speech to text for transcripts: whisper (faster-whisper, CTranslate2 "
        "model), sherpa-onnx (Paraformer/SenseVoice), both with a model from `vreception "
        "models import` or transcribe_model_dir; pocketsphinx (bundled English model); none.",
    )
    transcribe_model_dir: Path | None = Field(
        None,
        description="Folder of the speech model; set by `vreception models import` "
        "(<data_dir>/models.json) unless given here.",
    )
    transcribe_language: str = Field(
        "zh", description="Language spoken, for Whisper (ISO 639-1 code: zh, en, ...)."
    )
    transcribe_threads: int = Field(
        1, ge=1, le=64, description="CPU threads one transcription uses (per worker process)."
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
        description='Per petition category code (case_category), e.g. {"criminal_appeal" = 50}; '
        "others use retention_years.",
    )
    secret_key: str | None = Field(
        None,
        min_length=32,
        description="Server secret (at least 32 characters); default: generated once into "
        "<data_dir>/secret.key. Every node of a multi-node install needs the same value.",
    )

    @model_validator(mode="before")
    @classmethod
    def _secure_cookies_follow_https(cls, data: Any) -> Any:
        """Unless cookie_secure is given, it is true when browsers come over HTTPS."""
        if isinstance(data, dict) and data.get("cookie_secure") is None:
            public_url = str(data.get("public_url") or "").strip()
            https = bool(str(data.get("tls_cert") or "").strip()) or public_url.startswith(
                "https://"
            )
            data = {**data, "cookie_secure": https}
        return data

    @field_validator("database_url", "redis_url", "tls_cert", "tls_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("tls_cert")
    @classmethod
    def _certificate_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            x509.load_pem_x509_certificates(value.read_bytes())
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror}") from None
        except ValueError:
            raise ValueError(f"{value} is not a PEM certificate") from None
        return value

    @field_validator("tls_key")
    @classmethod
    def _key_of_certificate(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if "tls_cert" not in info.data:  # tls_cert itself is invalid: said there
            return value
        cert: Path | None = info.data["tls_cert"]
        if value is None and cert is None:
            return None
        if value is None:
            raise ValueError("tls_cert is set but tls_key is not: give both or neither")
        if cert is None:
            raise ValueError("tls_key is set but tls_cert is not: give both or neither")
        if not value.is_file():
            raise ValueError(f"cannot read {value}: no such file")
        try:
            server_ssl_context(cert, value)
        except EncryptedKeyError:
            raise ValueError(
                f"{value} is encrypted: a passphrase cannot be typed at start-up; store the "
                "key unencrypted, readable only by the service's user"
            ) from None
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise ValueError(f"{value} is not the private key of tls_cert {cert}") from None
            raise ValueError(f"{value} is not a PEM private key") from None
        except OSError as exc:
            raise ValueError(f"cannot read {value}: {exc.strerror}") from None
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return [entry.strip() for entry in value]

    @property
    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """Peers whose X-Forwarded-* headers are believed (empty: nobody's)."""
        entries = self.trusted_proxies or (LOOPBACK_PROXIES if self.trust_forwarded_for else ())
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)

    @property
    def tls(self) -> bool:
        """True when the server serves HTTPS itself."""
        return self.tls_cert is not None and self.tls_key is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server side of HTTPS when tls_cert and tls_key are set."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        return server_ssl_context(self.tls_cert, self.tls_key)

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

    @field_validator("transcribe_language")
    @classmethod
    def _language_code(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z]{2,3}", value):
            raise ValueError("must be a lower-case ISO 639-1 language code such as zh or en")
        return value

    @field_validator("media_ice_servers")
    @classmethod
    def _stun_urls(cls, value: list[str]) -> list[str]:
        return [check_stun_url(url.strip()) for url in value]

    @field_validator("turn_urls")
    @classmethod
    def _turn_urls(cls, value: list[str]) -> list[str]:
        return [check_turn_url(url.strip()) for url in value]

    @field_validator("turn_secret", mode="before")
    @classmethod
    def _empty_secret(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("turn_secret")
    @classmethod
    def _secret_with_urls(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None and info.data.get("turn_urls"):
            raise ValueError("turn_urls are set: give coturn's static-auth-secret here")
        return value

    def ice_servers(self) -> IceServers:
        """The ICE servers pages and the relay use (TURN credentials issued per participant)."""
        secret = self.turn_secret.get_secret_value() if self.turn_secret else None
        return IceServers(self.media_ice_servers, self.turn_urls, secret, self.turn_ttl_seconds)

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
        scheme = "https" if self.tls else "http"
        return self.public_url or f"{scheme}://{self.host}:{self.port}"

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


class EncryptedKeyError(Exception):
    """The TLS key needs a passphrase, which a service cannot be asked for."""


def _no_passphrase() -> bytes:
    raise EncryptedKeyError


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """TLS 1.2+ server context with ``cert`` (chain) and its unencrypted ``key``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key, password=_no_passphrase)
    return context


def _env_value(raw: str, annotation: Any) -> Any:
    """Environment values are strings; lists and dicts may be given as JSON."""
    text = raw.strip()
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return raw
    return raw


def active_model(data_dir: Path) -> dict[str, Any] | None:
    """The model `vreception models import` made the one in use (from ``models.json``):
    ``{"name", "engine", "dir" (absolute), "sha256", ...}``, or None."""
    try:
        data = json.loads((Path(data_dir) / MODELS_FILE).read_text())
        name = data["active"]
        entry = dict(data["models"][name])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    entry["name"] = name
    entry["dir"] = str((Path(data_dir) / entry["dir"]).resolve())
    return entry


def _imported_model(values: dict[str, Any], source: dict[str, str]) -> None:
    """The imported model overrides the config file's engine and model folder (the import
    is the administrator's later word); the environment and the command line still win."""
    if any(source.get(k, "").startswith(("environment", "command")) for k in MODEL_KEYS):
        return
    model = active_model(Path(values.get("data_dir", "var")))
    if model is None:
        return
    where = f"{MODELS_FILE} (vreception models import)"
    values["transcribe_engine"], values["transcribe_model_dir"] = model["engine"], model["dir"]
    source["transcribe_engine"] = source["transcribe_model_dir"] = where


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
    _imported_model(values, source)
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
