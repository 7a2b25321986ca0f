"""A certified copy of a recording for the case file: one ZIP that proves itself.

Layout (``visit-<id>/`` at the top of the ZIP)::

    recording/            the recording exactly as signed: composite, originals, transcripts
                          (JSON, WebVTT, case-file text), timeline, manifest.json,
                          SHA256SUMS, SHA256SUMS.sig, public-key.pem
    case-file.txt         the case-file text with a watermark line: who exported it, when
    case-file-corrected.txt  (when lines were corrected) the newest corrected revision's
                          case-file text, with the same watermark line
    notes.json            the judge's time-stamped notes
    EXPORT.json           who exported it, when, from which recording and key
    VERIFY.txt            the commands that check all of it
    public-key.pem        the key that signed the recording and this export
    EXPORT-SHA256SUMS     hashes of every file the export added (and of recording/SHA256SUMS)
    EXPORT-SHA256SUMS.sig its Ed25519 signature

The recording's own files are never rewritten (their signature would no longer hold); what
the export adds is signed again by the same server key. ``manifest.verify`` checks both.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from recorder.manifest import (
    EXPORT_SIGNATURE,
    EXPORT_SUMS,
    MANIFEST,
    PUBLIC_KEY,
    SIGNATURE,
    SUMS,
    key_id,
    public_pem,
    sha256_file,
    verify,
)
from recorder.revisions import latest_case_file
from recorder.state import VisitRecording, load_state
from recorder.transcribe import Line, case_file_text

STORED = (".mp4", ".webm", ".mkv", ".sig")  # already compressed, or tiny binary


class ExportError(RuntimeError):
    """The recording cannot be exported as it stands (unsigned, or no longer intact)."""


def export_name(visit_id: str) -> str:
    """The export ZIP's file name, wherever it is named: the download, VERIFY.txt, the
    page (its top folder is the same name without ``.zip``)."""
    return f"visit-{visit_id}.zip"


VERIFY_TEXT = """远程视频接访录像 · 核验说明 (how to check this certified copy)

接访编号 visit: {visit_id}
信访事项编号 petition: {petition}
导出人 exported by: {actor}
导出时间 exported at: {at}
签名公钥 key id: {key_id}
  （请与本院公布的公钥指纹核对 / compare with the court's published key id;
  指纹 = sha256sum public-key.pem 的前 16 位）

一、用 vreception 核验 (one command):

    vreception verify {zip_name} [--key 本院公钥.pem]

二、仅用标准工具核验 (OpenSSL 3 and GNU coreutils), 解压后:

    cd {top}
    # 1. 导出清单由本院密钥签名 / the export's list was signed by the court's key
    openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin \\
        -in EXPORT-SHA256SUMS -sigfile EXPORT-SHA256SUMS.sig
    # 2. 导出附加的文件未被改动 / the files this export added are as listed
    sha256sum -c EXPORT-SHA256SUMS
    cd recording
    # 3. 录像清单由本院密钥签名 / the recording's list was signed by the same key
    openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin \\
        -in SHA256SUMS -sigfile SHA256SUMS.sig
    # 4. 录像的每个文件未被改动 / every file of the recording is as archived
    sha256sum -c SHA256SUMS

每一步都应显示 "Signature Verified Successfully" 或逐个文件 "OK"；
任何 "FAILED" 都说明该文件已被改动。
"""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def watermarked_case_file(
    folder: Path, watermark: str, tz: ZoneInfo, details: dict[str, Any] | None = None
) -> str:
    """The recording's case-file text again, with ``watermark`` under its header. The
    header names the courts, the petition and the parties from ``details`` (the database's
    names of the visit), whatever the recording's own files say."""
    recording = load_state(folder) or VisitRecording(visit_id=folder.name)
    recording.details.update({k: v for k, v in (details or {}).items() if v})
    transcript_path = folder / "transcript.json"
    if transcript_path.exists():
        data = json.loads(transcript_path.read_text())
        lines = [Line(**line) for line in data.get("lines", [])]
        reason = None if data.get("available") else str(data.get("reason", ""))
        notes, start = list(data.get("notes", [])), float(data["visit_start"])
    else:  # nothing was said or shown: the header and the notes still go into the file
        manifest = json.loads((folder / MANIFEST).read_text())
        timeline = _load(folder / "timeline.json")
        lines = []
        reason = (
            "本次接访没有录得音视频"
            if recording.empty
            else "转写未能完成（原始录像与时间轴已签名，可播放核对）"
        )
        notes = list(manifest.get("visit", {}).get("notes", []))
        start = float(timeline.get("start") or recording.started_at)
    return case_file_text(recording, lines, notes, start, tz, reason, watermark=watermark)


def _load(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def build_export(
    folder: Path,
    out: Path,
    *,
    key: Ed25519PrivateKey,
    actor: str,
    at: datetime,
    tz: ZoneInfo,
    details: dict[str, Any] | None = None,
    revision: int | None = None,
) -> dict[str, Any]:
    """Write the certified ZIP of the recording in ``folder`` to ``out``.

    Refuses (ExportError) a recording that is not signed or does not verify against
    ``key``: a copy is certified only if the original is intact. ``revision``: the newest
    transcript revision the database knows of (the server passes it): it must be in the
    folder, and its text is the corrected case file (default: the newest in the folder)."""
    if not (folder / SUMS).exists():
        raise ExportError("录像尚未签名，不能导出")
    check = verify(folder, key.public_key(), revisions=revision)
    if not check.ok:
        names = "、".join(sorted(check.failed))[:200]
        raise ExportError(f"录像完整性核验未通过（{names}），不能出具核验副本")
    visit_id = folder.name
    zip_name = export_name(visit_id)
    top = zip_name.removesuffix(".zip")
    local = at.astimezone(tz)
    details = details or {}
    watermark = (
        f"【核验副本】导出人：{actor}　导出时间：{local:%Y-%m-%d %H:%M:%S}"
        f"　本副本仅供入卷，核验方法见 VERIFY.txt"
    )
    listed = [line.partition("  ")[2] for line in (folder / SUMS).read_text().splitlines() if line]
    transcript = folder / "transcript.json"
    notes = (
        json.loads(transcript.read_text()).get("notes", [])
        if transcript.exists()
        else json.loads((folder / MANIFEST).read_text()).get("visit", {}).get("notes", [])
    )
    added: dict[str, bytes] = {
        "case-file.txt": watermarked_case_file(folder, watermark, tz, details).encode(),
        "notes.json": json.dumps(notes, ensure_ascii=False, indent=1).encode(),
        "EXPORT.json": json.dumps(
            {
                "visit_id": visit_id,
                "petition_number": details.get("petition_number", ""),
                "exported_by": actor,
                "exported_at": at.isoformat(timespec="seconds"),
                "key_id": key_id(key),
                "recording_sums_sha256": _sha256((folder / SUMS).read_bytes()),
                "files": sorted(listed),
            },
            ensure_ascii=False,
            indent=1,
        ).encode(),
        "VERIFY.txt": VERIFY_TEXT.format(
            visit_id=visit_id,
            petition=details.get("petition_number", ""),
            actor=actor,
            at=f"{local:%Y-%m-%d %H:%M:%S %Z}",
            key_id=key_id(key),
            zip_name=zip_name,
            top=top,
        ).encode(),
    }
    corrected = latest_case_file(folder, revision)  # verified above with the recording
    if corrected is not None:
        added["case-file-corrected.txt"] = f"{watermark}\n{corrected}".encode()
    sums = (
        "".join(f"{_sha256(data)}  {name}\n" for name, data in sorted(added.items()))
        + f"{_sha256((folder / SUMS).read_bytes())}  recording/{SUMS}\n"
    )
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for name in sorted({*listed, MANIFEST, SUMS, SIGNATURE, PUBLIC_KEY}):
            path = folder / name
            method = zipfile.ZIP_STORED if name.endswith(STORED) else zipfile.ZIP_DEFLATED
            archive.write(path, f"{top}/recording/{name}", compress_type=method)
        for name, data in added.items():
            archive.writestr(f"{top}/{name}", data, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr(f"{top}/{PUBLIC_KEY}", public_pem(key))
        archive.writestr(f"{top}/{EXPORT_SUMS}", sums)
        archive.writestr(f"{top}/{EXPORT_SIGNATURE}", key.sign(sums.encode()))
    tmp.replace(out)
    return {
        "file": zip_name,
        "size": out.stat().st_size,
        "sha256": sha256_file(out),
        "key_id": key_id(key),
        "watermark": watermark,
    }
