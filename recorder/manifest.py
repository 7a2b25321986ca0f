"""A recording's proof of integrity: the SHA-256 of every file, signed with the server's
Ed25519 key, checkable with standard tools alone (docs/verification.md):

- ``manifest.json``: the visit's identifiers and timeline summary, and every file's hash;
- ``SHA256SUMS``: ``sha256sum`` lines for every file, ``manifest.json`` included;
- ``SHA256SUMS.sig``: the Ed25519 signature of ``SHA256SUMS`` (raw 64 bytes);
- ``public-key.pem``: the key that signed it (compare with the court's published key).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from config.keys import write_private
from recorder.state import SUMS as SUMS  # the manifest's word, kept in the light module
from recorder.state import replace_files

MANIFEST = "manifest.json"
# retention's record of the files it removed, and its signature (recorder/retention.py)
DELETION = "deletion.json"
DELETION_SIGNATURE = "deletion.json.sig"
SIGNATURE = "SHA256SUMS.sig"
PUBLIC_KEY = "public-key.pem"
UNSIGNED = {SUMS, SIGNATURE, PUBLIC_KEY}  # the proof itself
SKIPPED_SUFFIXES = (".tmp",)  # what a backup leaves out (web/backup.py)
# Corrected transcript revisions, signed apart after the recording (recorder/revisions.py).
REVISIONS = "revisions/"
# the signed pointer to the newest revision: one sha256sum line naming its list
LATEST_REVISION = REVISIONS + f"transcript-latest.{SUMS}"
_REVISION = re.compile(r"revisions/transcript-rev([0-9]{1,6})\.")
# The temporary files the pipeline itself writes into a signed folder (recorder/state.py
# replace_files: a re-signing, the deletion record, a revision; recorder/composite.py: a
# retried composite), left behind only by a crash: neither signed nor checked. Any other
# file, another ``.tmp`` included, is signed or reported as not in the manifest.
TEMPORARY = frozenset(
    n + ".tmp"
    for n in (MANIFEST, SUMS, SIGNATURE, PUBLIC_KEY, DELETION, DELETION_SIGNATURE, "composite.mp4")
)
_REVISION_TEMPORARY = re.compile(
    r"revisions/transcript-(rev[0-9]{1,6}|latest)\.(json|txt|SHA256SUMS|SHA256SUMS\.sig)\.tmp"
)
# a repaired copy of a track being written (recorder/state.py recover_folder), left behind
# only by a crash mid-repair: the next repair writes its own
_REPAIR_TEMPORARY = re.compile(r"(?:[^/]+/)*[^/]+-repaired\.(?:webm|mkv)\.[0-9]+-[0-9a-f]{8}\.tmp")
# written only before signing (the sink's and finalize's saves of recording.json): one left
# by a crash is removed when the folder is signed, so a signed folder never holds it
UNSIGNED_TEMPORARY = "recording.json.tmp"


def is_temporary(name: str) -> bool:
    """``name`` (relative to the recording's folder) is a temporary file of the pipeline."""
    return (
        name in TEMPORARY
        or _REVISION_TEMPORARY.fullmatch(name) is not None
        or _REPAIR_TEMPORARY.fullmatch(name) is not None
    )


def load_signing_key(data_dir: Path) -> Ed25519PrivateKey:
    """The server's signing key, ``<data_dir>/signing-key.pem`` (created 0600 on first use)."""
    path = Path(data_dir) / "signing-key.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(path, pem)
    return key


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """A short fingerprint: the first 16 hex digits of the SHA-256 of the public key PEM."""
    return hashlib.sha256(public_pem(key)).hexdigest()[:16]


def _sha256(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB pieces (the one hash of files everywhere)."""
    with path.open("rb") as fh:
        return _sha256(fh)


def _files(folder: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if (
            path.is_file()
            and name not in UNSIGNED
            and not is_temporary(name)
            and not name.startswith(REVISIONS)
        ):
            yield name, path


def sign_folder(
    folder: Path, key: Ed25519PrivateKey, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write manifest.json, SHA256SUMS, its signature and the public key into ``folder``."""
    (folder / UNSIGNED_TEMPORARY).unlink(missing_ok=True)
    hashes: dict[str, str] = {}
    for name, path in _files(folder):
        if name == MANIFEST:
            continue
        with path.open("rb") as fh:
            hashes[name] = _sha256(fh)
            os.fsync(fh.fileno())  # on disk before it is signed (a power cut after signing)
    manifest = {
        "version": 1,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "key_id": key_id(key),
        **(details or {}),
        "files": hashes,
    }
    body = json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True).encode()
    sums = {MANIFEST: hashlib.sha256(body).hexdigest(), **hashes}
    text = "".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items()))
    # all four or none: a re-signing that fails (a full disk) leaves the earlier proof whole
    replace_files(
        folder,
        {
            MANIFEST: body,
            SUMS: text.encode(),
            PUBLIC_KEY: public_pem(key),
            SIGNATURE: key.sign(text.encode()),
        },
    )
    return manifest


@dataclass
class Verification:
    """The result of checking a recording: ``ok`` only if every file and the signature hold."""

    signature_ok: bool = False
    key_id: str = ""
    checked: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # file → why
    removed: list[str] = field(default_factory=list)  # by retention, under a signed record

    @property
    def ok(self) -> bool:
        return self.signature_ok and not self.failed and bool(self.checked)


EXPORT_SUMS = "EXPORT-SHA256SUMS"
EXPORT_SIGNATURE = "EXPORT-SHA256SUMS.sig"
EXPORT_PROOF = {EXPORT_SUMS, EXPORT_SIGNATURE}


class _Source:
    """A recording folder or an export ZIP, read the same way.

    An export ZIP holds one top folder: the recording as signed under ``recording/``, and
    beside it the export's own files (watermarked case-file text, notes, VERIFY.txt...)
    listed in ``EXPORT-SHA256SUMS`` and signed by the exporting server.
    """

    def __init__(self, target: Path) -> None:
        self.zip = zipfile.ZipFile(target) if target.is_file() else None
        self.folder = target
        self.prefix = ""  # of the recording's own files
        self.top = ""  # of the export (the ZIP's top folder)
        if self.zip is not None:
            names = self.zip.namelist()
            sums = [n for n in names if PurePosixPath(n).name == SUMS]
            if sums:
                self.prefix = str(PurePosixPath(min(sums, key=len)).parent)
                self.prefix = "" if self.prefix == "." else self.prefix + "/"
            exports = [n for n in names if PurePosixPath(n).name == EXPORT_SUMS]
            if exports:
                self.top = str(PurePosixPath(min(exports, key=len)).parent)
                self.top = "" if self.top == "." else self.top + "/"

    @property
    def is_export(self) -> bool:
        return self.zip is not None and any(
            n == self.top + EXPORT_SUMS for n in self.zip.namelist()
        )

    def all_names(self) -> set[str]:
        """Every file of a ZIP, relative to the export's top folder."""
        assert self.zip is not None
        return {
            n[len(self.top) :]
            for n in self.zip.namelist()
            if not n.endswith("/") and n.startswith(self.top)
        } | {"../" + n for n in self.zip.namelist() if not n.startswith(self.top)}

    def outside(self) -> set[str]:
        """A ZIP's files outside the recording's folder."""
        assert self.zip is not None
        return {
            n for n in self.zip.namelist() if not n.endswith("/") and not n.startswith(self.prefix)
        }

    def names(self) -> set[str]:
        if self.zip is not None:
            return {
                n[len(self.prefix) :]
                for n in self.zip.namelist()
                if n.startswith(self.prefix)
                and not n.endswith("/")
                and not is_temporary(n[len(self.prefix) :])
            }
        return {name for name, _ in _files(self.folder)} | {
            n for n in UNSIGNED if (self.folder / n).exists()
        }

    def read(self, name: str, base: str | None = None) -> bytes:
        if self.zip is not None:
            return self.zip.read((self.prefix if base is None else base) + name)
        return (self.folder / name).read_bytes()

    def digest(self, name: str, base: str | None = None) -> str:
        if self.zip is not None:
            with self.zip.open((self.prefix if base is None else base) + name) as fh:
                return _sha256(fh)
        with (self.folder / name).open("rb") as fh:
            return _sha256(fh)


def _listed(sums: bytes) -> dict[str, str]:
    listed: dict[str, str] = {}
    for line in sums.decode(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) == 64 and name:
            listed[name] = digest
    return listed


_ENGLISH = re.compile(r" \([\x20-\x7e]*\)")


def chinese(text: str) -> str:
    """A finding as the pages show it: the reasons without their English gloss, which only
    the command line keeps (``内容已被改动 (hash mismatch)`` → ``内容已被改动``)."""
    return _ENGLISH.sub("", text)


def _load_key(data: bytes) -> Ed25519PublicKey | str:
    try:
        loaded = serialization.load_pem_public_key(data)
    except ValueError:
        return "缺少或无法读取公钥 (public key missing or unreadable)"
    if not isinstance(loaded, Ed25519PublicKey):
        return "不是 Ed25519 公钥 (not an Ed25519 key)"
    return loaded


def verify(
    target: Path, trusted_key: Ed25519PublicKey | None = None, *, revisions: int | None = None
) -> Verification:
    """Check every hash and the signature of a recording folder or export ZIP. Without
    ``trusted_key`` the enclosed public key is used (compare its id with the court's).
    ``revisions``: how many transcript revisions the database knows of (the server passes
    it), each of which must be in the folder.

    For an export, the recording's own files are checked against its manifest and the
    export's added files against the export's signed list; a file that neither lists
    fails, and so does an export whose two signatures are not by the same key."""
    result = Verification()
    source = _Source(Path(target))
    try:
        sums = source.read(SUMS)
        signature = source.read(SIGNATURE)
    except (KeyError, OSError):
        result.failed[SUMS] = "缺少校验清单或签名 (SHA256SUMS / SHA256SUMS.sig missing)"
        return result
    key = trusted_key
    if key is None:
        try:
            loaded = _load_key(source.read(PUBLIC_KEY))
        except (KeyError, OSError):
            loaded = "缺少或无法读取公钥 (public key missing or unreadable)"
        if isinstance(loaded, str):
            result.failed[PUBLIC_KEY] = loaded
            return result
        key = loaded
    result.key_id = key_id(key)
    try:
        key.verify(signature, sums)
        result.signature_ok = True
    except InvalidSignature:
        result.failed[SUMS] = "签名不符 (signature does not match)"
    listed = _listed(sums)
    present = source.names() - UNSIGNED
    label = source.prefix[len(source.top) :] if source.is_export else ""
    removed: dict[str, str] = {}
    if source.zip is None and DELETION in present:
        removed = _removed(source, key, result)
        present -= {DELETION, DELETION_SIGNATURE}
    for name, digest in sorted(listed.items()):
        if name not in present and removed.get(name) == digest:
            result.removed.append(name)  # deleted when its retention ran out
        elif name not in present:
            result.failed[label + name] = "文件缺失 (missing)"
        elif source.digest(name) != digest:
            result.failed[label + name] = "内容已被改动 (hash mismatch)"
        else:
            result.checked.append(label + name)
    if not source.is_export:
        for name in sorted(present - set(listed)):
            result.failed[name] = "不在清单中 (not in the manifest)"
        if source.zip is not None:
            # a ZIP without an export's signed list holds the recording's folder and nothing
            # else: an export whose list was removed would otherwise pass with its other
            # files (the case-file texts) changed at will
            for name in sorted(source.outside()):
                result.failed[name] = "不在清单中 (not in the manifest)"
        if source.zip is None:
            _verify_revisions(Path(target), key, result, revisions)
        return result
    _verify_export(
        source, key, result, covered={label + n for n in listed} | {label + n for n in UNSIGNED}
    )
    return result


def _removed(source: _Source, key: Ed25519PublicKey, result: Verification) -> dict[str, str]:
    """The files retention removed (name → the hash the manifest had), from its record
    signed by the same key; a record without a valid signature counts for nothing."""
    body = source.read(DELETION)
    try:
        key.verify(source.read(DELETION_SIGNATURE), body)
        record = json.loads(body)
    except (OSError, InvalidSignature, ValueError):
        result.failed[DELETION] = "删除记录签名不符 (deletion record signature does not match)"
        return {}
    return {
        str(r.get("file")): str(r.get("sha256"))
        for r in record.get("removed", [])
        if isinstance(r, dict)
    }


def _verify_revisions(
    folder: Path, key: Ed25519PublicKey, result: Verification, expected: int | None
) -> None:
    """Each corrected transcript revision: its list signed by the same key, its files as
    listed (the recording's own SHA256SUMS included), nothing unlisted in ``revisions/``,
    and none missing: every revision from 1 to the newest that one present, the signed
    pointer to the newest, or ``expected`` (the database's count, when the server checks)
    names. Revisions written with the pointer say so, so the pointer cannot go unnoticed."""
    revisions = folder / REVISIONS
    if not revisions.is_dir() and not expected:
        return
    covered: set[str] = set()
    lists = sorted(revisions.glob(f"transcript-rev*.{SUMS}"))
    pointer = folder / LATEST_REVISION
    if pointer.is_file():
        lists.append(pointer)
    newest = expected or 0
    for sums_path in lists:
        name = sums_path.relative_to(folder).as_posix()
        covered |= {name, name + ".sig"}
        sums = sums_path.read_bytes()
        try:
            key.verify((folder / (name + ".sig")).read_bytes(), sums)
        except (OSError, InvalidSignature):
            result.signature_ok = False
            result.failed[name] = "更正版本签名不符 (revision signature does not match)"
            continue
        for listed, digest in sorted(_listed(sums).items()):
            path = folder / listed
            covered.add(listed)
            if name == LATEST_REVISION and (number := _REVISION.match(listed)):
                newest = max(newest, int(number.group(1)))
            if not path.is_file():
                result.failed[listed] = "文件缺失 (missing)"
                continue
            with path.open("rb") as fh:
                ok = _sha256(fh) == digest
            if not ok:
                result.failed[listed] = "内容已被改动 (hash mismatch)"
            elif listed.startswith(REVISIONS) and listed not in result.checked:
                result.checked.append(listed)
    marked = False
    for path in sorted(revisions.rglob("*")) if revisions.is_dir() else []:
        name = path.relative_to(folder).as_posix()
        if not path.is_file() or is_temporary(name):
            continue
        if name not in covered:
            result.failed[name] = "不在清单中 (not in the manifest)"
        if number := _REVISION.match(name):
            newest = max(newest, int(number.group(1)))
            if name.endswith(".json") and not marked:
                with contextlib.suppress(ValueError, AttributeError):  # changed: failed above
                    marked = json.loads(path.read_bytes()).get("latest") == LATEST_REVISION
    if marked and not pointer.is_file():
        result.failed[LATEST_REVISION] = "文件缺失 (missing)"
    for revision in range(1, newest + 1):
        name = f"{REVISIONS}transcript-rev{revision}.{SUMS}"
        if not (folder / name).is_file():
            result.failed.setdefault(name, "更正版本缺失 (revision missing)")


def _verify_export(
    source: _Source, key: Ed25519PublicKey, result: Verification, covered: set[str]
) -> None:
    """The export's own list: signed by the same key, every file as listed, none extra."""
    top = source.top
    sums = source.read(EXPORT_SUMS, top)
    try:
        key.verify(source.read(EXPORT_SIGNATURE, top), sums)
    except (KeyError, InvalidSignature):
        result.signature_ok = False
        result.failed[EXPORT_SUMS] = "导出签名不符 (export signature does not match)"
    listed = _listed(sums)
    present = source.all_names()
    for name, digest in sorted(listed.items()):
        if name not in present:
            result.failed[name] = "文件缺失 (missing)"
        elif source.digest(name, top) != digest:
            result.failed[name] = "内容已被改动 (hash mismatch)"
        else:
            result.checked.append(name)
    if PUBLIC_KEY in present and source.read(PUBLIC_KEY, top) != public_pem(key):
        result.failed[PUBLIC_KEY] = "公钥与签名所用的不同 (not the key that signed)"
    extra = present - covered - set(listed) - EXPORT_PROOF - {PUBLIC_KEY}
    for name in sorted(extra):
        result.failed[name] = "不在清单中 (not in the manifest)"
