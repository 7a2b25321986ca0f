"""``vreception doctor`` run for real against a good embedded configuration and a broken one;
the certificate check against certificates made here."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aioice import stun
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config.settings import Settings
from recorder.manifest import load_signing_key
from tests.conftest import ROOT
from tests.helpers import free_port
from web.cli import migrate
from web.doctor import Level, check_tls

TOPICS = [
    "HTTPS 证书",
    "媒体通告地址",
    "媒体 UDP 端口",
    "TURN/STUN 服务器",
    "录像磁盘",
    "数据库",
    "Redis",
    "服务器密钥",
    "签名密钥",
    "语音转写",
    "媒体库",
    "ffmpeg",
    "中文字体",
]


def doctor(tmp_path: Path, config: dict[str, Any]) -> tuple[int, dict[str, str]]:
    """Run the real command on a TOML file; returns its exit code and each check's line."""
    toml = tmp_path / "vreception.toml"
    toml.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in config.items()))
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "--config", str(toml), "doctor"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = {}
    for line in done.stdout.splitlines():
        if line.startswith("["):
            topic = line.split("]", 1)[1].split("：", 1)[0].strip()
            lines[topic] = line
    assert list(lines) == TOPICS, done.stdout + done.stderr
    return done.returncode, lines


def ice_settings(turn: str, stun: tuple[str, ...] = ()) -> dict[str, Any]:
    """A TURN server in the configuration: in ``turn_urls`` (with its shared secret) where
    that setting exists, else among ``media_ice_servers`` with the STUN servers."""
    if "turn_urls" in Settings.model_fields:
        return {"turn_urls": [turn], "turn_secret": "t" * 32, "media_ice_servers": list(stun)}
    return {"media_ice_servers": [turn, *stun]}


@contextmanager
def held_udp_range(count: int) -> Iterator[tuple[int, int]]:
    """``count`` consecutive UDP ports on 127.0.0.1, bound (in use) while inside."""
    for _ in range(50):
        first = random.randint(20000, 30000)
        with ExitStack() as stack:
            try:
                for port in range(first, first + count):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            yield first, first + count - 1
            return
    raise AssertionError("no free run of UDP ports to hold")


@contextmanager
def stun_server() -> Iterator[int]:
    """A UDP STUN server on 127.0.0.1 answering Binding requests (aioice's messages)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            request = stun.parse_message(data)
            if request.message_method == stun.Method.BINDING:
                answer = stun.Message(
                    stun.Method.BINDING,
                    stun.Class.RESPONSE,
                    transaction_id=request.transaction_id,
                    attributes={"XOR-MAPPED-ADDRESS": peer},
                )
                sock.sendto(bytes(answer), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        done.set()
        thread.join()
        sock.close()


def test_a_good_embedded_install_has_no_error(tmp_path: Path) -> None:
    data = tmp_path / "var"
    settings = Settings(data_dir=data)
    migrate(settings)
    load_signing_key(data)  # what `vreception public-key` does on a fresh install
    with socket.socket() as turn, stun_server() as stun_port:  # TURN over TCP, STUN over UDP
        turn.bind(("127.0.0.1", 0))
        turn.listen()
        turn_port = turn.getsockname()[1]
        free = free_port()
        code, lines = doctor(
            tmp_path,
            {
                "data_dir": str(data),
                "media_announced_addresses": ["127.0.0.1"],
                "media_udp_ports": [free, free],  # free a moment ago
                **ice_settings(
                    f"turn:127.0.0.1:{turn_port}?transport=tcp",
                    stun=(f"stun:127.0.0.1:{stun_port}",),
                ),
            },
        )
    assert code == 0, lines
    for line in lines.values():
        assert line.startswith(("[正常]", "[警告]")), line
    for topic in (
        "数据库",
        "签名密钥",
        "媒体库",
        "TURN/STUN 服务器",
        "Redis",
        "服务器密钥",
        "ffmpeg",
        "中文字体",
    ):
        assert lines[topic].startswith("[正常]"), lines[topic]
    assert "最新版本" in lines["数据库"]
    # optional here, named so that an installer knows: no HTTPS, loopback only, no model
    assert lines["HTTPS 证书"].startswith("[警告]") and "tls_cert" in lines["HTTPS 证书"]
    assert lines["媒体通告地址"].startswith("[警告]") and "回环" in lines["媒体通告地址"]
    assert lines["语音转写"].startswith("[警告]")


def test_a_broken_install_names_each_problem(tmp_path: Path) -> None:
    """An announced address on no interface, a media port range in use, no signing key, no
    secret_key with Redis, an unreachable database, Redis and TURN server: each is an error
    on its own line, with what to do, and the database password is never printed."""
    closed_tcp = free_port()
    with held_udp_range(4) as (first, last):
        code, lines = doctor(
            tmp_path,
            {
                "data_dir": str(tmp_path / "var"),
                "database_url": f"postgresql+asyncpg://vr:Secret-Pw-1@127.0.0.1:{closed_tcp}/vr",
                "redis_url": f"redis://127.0.0.1:{closed_tcp}/0",
                "media_announced_addresses": ["127.0.0.1", "192.0.2.10"],
                "media_udp_ports": [first, last],
                **ice_settings(f"turn:127.0.0.1:{closed_tcp}?transport=tcp"),
            },
        )
    assert code == 1
    announced = lines["媒体通告地址"]
    assert announced.startswith("[错误]") and "192.0.2.10" in announced
    assert "127.0.0.1（" not in announced  # the good one is not blamed
    ports = lines["媒体 UDP 端口"]
    assert ports.startswith("[错误]") and f"{first}-{last}" in ports and "占用" in ports
    key = lines["签名密钥"]
    assert key.startswith("[错误]") and "signing-key.pem" in key and "不存在" in key
    # several nodes (redis_url) without one configured secret_key: each would make its own
    secret = lines["服务器密钥"]
    assert secret.startswith("[错误]") and "secret_key" in secret and "每台节点" in secret
    database = lines["数据库"]
    assert database.startswith("[错误]") and f"127.0.0.1:{closed_tcp}" in database
    assert "无法连接" in database
    assert lines["Redis"].startswith("[错误]")
    assert lines["TURN/STUN 服务器"].startswith("[错误]")
    assert "Secret-Pw-1" not in "".join(lines.values())


def _certificate(
    tmp_path: Path, names: list[str], days: int = 365
) -> tuple[Path, Path, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt: list[x509.GeneralName] = [
        x509.IPAddress(IPv4Address(n)) if n[0].isdigit() else x509.DNSName(n) for n in names
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "server.crt", tmp_path / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file, key


def _tls_settings(cert: Path, key: Path, public_url: str) -> Any:
    return SimpleNamespace(tls_cert=cert, tls_key=key, public_url=public_url, host="0.0.0.0")


def test_the_certificate_check_names_what_is_wrong(tmp_path: Path) -> None:
    cert, key, _ = _certificate(tmp_path, ["*.court.example", "10.1.2.3"])
    good = check_tls(_tls_settings(cert, key, "https://vr.court.example"))
    assert good.level is Level.ok and "*.court.example" in good.message, good
    by_ip = check_tls(_tls_settings(cert, key, "https://10.1.2.3:8443"))
    assert by_ip.level is Level.ok, by_ip

    wrong_name = check_tls(_tls_settings(cert, key, "https://vr.other.example"))
    assert wrong_name.level is Level.error and "vr.other.example" in wrong_name.message
    assert "*.court.example" in wrong_name.message  # what the certificate does name

    later = datetime.now(UTC) + timedelta(days=400)
    expired = check_tls(_tls_settings(cert, key, "https://vr.court.example"), now=later)
    assert expired.level is Level.error and "过期" in expired.message

    soon = check_tls(
        _tls_settings(cert, key, "https://vr.court.example"),
        now=datetime.now(UTC) + timedelta(days=350),
    )
    assert soon.level is Level.warning, soon

    other = tmp_path / "other"
    other.mkdir()
    _, other_key, _ = _certificate(other, ["vr.court.example"])
    mismatched = check_tls(_tls_settings(cert, other_key, "https://vr.court.example"))
    assert mismatched.level is Level.error and "不匹配" in mismatched.message

    only_cert = SimpleNamespace(tls_cert=cert, tls_key=None, public_url=None, host="127.0.0.1")
    assert check_tls(only_cert).level is Level.error
    behind_proxy = SimpleNamespace(public_url="https://vr.court.example", host="127.0.0.1")
    assert check_tls(behind_proxy).level is Level.ok  # settings without tls_* at all
