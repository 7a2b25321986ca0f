"""The server's secret key, generated once and kept in the data directory."""

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


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` readable by this user only (0600); never overwrite one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
