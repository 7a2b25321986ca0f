"""Retention of recordings: a period per petition category, legal holds, and deletion that
removes the media but keeps the proof (manifest, hashes, signature) and a deletion record."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recorder.manifest import (
    DELETION,
    DELETION_SIGNATURE,
    MANIFEST,
    PUBLIC_KEY,
    SIGNATURE,
    SUMS,
    sha256_file,
)
from recorder.state import replace_files

KEPT = {MANIFEST, SUMS, SIGNATURE, PUBLIC_KEY, DELETION, DELETION_SIGNATURE}


def retention_years(category: str, default: int, by_category: dict[str, int]) -> int:
    return by_category.get(category, default)


def retain_until(ended_at: datetime, years: int) -> datetime:
    """``ended_at`` plus whole years (29 February falls back to 28 February)."""
    try:
        return ended_at.replace(year=ended_at.year + years)
    except ValueError:
        return ended_at.replace(year=ended_at.year + years, day=28)


def delete_media(
    folder: Path, *, actor: str, reason: str, key: Ed25519PrivateKey | None = None
) -> dict[str, Any]:
    """Remove every file of the recording but the proof; write deletion.json naming what
    went (with the hash of each file as it was removed), by whom, when and why, signed with
    ``key`` (the recording's signing key): the proof then still verifies, each removed file
    named as removed, not as missing, if it was as signed. A file changed before it was
    removed keeps its own hash in the record, so the proof goes on saying so."""
    removed: list[dict[str, Any]] = []
    for path in sorted(folder.rglob("*"), reverse=True):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and name not in KEPT:
            removed.append(
                {"file": name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
            )
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    record = {
        "deleted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "deleted_by": actor,
        "reason": reason,
        "removed": sorted(removed, key=lambda r: str(r["file"])),
    }
    body = json.dumps(record, ensure_ascii=False, indent=1).encode()
    written = {DELETION: body}
    if key is not None:
        written[DELETION_SIGNATURE] = key.sign(body)
    replace_files(folder, written)
    return record
