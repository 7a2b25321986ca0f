"""``vreception doctor``: checks a deployment and says in plain Chinese what is wrong and what
to do, one line per check: 正常 (fine), 警告 (works, but look at it), 错误 (will not work).

The checks only look: they bind and release sample ports, open and close connections, read
files; they change nothing (no migration, no key is generated).
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import os
import secrets
import shutil
import socket
import stat
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.engine import make_url

from config.settings import Settings

TIMEOUT = 3.0  # seconds for each network probe
PORT_SAMPLES = 32  # ports of the media range tried
CERT_WARN_DAYS = 30
DISK_WARN_RATIO, DISK_ERROR_RATIO = 0.10, 0.03  # as config/monitoring/alerts.yml


class Level(enum.StrEnum):
    ok = "正常"
    warning = "警告"
    error = "错误"


@dataclass(frozen=True)
class Finding:
    topic: str  # what was checked, e.g. 数据库
    level: Level
    message: str  # what was found and, unless fine, what to do

    def line(self) -> str:
        return f"[{self.level.value}] {self.topic}：{self.message}"


def _ok(topic: str, message: str) -> Finding:
    return Finding(topic, Level.ok, message)


def _warn(topic: str, message: str) -> Finding:
    return Finding(topic, Level.warning, message)


def _error(topic: str, message: str) -> Finding:
    return Finding(topic, Level.error, message)


# ------------------------------------------------------------------ TLS


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        *san.get_values_for_type(x509.DNSName),
        *map(str, san.get_values_for_type(x509.IPAddress)),
    ]


def _covers(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


def _served_host(settings: Settings) -> str | None:
    """The name browsers use for this server: public_url's host, else the listen address."""
    if settings.public_url:
        return urlsplit(settings.public_url).hostname
    if settings.host not in ("0.0.0.0", "::", ""):  # noqa: S104  (compared, not bound)
        return settings.host
    return None


def check_tls(settings: Any, now: datetime | None = None) -> Finding:
    """The certificate and key of ``tls_cert``/``tls_key`` (settings that may not exist in
    every version: read with defaults): readable, a pair, in date, naming this server."""
    topic = "HTTPS 证书"
    cert_file, key_file = getattr(settings, "tls_cert", None), getattr(settings, "tls_key", None)
    if not cert_file and not key_file:
        if (settings.public_url or "").startswith("https://"):
            return _ok(topic, "本服务不直接提供 HTTPS，由反向代理（nginx）提供，证书请在代理上检查")
        return _warn(
            topic,
            "未配置 HTTPS：其他机器上的浏览器不允许网页使用摄像头和麦克风。"
            "请配置 tls_cert 和 tls_key，或在 nginx 后面运行（见 docs/deployment.md）",
        )
    if not cert_file or not key_file:
        return _error(topic, "tls_cert 和 tls_key 必须同时配置")
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except (OSError, ValueError) as exc:
        return _error(
            topic,
            f"无法读取证书文件 {cert_file}（{exc.__class__.__name__}）："
            "请检查路径、权限和 PEM 格式",
        )
    try:
        key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return _error(
            topic,
            f"无法读取私钥文件 {key_file}（{exc.__class__.__name__}）：私钥须为不加密码的 PEM 文件",
        )
    spki = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        return _error(topic, "私钥与证书不匹配：请使用签发该证书时生成的私钥")
    now = now or datetime.now(UTC)
    if now < cert.not_valid_before_utc:
        return _error(
            topic,
            f"证书尚未生效（生效时间 {cert.not_valid_before_utc:%Y-%m-%d}）：请检查服务器时间",
        )
    left = cert.not_valid_after_utc - now
    if left.total_seconds() <= 0:
        return _error(topic, f"证书已于 {cert.not_valid_after_utc:%Y-%m-%d} 过期：请签发新证书")
    names = _names(cert)
    host = _served_host(settings)
    if host is not None and not any(_covers(name, host) for name in names):
        listed = "、".join(names) or "无"
        return _error(
            topic,
            f"证书不包含浏览器访问的名称 {host}（证书中的名称：{listed}）："
            "请签发包含该名称的证书（subjectAltName），或修改 public_url",
        )
    summary = f"证书名称 {'、'.join(names) or '无'}，有效期至 {cert.not_valid_after_utc:%Y-%m-%d}"
    if left.days < CERT_WARN_DAYS:
        return _warn(topic, f"{summary}，不足 {CERT_WARN_DAYS} 天：请尽快更换证书")
    return _ok(topic, summary)


# ------------------------------------------------------------------ media network


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _bindable(address: str, port: int) -> OSError | None:
    with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, port))
        except OSError as exc:
            return exc
    return None


def check_announced(settings: Settings) -> tuple[Finding, list[str]]:
    """Every announced address is one of this host's; returns those that are."""
    topic = "媒体通告地址"
    good, bad = [], []
    for address in settings.media_announced_addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            bad.append(f"{address}（不是 IP 地址）")
            continue
        if _bindable(address, 0) is not None:
            bad.append(f"{address}（不在本机任何网卡上）")
        else:
            good.append(address)
    if bad:
        return _error(
            topic,
            f"media_announced_addresses 中的 {'、'.join(bad)}：浏览器将无法连接音视频。"
            "请改为本机在法院专网上的 IP 地址（ip -brief address 可列出本机地址）",
        ), good
    if not good:
        return _error(
            topic, "media_announced_addresses 为空：请填写本机在法院专网上的 IP 地址"
        ), good
    if all(ipaddress.ip_address(a).is_loopback for a in good):
        return _warn(
            topic,
            f"只通告了回环地址 {'、'.join(good)}：只有本机浏览器能连接音视频。"
            "其他机器使用时请在 media_announced_addresses 中填写本机的专网地址",
        ), good
    return _ok(topic, f"{'、'.join(good)} 均为本机地址"), good


def check_udp_ports(settings: Settings, addresses: Sequence[str]) -> Finding:
    """A sample of the media port range can be bound on the announced addresses."""
    topic = "媒体 UDP 端口"
    ports = settings.media_udp_ports
    if ports is None:
        return _warn(
            topic,
            "未限定端口范围（media_udp_ports），媒体使用任意空闲端口，防火墙需放开全部高端口 UDP。"
            "建议设置如 40000-40999 并在防火墙放开该范围",
        )
    first, last = ports
    size = last - first + 1
    step = max(1, size // PORT_SAMPLES)
    sample = sorted({*range(first, last + 1, step), last})
    where = list(addresses) or ["0.0.0.0"]  # noqa: S104  (a probe, closed at once)
    busy = [p for p in sample if any(_bindable(a, p) is not None for a in where)]
    span = f"{first}-{last}"
    if len(busy) == len(sample):
        return _error(
            topic,
            f"端口范围 {span} 已被占用（试了 {len(sample)} 个端口，全部无法绑定）："
            "请换一个空闲范围，或停止占用它的程序（ss -ulpn 可查看）",
        )
    if busy:
        shown = "、".join(map(str, busy[:5])) + ("等" if len(busy) > 5 else "")
        return _warn(
            topic,
            f"端口范围 {span} 中部分端口已被占用（{shown}，试了 {len(sample)} 个）："
            "若本服务未在运行，请检查占用它们的程序",
        )
    return _ok(topic, f"端口范围 {span}（{size} 个）可用，请确认防火墙已放开该范围的 UDP")


# ------------------------------------------------------------------ TURN


def _ice_urls(settings: Any) -> list[str]:
    urls = list(getattr(settings, "media_ice_servers", []) or [])
    for name in ("turn_urls", "turn_servers", "turn_url"):  # settings added for TURN
        extra = getattr(settings, name, None)
        if isinstance(extra, str):
            urls.append(extra)
        elif isinstance(extra, list | tuple):
            urls += [str(u) for u in extra]
    return list(dict.fromkeys(u for u in urls if u.startswith(("turn:", "turns:", "stun:"))))


def _stun_binding_answered(host: str, port: int) -> bool:
    """A STUN Binding request over UDP gets an answer (TURN servers answer it too)."""
    request = struct.pack("!HHI12s", 0x0001, 0, 0x2112A442, secrets.token_bytes(12))
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(request, address)
        try:
            answer, _ = sock.recvfrom(2048)
        except TimeoutError:
            return False
    return len(answer) >= 20 and answer[4:20] == request[4:20]  # cookie and transaction


def _probe_ice(url: str) -> str | None:
    """None if the server answers; else why not."""
    scheme, _, rest = url.partition(":")
    target, _, query = rest.partition("?")
    transport = "tcp" if scheme == "turns" or "transport=tcp" in query else "udp"
    if target.startswith("["):  # [IPv6]:port
        host, _, port_text = target[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = target.partition(":")
    port = int(port_text) if port_text.isdigit() else (5349 if scheme == "turns" else 3478)
    try:
        if transport == "tcp":
            with socket.create_connection((host, port), timeout=TIMEOUT):
                return None
        return None if _stun_binding_answered(host, port) else f"{TIMEOUT:.0f} 秒内 UDP 无应答"
    except OSError as exc:
        return exc.strerror or exc.__class__.__name__


def check_turn(settings: Any) -> Finding:
    topic = "TURN/STUN 服务器"
    urls = _ice_urls(settings)
    if not urls:
        return _ok(topic, "未配置（终端与服务器在专网中可直接连通时不需要）")
    failed = [(url, why) for url in urls if (why := _probe_ice(url)) is not None]
    if failed:
        listed = "；".join(f"{u}：{why}" for u, why in failed)
        return _error(
            topic,
            f"无法连接 {listed}。请检查 TURN 服务（systemctl status coturn）、地址端口和防火墙",
        )
    return _ok(topic, f"{'、'.join(urls)} 可连接")


# ------------------------------------------------------------------ storage, keys, tools


def check_disk(settings: Settings) -> Finding:
    from web.metrics import disk_usage

    topic = "录像磁盘"
    folder = settings.resolved_recordings_dir
    try:
        free, total = disk_usage(folder)
    except OSError as exc:
        return _error(topic, f"无法读取录像目录所在磁盘（{exc.strerror}）：请检查 recordings_dir")
    probe = folder if folder.exists() else next(p for p in folder.resolve().parents if p.exists())
    if not os.access(probe, os.W_OK | os.X_OK):
        return _error(topic, f"录像目录 {probe} 不可写：请把它的所有者设为运行服务的用户")
    ratio = free / total if total else 0.0
    said = f"剩余 {free / 2**30:.1f} GiB（{ratio:.0%}）"
    if ratio < DISK_ERROR_RATIO:
        return _error(topic, f"{said}，录像随时可能中断：请立即扩容或清理")
    if ratio < DISK_WARN_RATIO:
        return _warn(topic, f"{said}，不足 10%：请扩容录像磁盘")
    return _ok(topic, said)


def check_secret_key(settings: Settings) -> Finding:
    topic = "服务器密钥"
    if settings.secret_key:
        return _ok(topic, "已配置 secret_key")
    if settings.redis_url is not None:
        return _error(
            topic,
            "多节点部署（已配置 REDIS_URL）未设置 secret_key：一台节点发出的验证码、会话令牌"
            "在另一台无效，服务和录像处理进程拒绝启动；请在每台节点和录像处理进程的配置中"
            "设置同一个 secret_key（至少 32 个字符）",
        )
    return _ok(topic, f"单机模式，使用 {Path(settings.data_dir) / 'secret.key'}（首次启动时生成）")


def check_signing_key(settings: Settings) -> Finding:
    topic = "签名密钥"
    path = Path(settings.data_dir) / "signing-key.pem"
    if not path.exists():
        return _error(
            topic,
            f"{path} 不存在，录像无法签名：单机部署运行 vreception public-key 生成；"
            "多节点部署须从第一台节点复制同一个文件（权限 600）",
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return _error(topic, f"{path} 无法读取（{exc.__class__.__name__}）：请检查权限或从备份恢复")
    if not isinstance(key, Ed25519PrivateKey):
        return _error(topic, f"{path} 不是 Ed25519 私钥：请从备份恢复")
    from recorder.manifest import key_id

    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return _warn(topic, f"密钥 {key_id(key)} 可被其他用户读取：请执行 chmod 600 {path}")
    return _ok(topic, f"密钥 {key_id(key)} 可读")


def check_transcription(settings: Settings) -> Finding:
    from recorder.transcribe import create_transcriber

    topic = "语音转写"
    problem = create_transcriber(
        settings.transcribe_engine,
        settings.transcribe_model_dir,
        settings.transcribe_grammar,
        threads=settings.transcribe_threads,
        language=settings.transcribe_language,
    ).problem()
    if problem is None:
        model = settings.transcribe_model_dir or "内置模型"
        return _ok(topic, f"{settings.transcribe_engine} 可用，模型：{model}")
    return _warn(
        topic,
        f"{problem}。录像照常保存，但没有文字记录：请用 vreception models import 导入模型"
        "（见 docs/transcription.md）",
    )


def check_media_seams() -> Finding:
    from media.seams import SeamError, check_seams, installed_versions

    try:
        check_seams()
    except SeamError as exc:
        return _error("媒体库", exc.message)
    versions = "、".join(f"{name} {version}" for name, version in installed_versions().items())
    return _ok("媒体库", f"{versions}：中继依赖的内部接口均在")


def check_tools(settings: Settings) -> list[Finding]:
    from recorder.composite import find_font

    found = []
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        found.append(
            _warn(
                "ffmpeg",
                f"未找到 {'、'.join(missing)}：录像核查和排障需要它们，请执行 apt install ffmpeg",
            )
        )
    else:
        found.append(_ok("ffmpeg", "ffmpeg 和 ffprobe 已安装"))
    topic = "中文字体"
    if settings.overlay_font and not Path(settings.overlay_font).is_file():
        found.append(
            _error(topic, f"overlay_font 指定的 {settings.overlay_font} 不存在：请修改路径")
        )
    elif (font := find_font(settings.overlay_font)) is None:
        found.append(
            _warn(
                topic, "未找到中文字体，合成录像上的中文无法显示：请执行 apt install fonts-noto-cjk"
            )
        )
    else:
        found.append(_ok(topic, font))
    return found


# ------------------------------------------------------------------ database and Redis


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def check_database(settings: Settings) -> Finding:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from config.db import create_engine
    from web.cli import MIGRATIONS

    topic = "数据库"
    where = _safe_url(settings.resolved_database_url)
    if settings.is_sqlite:  # connecting would create an empty file
        file = make_url(settings.resolved_database_url).database
        if not file or not await asyncio.to_thread(Path(file).is_file):
            return _error(topic, f"数据库文件 {file} 不存在：请执行 vreception migrate")
    engine = create_engine(settings)
    try:
        async with asyncio.timeout(TIMEOUT * 2):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                current = await conn.run_sync(
                    lambda sync: MigrationContext.configure(sync).get_current_revision()
                )
    except Exception as exc:
        reason = (
            getattr(exc, "strerror", None)
            or (str(exc).splitlines() or [""])[0][:160]
            or exc.__class__.__name__
        )
        if isinstance(exc, TimeoutError):
            reason = "连接超时"
        return _error(topic, f"无法连接 {where}（{reason}）：请检查 database_url、数据库服务和网络")
    finally:
        await engine.dispose()
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    if current is None:
        return _error(topic, f"{where} 可连接但尚未建表：请执行 vreception migrate")
    if current != head:
        return _error(
            topic,
            f"{where} 的结构版本 {current} 不是当前版本 {head}：请先备份（vreception backup），"
            "再执行 vreception migrate",
        )
    return _ok(topic, f"{where} 可连接，结构为最新版本（{head}）")


async def check_redis(settings: Settings) -> Finding:
    from redis.asyncio import Redis

    topic = "Redis"
    if settings.redis_url is None:
        return _ok(topic, "未配置 REDIS_URL（单机模式，不需要 Redis）")
    where = _safe_url(settings.redis_url)
    client = Redis.from_url(
        settings.redis_url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT
    )
    try:
        await client.ping()
    except Exception as exc:
        return _error(topic, f"无法连接 {where}（{exc}）：请检查 redis_url 和 Redis 服务")
    finally:
        await client.aclose()
    return _ok(topic, f"{where} 可连接")


# ------------------------------------------------------------------ all of it


async def diagnose(settings: Settings) -> list[Finding]:
    """Every check, in the order an installer meets them."""
    findings = [check_tls(settings)]
    announced, usable = check_announced(settings)
    findings += [announced, check_udp_ports(settings, usable)]
    blocking: list[Callable[[], Finding]] = [
        lambda: check_turn(settings),
        lambda: check_disk(settings),
    ]
    findings += [await asyncio.to_thread(check) for check in blocking]
    findings.append(await check_database(settings))
    findings.append(await check_redis(settings))
    findings.append(check_secret_key(settings))
    findings.append(check_signing_key(settings))
    findings.append(check_transcription(settings))
    findings.append(check_media_seams())
    findings += check_tools(settings)
    return findings


def run(settings: Settings) -> int:
    """Print one line per check; 0 when nothing is an error, else 1."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    findings = asyncio.run(diagnose(settings))
    for finding in findings:
        print(finding.line())
    errors = sum(1 for f in findings if f.level is Level.error)
    warnings = sum(1 for f in findings if f.level is Level.warning)
    if errors:
        print(f"发现 {errors} 个错误、{warnings} 个警告：请按提示处理后再运行 vreception doctor")
        return 1
    print(f"没有错误（{warnings} 个警告）")
    return 0
