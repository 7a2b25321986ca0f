"""Corrected revisions of a recording's transcript.

The signed ``transcript.json`` (the machine's text) is never rewritten. A correction makes a
new revision beside it, in ``revisions/``::

    transcript-rev<N>.json          every line; a corrected one carries its new text and
                                    ``machine_text``, ``corrected_by``, ``corrected_at``
    transcript-rev<N>.txt           the case-file text of that revision
    transcript-rev<N>.SHA256SUMS    sha256sum lines of both, and of the recording's own
                                    SHA256SUMS (the revision names what it revises)
    transcript-rev<N>.SHA256SUMS.sig  its Ed25519 signature, by the server's key
    transcript-latest.SHA256SUMS    the newest revision: one sha256sum line of its list,
                                    rewritten (with its ``.sig``) by each revision

``recorder.manifest.verify`` checks the recording as signed and then every revision, and
that none from 1 to the newest is missing (the pointer names the newest; each revision's
JSON says ``latest``, so a pointer removed with the newest revision is noticed too).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recorder.manifest import LATEST_REVISION
from recorder.state import SUMS, VisitRecording, load_state, replace_files
from recorder.transcribe import Line, case_file_text

REVISIONS = "revisions"
TRANSCRIPT = "transcript.json"


class RevisionError(RuntimeError):
    """The transcript cannot be corrected as it stands; the message says why, in Chinese."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sums_name(revision: int) -> str:
    return f"{REVISIONS}/transcript-rev{revision}.{SUMS}"


def corrected(transcript: dict[str, Any], corrections: list[dict[str, Any]]) -> dict[str, Any]:
    """The transcript with ``corrections`` applied (each ``{"line", "text", "machine_text",
    "corrected_by", "corrected_at"}``, oldest first: the last one of a line wins)."""
    lines = [dict(line) for line in transcript.get("lines", [])]
    for i, line in enumerate(lines):
        line["index"] = i
    for c in corrections:
        if not 0 <= int(c["line"]) < len(lines):
            continue  # no such line (the transcript is gone with the media, or damaged)
        line = lines[int(c["line"])]
        line["machine_text"] = line.get("machine_text", line["text"])
        line["text"] = c["text"]
        line["corrected_by"] = c["corrected_by"]
        line["corrected_at"] = c["corrected_at"]
    return {**transcript, "lines": lines}


def write_revision(
    folder: Path,
    key: Ed25519PrivateKey,
    revision: int,
    corrections: list[dict[str, Any]],
    tz: ZoneInfo,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write and sign revision ``revision`` of the transcript in ``folder``."""
    if not (folder / SUMS).is_file() or not (folder / TRANSCRIPT).is_file():
        raise RevisionError("录像尚未签名或没有转写，不能更正")
    original = json.loads((folder / TRANSCRIPT).read_text())
    data = corrected(original, corrections)
    data["revision"] = revision
    data["revises"] = TRANSCRIPT
    data["recording_sums_sha256"] = _sha256((folder / SUMS).read_bytes())
    data["latest"] = LATEST_REVISION
    recording = load_state(folder) or VisitRecording(visit_id=folder.name)
    recording.details.update({k: v for k, v in (details or {}).items() if v})
    lines = [
        Line(**{k: line[k] for k in ("start", "end", "role", "name", "text", "track_id")})
        for line in data["lines"]
    ]
    reason = None if data.get("available") else str(data.get("reason", ""))
    header = f"【更正版本 第{revision}版】机器识别原文见 transcript.json；更正处标注更正人和时间"
    text = case_file_text(
        recording, lines, list(data.get("notes", [])), float(data["visit_start"]), tz, reason,
        watermark=header,
    )  # fmt: skip
    marks = [
        f"  第{line['index'] + 1}句由 {line['corrected_by']} 于 "
        f"{datetime.fromisoformat(line['corrected_at']).astimezone(tz):%Y-%m-%d %H:%M:%S} "
        f"更正，机器识别原文：{line['machine_text']}"
        for line in data["lines"]
        if "machine_text" in line
    ]
    text += "\n更正记录：\n" + "\n".join(marks) + "\n"
    base = f"{REVISIONS}/transcript-rev{revision}"
    files = {
        f"{base}.json": json.dumps(data, ensure_ascii=False, indent=1).encode(),
        f"{base}.txt": text.encode(),
    }
    (folder / REVISIONS).mkdir(exist_ok=True)
    listed = {name: _sha256(body) for name, body in files.items()}
    listed[SUMS] = data["recording_sums_sha256"]
    sums = "".join(f"{digest}  {name}\n" for name, digest in sorted(listed.items()))
    files[sums_name(revision)] = sums.encode()
    files[sums_name(revision) + ".sig"] = key.sign(sums.encode())
    latest = f"{_sha256(sums.encode())}  {sums_name(revision)}\n".encode()
    files[LATEST_REVISION] = latest
    files[LATEST_REVISION + ".sig"] = key.sign(latest)
    replace_files(folder, files)  # the revision whole or not at all
    return data


def latest_case_file(folder: Path, revision: int | None = None) -> str | None:
    """The case-file text of revision ``revision`` (default: the newest in the folder), or
    None when nobody corrected anything."""
    if revision is not None:
        path = folder / f"{REVISIONS}/transcript-rev{revision}.txt"
        return path.read_text() if revision > 0 else None
    found = sorted(
        (folder / REVISIONS).glob("transcript-rev*.txt"),
        key=lambda p: int(p.stem.removeprefix("transcript-rev") or 0),
    )
    return found[-1].read_text() if found else None
