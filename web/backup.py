"""``vreception backup`` and ``vreception restore``: the database, the keys, the settings
and the recordings of an install in one folder, and back.

A backup folder holds::

    backup.json          what is in it: every file's SHA-256, each recording's files and
                         the hash of its SHA256SUMS, what this run copied
    database.sqlite3     SQLite: a consistent copy made with SQLite's online backup API
    database.pgdump      PostgreSQL: ``pg_dump --format=custom``
    signing-key.pem      the recordings' signing key; secret.key: the server secret
    vreception.toml      the settings file the install ran with
    recordings/<visit>/  the recordings, copied incrementally

Backing up into the same folder again copies only the recording files that are new or
changed (size or modification time differ); the rest are kept and listed as unchanged.
A restore checks every file against backup.json, refuses a non-empty target unless forced,
and verifies every signed recording's signature afterwards (recorder/manifest.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import Integer, String, bindparam, text
from sqlalchemy.engine import make_url

from config.db import create_engine
from config.settings import Settings
from recorder import manifest

FORMAT = 1
MANIFEST = "backup.json"
SQLITE_DUMP = "database.sqlite3"
PG_DUMP = "database.pgdump"
SIGNING_KEY = "signing-key.pem"
SECRET_KEY = "secret.key"  # noqa: S105 (a file name)
SETTINGS_FILE = "vreception.toml"
RECORDINGS = "recordings"
PARTIAL = ".partial"


class BackupError(Exception):
    """A backup or restore cannot go on; the message says why and what to do."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy(source: Path, target: Path, mode: int | None = None) -> str:
    """Copy ``source`` to ``target`` (through a temporary name, keeping the modification
    time); returns the SHA-256 of what was copied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + PARTIAL)
    digest = hashlib.sha256()
    with source.open("rb") as src, partial.open("wb") as dst:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            digest.update(chunk)
            dst.write(chunk)
    shutil.copystat(source, partial)
    if mode is not None:
        partial.chmod(mode)
    partial.replace(target)
    return digest.hexdigest()


def _files(folder: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith((PARTIAL, *manifest.SKIPPED_SUFFIXES)):
            yield path.relative_to(folder).as_posix(), path


def _sqlite_path(settings: Settings) -> Path:
    database = make_url(settings.resolved_database_url).database
    assert database, "a SQLite URL names a file"
    return Path(database)


def _pg_tool(name: str) -> str:
    """``pg_dump``/``pg_restore`` of the newest PostgreSQL installed (Debian keeps them in
    /usr/lib/postgresql/<version>/bin), else the one on PATH."""
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        found = [p / "bin" / name for p in base.iterdir() if (p / "bin" / name).exists()]
        if found:
            return str(max(found, key=lambda p: int(p.parent.parent.name)))
    on_path = shutil.which(name)
    if on_path is None:
        raise BackupError(f"{name} not found: install Debian's postgresql-client package")
    return on_path


def _pg_env(settings: Settings) -> tuple[dict[str, str], str]:
    url = make_url(settings.resolved_database_url)
    env = dict(os.environ)
    for var, value in (
        ("PGHOST", url.host),
        ("PGPORT", str(url.port) if url.port else None),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
    ):
        if value:
            env[var] = value
    return env, url.database or ""


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    out = subprocess.run(args, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise BackupError(f"{what} failed: {out.stderr.strip() or out.stdout.strip()}")


async def _query(settings: Settings, sql: str, **params: Any) -> Any:
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            return (await conn.execute(text(sql), params)).scalar()
    finally:
        await engine.dispose()


def _schema_revision(settings: Settings) -> str | None:
    try:
        revision = asyncio.run(_query(settings, "SELECT version_num FROM alembic_version"))
    except Exception:  # no schema yet
        return None
    return str(revision) if revision is not None else None


# ---------------------------------------------------------------------------- backup


@dataclass
class BackupReport:
    dest: Path
    database: str
    recordings: int
    copied: list[str]
    unchanged: int


def _previous(dest: Path) -> dict[str, Any]:
    path = dest / MANIFEST
    if not path.exists():
        return {}
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def backup(settings: Settings, dest: Path, config_file: Path | None = None) -> BackupReport:
    """Back the install up into ``dest`` (created, or a previous backup to update)."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise BackupError(f"{dest} is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / MANIFEST).exists():
        raise BackupError(
            f"{dest} is not empty and holds no {MANIFEST}: give an empty folder or a "
            "previous backup"
        )
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o700)  # it holds the keys
    previous = _previous(dest)
    now = datetime.now(settings.tz).isoformat(timespec="seconds")

    # the database
    if settings.is_sqlite:
        source = _sqlite_path(settings)
        if not source.is_file():
            raise BackupError(f"no database at {source}: nothing to back up")
        dump = dest / SQLITE_DUMP
        partial = dest / (SQLITE_DUMP + PARTIAL)
        partial.unlink(missing_ok=True)
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # a consistent copy while the server writes
        finally:
            dst.close()
            src.close()
        partial.chmod(0o600)
        partial.replace(dump)
        (dest / PG_DUMP).unlink(missing_ok=True)
        kind = "sqlite"
    else:
        dump = dest / PG_DUMP
        partial = dest / (PG_DUMP + PARTIAL)
        env, name = _pg_env(settings)
        _run(
            [_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
             f"--file={partial}", name],
            env, "pg_dump",
        )  # fmt: skip
        partial.chmod(0o600)
        partial.replace(dump)
        (dest / SQLITE_DUMP).unlink(missing_ok=True)
        kind = "postgresql"

    # keys and settings
    files: dict[str, str] = {}
    extras: list[tuple[str, Path | None]] = [
        (SIGNING_KEY, settings.data_dir / SIGNING_KEY),
        (SECRET_KEY, settings.data_dir / SECRET_KEY),
        (SETTINGS_FILE, config_file),
    ]
    for name, extra in extras:
        if extra is not None and extra.is_file():
            files[name] = _copy(extra, dest / name, 0o600)
        else:
            (dest / name).unlink(missing_ok=True)

    # the recordings, incrementally
    root = settings.resolved_recordings_dir
    before: dict[str, Any] = previous.get("recordings", {})
    recordings: dict[str, Any] = {}
    copied: list[str] = []
    unchanged = 0
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in folders:
        known = before.get(folder.name, {}).get("files", {})
        entry: dict[str, Any] = {}
        for name, path in _files(folder):
            target = dest / RECORDINGS / folder.name / name
            info = path.stat()
            old = known.get(name)
            if (
                old is not None
                and target.is_file()
                and old.get("size") == info.st_size
                and old.get("mtime_ns") == info.st_mtime_ns
                and target.stat().st_size == info.st_size
                and target.stat().st_mtime_ns == info.st_mtime_ns
            ):
                digest = old["sha256"]
                unchanged += 1
            else:
                digest = _copy(path, target)
                copied.append(f"{folder.name}/{name}")
            entry[name] = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": digest}
        sums = entry.get(manifest.SUMS)
        recordings[folder.name] = {
            "sums_sha256": sums["sha256"] if sums else None,
            "files": entry,
        }

    data = {
        "format": FORMAT,
        "created_at": now,
        "schema_revision": _schema_revision(settings),
        "database": {"kind": kind, "file": dump.name, "sha256": _sha256(dump)},
        "files": files,
        "recordings_dir": str(root),
        "recordings": recordings,
        "copied": copied,
        "unchanged": unchanged,
    }
    partial = dest / (MANIFEST + PARTIAL)
    partial.write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True))
    partial.chmod(0o600)
    partial.replace(dest / MANIFEST)
    return BackupReport(dest, dump.name, len(recordings), copied, unchanged)


# ---------------------------------------------------------------------------- restore


@dataclass
class RecordingCheck:
    """One restored recording: ``ok`` when every file matches and the signature holds."""

    visit_id: str
    signed: bool
    files: int = 0
    key_id: str = ""
    problems: dict[str, str] = field(default_factory=dict)  # file → why

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class RestoreReport:
    database: str
    schema_revision: str | None
    recordings: list[RecordingCheck]
    settings_file: Path | None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.recordings)


def _stored_files(folder: Path, skip: Path | None = None) -> list[Path]:
    if not folder.is_dir():
        return []
    return [
        p for p in folder.rglob("*") if p.is_file() and (skip is None or not p.is_relative_to(skip))
    ]


def _pg_has_tables(settings: Settings) -> bool:
    count = asyncio.run(
        _query(
            settings,
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
    )
    return bool(count)


def _check_empty(settings: Settings) -> None:
    root = settings.resolved_recordings_dir
    found = _stored_files(settings.data_dir, skip=root) + _stored_files(root)
    if found:
        raise BackupError(
            f"the data dir {settings.data_dir} or the recordings dir {root} is not empty "
            f"({len(found)} files, e.g. {found[0]}): restore into empty ones, or give --force "
            "to overwrite what is there"
        )
    if not settings.is_sqlite and _pg_has_tables(settings):
        raise BackupError(
            f"the database {make_url(settings.resolved_database_url).database} already has "
            "tables: restore into an empty database, or give --force to replace them"
        )


def _check(src: Path, name: str, expected: str | None) -> Path:
    path = src / name
    if expected is None:
        raise BackupError(f"backup damaged: {name} is not listed in {MANIFEST}")
    if not path.is_file():
        raise BackupError(f"backup damaged: {name} is missing")
    if _sha256(path) != expected:
        raise BackupError(
            f"backup damaged: {name} does not match its SHA-256 in {MANIFEST}; "
            "restore from another backup"
        )
    return path


def _check_names(data: dict[str, Any]) -> None:
    """Every path backup.json names stays inside the backup and the target folders."""

    def unsafe(name: str) -> bool:
        parts = PurePosixPath(name).parts
        return not parts or name.startswith("/") or ".." in parts or "\\" in name

    names = [data.get("database", {}).get("file", ""), *data.get("files", {})]
    for visit_id, entry in data.get("recordings", {}).items():
        if unsafe(visit_id) or "/" in visit_id:  # a recording is one folder
            names.append("/" + visit_id)
        names.extend(entry.get("files", {}))
    for name in names:
        if unsafe(name):
            raise BackupError(f"backup damaged: {MANIFEST} names an unsafe path {name!r}")


async def _move_folders(settings: Settings, old: str, new: str) -> None:
    """Point the recordings' rows at the recordings dir they were restored into."""
    old, new = old.rstrip("/") + "/", new.rstrip("/") + "/"
    statement = text(
        "UPDATE recordings SET folder = :new || substr(folder, :start) "
        "WHERE substr(folder, 1, :length) = :old"
    ).bindparams(
        bindparam("new", type_=String),
        bindparam("old", type_=String),
        bindparam("start", type_=Integer),
        bindparam("length", type_=Integer),
    )
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                statement, {"new": new, "old": old, "start": len(old) + 1, "length": len(old)}
            )
    finally:
        await engine.dispose()


def restore(settings: Settings, src: Path, force: bool = False) -> RestoreReport:
    """Restore the backup ``src`` into the configured data dir, recordings dir and database,
    then verify every recording."""
    src = Path(src)
    try:
        data: dict[str, Any] = json.loads((src / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{src} is not a vreception backup (no {MANIFEST})") from None
    except ValueError as exc:
        raise BackupError(f"backup damaged: {MANIFEST} is not valid JSON ({exc})") from None
    if data.get("format") != FORMAT:
        raise BackupError(f"{MANIFEST} has format {data.get('format')!r}; expected {FORMAT}")
    _check_names(data)
    if not force:
        _check_empty(settings)
    database = data["database"]
    kind = "sqlite" if settings.is_sqlite else "postgresql"
    if database["kind"] != kind:
        raise BackupError(
            f"the backup holds a {database['kind']} database but this install is configured "
            f"for {kind} (database_url): configure the same kind of database"
        )
    # everything but the recordings is checked before anything is written
    dump = _check(src, database["file"], database["sha256"])
    keys = {name: _check(src, name, digest) for name, digest in data["files"].items()}

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        target = _sqlite_path(settings)
        for suffix in ("", "-wal", "-shm"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        src_db = sqlite3.connect(f"file:{dump}?mode=ro", uri=True)
        dst_db = sqlite3.connect(target)
        try:
            src_db.backup(dst_db)
        finally:
            dst_db.close()
            src_db.close()
        target.chmod(0o600)
    else:
        env, name = _pg_env(settings)
        clean = ["--clean", "--if-exists"] if force else []
        _run(
            [_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
             *clean, f"--dbname={name}", str(dump)],
            env, "pg_restore",
        )  # fmt: skip
    for name in (SIGNING_KEY, SECRET_KEY):
        if name in keys:
            _copy(keys[name], settings.data_dir / name, 0o600)

    root = settings.resolved_recordings_dir
    root.mkdir(parents=True, exist_ok=True)
    trusted = None
    if (settings.data_dir / SIGNING_KEY).is_file():
        trusted = manifest.load_signing_key(settings.data_dir).public_key()
    checks: list[RecordingCheck] = []
    for visit_id, entry in sorted(data["recordings"].items()):
        folder = root / visit_id
        if force and folder.exists():
            shutil.rmtree(folder)
        check = RecordingCheck(visit_id, signed=entry["sums_sha256"] is not None)
        for name, info in sorted(entry["files"].items()):
            stored = src / RECORDINGS / visit_id / name
            if not stored.is_file():
                check.problems[name] = "文件缺失 (missing from the backup)"
                continue
            if _copy(stored, folder / name) != info["sha256"]:
                check.problems[name] = "内容已被改动 (does not match backup.json)"
            check.files += 1
        if check.signed:
            result = manifest.verify(folder, trusted)
            check.key_id = result.key_id
            for name, why in result.failed.items():
                check.problems.setdefault(name, why)
            if not result.signature_ok:
                check.problems.setdefault(manifest.SIGNATURE, "签名无效 (signature invalid)")
        checks.append(check)
    old_root = data.get("recordings_dir")
    if old_root and old_root != str(root):
        asyncio.run(_move_folders(settings, old_root, str(root)))
    return RestoreReport(
        database=database["file"],
        schema_revision=data.get("schema_revision"),
        recordings=checks,
        settings_file=keys.get(SETTINGS_FILE),
    )
