"""The server's secret key, generated once and kept in the data directory; what several
nodes must share instead."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from config.settings import Settings


def load_secret_key(settings: Settings) -> bytes:
    """The configured secret, or the one in ``<data_dir>/secret.key`` (created 0600 if absent)."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = Path(settings.data_dir) / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    value = secrets.token_hex(32).encode()
    write_private(path, value)
    return value


def signing_key_path(settings: Settings) -> Path:
    """The Ed25519 key recordings and exports are signed with (recorder/manifest.py)."""
    return Path(settings.data_dir) / "signing-key.pem"


def cluster_key_problems(settings: Settings) -> list[str]:
    """With ``redis_url`` (several nodes and a worker), the keys this machine would otherwise
    make for itself and no other machine knows: codes, CSRF and rejoin tokens made on one
    node would be refused on another, recordings signed by the worker fail verification.
    One line each (Chinese, then English); none in embedded mode or when all is set."""
    if settings.redis_url is None:
        return []
    problems = []
    if not settings.secret_key:
        problems.append(
            "多节点部署（已配置 REDIS_URL）必须在每台节点和录像处理进程的配置中设置同一个 "
            "secret_key（至少 32 个字符），不能使用各机自动生成的 secret.key "
            "(with REDIS_URL every node and the worker need the same secret_key)"
        )
    path = signing_key_path(settings)
    if not path.exists():
        problems.append(
            f"多节点部署（已配置 REDIS_URL）的签名密钥 {path} 不存在：请在一台机器上运行 "
            "vreception public-key 生成，再把同一个文件复制到每台节点和录像处理进程的数据目录"
            "（权限 600） (the shared signing key is missing: make it once, copy it to every "
            "node and worker)"
        )
    return problems


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` readable by this user only (0600); never overwrite one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
