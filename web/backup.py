"""``vreception backup`` and ``vreception restore``: the database, the keys, the settings,
the case materials and the recordings of an install in one folder, and back.

A backup folder holds::

    backup.json          what is in it: every file's SHA-256, each recording's files and
                         the hash of its SHA256SUMS, the case materials, what this run
                         copied and the recordings it could not back up
    database.sqlite3     SQLite: a consistent copy made with SQLite's online backup API
    database.pgdump      PostgreSQL: ``pg_dump --format=custom``
    signing-key.pem      the recordings' signing key; secret.key: the server secret
    vreception.toml      the settings file the install ran with
    materials/<file>     the case materials petitioners and staff uploaded
    recordings/<visit>/  the recordings, copied incrementally

Backing up into the same folder again copies only the recording and material files that
are new or changed (size or modification time differ); the rest are kept and listed as
unchanged.

A run changes nothing the last backup.json lists until it is done: it writes the database,
the keys and every file it copies below ``.staging-<run>/`` (at the same paths), then
replaces backup.json, which names the run, in one rename (the commit), and only then moves
the staged files over the old ones. Until they are all moved a restore takes a file from
the committed run's staging folder if it is there. A run that dies before the commit so
leaves the previous backup restorable, one that dies after it the new one; the next run
deletes an uncommitted staging folder and finishes the moves of a committed one. Speech
models (``<data_dir>/models``, ``models.json``) are not backed up: they are imported again.

A restore checks every file against backup.json, refuses a non-empty target unless forced,
and verifies every signed recording's signature afterwards (recorder/manifest.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import Integer, String, bindparam, text
from sqlalchemy.engine import make_url

from config.db import create_engine
from config.settings import Settings
from recorder import manifest
from scheduler.cases.service import materials_dir

FORMAT = 1
MANIFEST = "backup.json"
SQLITE_DUMP = "database.sqlite3"
PG_DUMP = "database.pgdump"
SIGNING_KEY = "signing-key.pem"
SECRET_KEY = "secret.key"  # noqa: S105 (a file name)
SETTINGS_FILE = "vreception.toml"
RECORDINGS = "recordings"
MATERIALS = "materials"
PARTIAL = ".partial"
STAGING = ".staging-"  # + the run's id: what a run writes until backup.json names it
RESTORING = ".restoring"  # a restored SQLite database until it is whole
UPLOADING = ".upload-"  # a material still being uploaded (web/handlers/cases.py)
RUN_ID = re.compile(r"[0-9a-f]{32}")


class BackupError(Exception):
    """A backup or restore cannot go on; the message says why and what to do."""


def _copy(source: Path, target: Path, mode: int | None = None) -> str:
    """Copy ``source`` to ``target`` (through a temporary name, keeping the modification
    time, on disk before it gets its name); returns the SHA-256 of what was copied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + PARTIAL)
    digest = hashlib.sha256()
    try:
        with source.open("rb") as src, partial.open("wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                digest.update(chunk)
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        shutil.copystat(source, partial)
        if mode is not None:
            partial.chmod(mode)
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)  # a full disk keeps no half copy
        raise
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _files(folder: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.endswith((PARTIAL, *manifest.SKIPPED_SUFFIXES)):
            yield path.relative_to(folder).as_posix(), path


def _material_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """The stored materials; not those still being uploaded."""
    if folder.is_dir():
        for name, path in _files(folder):
            if not path.name.startswith(UPLOADING):
                yield name, path


def _sqlite_path(settings: Settings) -> Path:
    database = make_url(settings.resolved_database_url).database
    assert database, "a SQLite URL names a file"
    return Path(database)


def _sqlite_copy(source: Path, target: Path) -> None:
    """Copy the SQLite database ``source`` into ``target`` with SQLite's online backup API:
    a consistent copy even while a server writes ``source``."""
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:  # a full disk, too
        raise BackupError(
            f"复制 SQLite 数据库失败 copying the SQLite database {source} failed: {exc}"
        ) from exc


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


# ---------------------------------------------------------------------------- staging


def _run_id(data: dict[str, Any]) -> str | None:
    """The run that wrote the backup.json ``data`` (None: one made before runs had ids)."""
    run = data.get("run")
    return run if isinstance(run, str) and RUN_ID.fullmatch(run) else None


def _stored(src: Path, run: str | None, name: str) -> Path:
    """Where the backup ``src`` keeps ``name``: in the staging folder of the run that
    wrote its backup.json while that run's moves are unfinished, else in its place."""
    if run is not None:
        staged = src / (STAGING + run) / name
        if staged.is_file():
            return staged
    return src / name


def _move_into_place(staged: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staged.replace(target)


def _settle(dest: Path, run: str | None) -> None:
    """Move the staged files of ``run``, the run backup.json names, over the old ones;
    delete the staging folders of runs that died before their commit (copies only)."""
    for stage in sorted(dest.glob(STAGING + "*")):
        if run is not None and stage.name == STAGING + run:
            for path in sorted(stage.rglob("*")):
                if path.is_file() and not path.name.endswith(PARTIAL):
                    _move_into_place(path, dest / path.relative_to(stage))
            _fsync_dir(dest)
        if stage.is_dir():
            shutil.rmtree(stage)
        else:
            stage.unlink()


def _ours(entry: Path) -> bool:
    """Left in a backup folder by a run that died before its first commit."""
    return entry.name.startswith(STAGING) or entry.name == MANIFEST + PARTIAL


# ---------------------------------------------------------------------------- backup


@dataclass
class BackupReport:
    dest: Path
    database: str
    recordings: int
    copied: list[str]
    unchanged: int
    materials: int = 0
    materials_copied: list[str] = field(default_factory=list)
    not_backed_up: list[dict[str, str]] = field(default_factory=list)  # visit_id, folder, why


def _previous(dest: Path) -> dict[str, Any]:
    path = dest / MANIFEST
    if not path.exists():
        return {}
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def _copy_changed(
    files: Iterable[tuple[str, Path]], known: dict[str, Any], place: Path, stage: Path
) -> tuple[dict[str, Any], list[str], int]:
    """Stage below ``stage`` the ``files`` that are new or changed since the last backup
    (it listed them in ``known`` and keeps them below ``place``); returns their listing
    for backup.json, the names copied and how many were unchanged."""
    listing: dict[str, Any] = {}
    copied: list[str] = []
    unchanged = 0
    for name, path in files:
        info = path.stat()
        old = known.get(name)
        kept = place / name
        kept_info = kept.stat() if old is not None and kept.is_file() else None
        if (
            old is not None
            and kept_info is not None
            and old.get("size") == info.st_size == kept_info.st_size
            and old.get("mtime_ns") == info.st_mtime_ns == kept_info.st_mtime_ns
        ):
            digest = old["sha256"]
            unchanged += 1
        else:
            digest = _copy(path, stage / name)
            copied.append(name)
        listing[name] = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": digest}
    return listing, copied, unchanged


async def _recording_folders(settings: Settings) -> list[tuple[str, str]]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text("SELECT visit_id, folder FROM recordings"))
            return [(str(visit_id), str(folder)) for visit_id, folder in result]
    finally:
        await engine.dispose()


def _left_out(settings: Settings, root: Path) -> list[dict[str, str]]:
    """The recordings whose folder (the database keeps it absolute) is not in the
    recordings dir ``root``: a backup of that dir cannot hold them."""
    try:
        rows = asyncio.run(_recording_folders(settings))
    except Exception:  # no recordings table yet (an old schema)
        return []
    real_root = root.resolve()
    out: list[dict[str, str]] = []
    for visit_id, folder in sorted(rows):
        path = Path(folder)
        if path.parent.resolve() == real_root:
            continue
        why = f"文件夹不在录像目录 {root} 中 (outside the recordings dir)"
        if not path.is_dir():
            why += "，且已不存在 (and missing)"
        out.append({"visit_id": visit_id, "folder": folder, "reason": why})
    return out


def backup(settings: Settings, dest: Path, config_file: Path | None = None) -> BackupReport:
    """Back the install up into ``dest`` (created, or a previous backup to update)."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise BackupError(f"{dest} is not a folder")
    if (
        dest.is_dir()
        and not (dest / MANIFEST).exists()
        and not all(_ours(entry) for entry in dest.iterdir())
    ):
        raise BackupError(
            f"{dest} is not empty and holds no {MANIFEST}: give an empty folder or a "
            "previous backup"
        )
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o700)  # it holds the keys
    previous = _previous(dest)
    _settle(dest, _run_id(previous))  # what an interrupted run left
    run = uuid.uuid4().hex
    stage = dest / (STAGING + run)
    stage.mkdir(mode=0o700)
    try:
        data, report = _stage(settings, dest, stage, previous, config_file)
        data["run"] = run
        for folder in sorted((p for p in stage.rglob("*") if p.is_dir()), reverse=True):
            _fsync_dir(folder)
        _fsync_dir(stage)
        partial = dest / (MANIFEST + PARTIAL)
        with partial.open("w") as fh:
            fh.write(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True))
            fh.flush()
            os.fsync(fh.fileno())
        partial.chmod(0o600)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)  # copies only: the previous backup stands
        raise
    partial.replace(dest / MANIFEST)  # the commit
    try:
        _fsync_dir(dest)
        _settle(dest, run)
        stale = [PG_DUMP if data["database"]["kind"] == "sqlite" else SQLITE_DUMP]
        stale += [n for n in (SIGNING_KEY, SECRET_KEY, SETTINGS_FILE) if n not in data["files"]]
        for name in stale:
            (dest / name).unlink(missing_ok=True)
    except OSError as exc:
        raise BackupError(
            f"备份已写入，可以还原；但把新文件移到原位时出错（{exc}），下次备份会接着完成 "
            "the backup is complete and restorable, but moving its new files into place "
            "failed: the next backup finishes it"
        ) from exc
    return report


def _stage(
    settings: Settings,
    dest: Path,
    stage: Path,
    previous: dict[str, Any],
    config_file: Path | None,
) -> tuple[dict[str, Any], BackupReport]:
    """Write everything this run backs up below ``stage``; returns backup.json's content."""
    now = datetime.now(settings.tz).isoformat(timespec="seconds")

    # the database
    if settings.is_sqlite:
        source = _sqlite_path(settings)
        if not source.is_file():
            raise BackupError(f"no database at {source}: nothing to back up")
        dump = stage / SQLITE_DUMP
        _sqlite_copy(source, dump)  # a consistent copy while the server writes
        kind = "sqlite"
    else:
        dump = stage / PG_DUMP
        env, name = _pg_env(settings)
        _run(
            [_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
             f"--file={dump}", name],
            env, "pg_dump",
        )  # fmt: skip
        kind = "postgresql"
    dump.chmod(0o600)
    with dump.open("rb+") as fh:
        os.fsync(fh.fileno())

    # keys and settings
    files: dict[str, str] = {}
    extras: list[tuple[str, Path | None]] = [
        (SIGNING_KEY, settings.data_dir / SIGNING_KEY),
        (SECRET_KEY, settings.data_dir / SECRET_KEY),
        (SETTINGS_FILE, config_file),
    ]
    for name, extra in extras:
        if extra is not None and extra.is_file():
            files[name] = _copy(extra, stage / name, 0o600)

    # the case materials and the recordings, incrementally
    materials, materials_copied, _ = _copy_changed(
        _material_files(materials_dir(settings)),
        previous.get("materials", {}),
        dest / MATERIALS,
        stage / MATERIALS,
    )
    root = settings.resolved_recordings_dir
    before: dict[str, Any] = previous.get("recordings", {})
    recordings: dict[str, Any] = {}
    copied: list[str] = []
    unchanged = 0
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in folders:
        listing, names, kept = _copy_changed(
            _files(folder),
            before.get(folder.name, {}).get("files", {}),
            dest / RECORDINGS / folder.name,
            stage / RECORDINGS / folder.name,
        )
        copied += [f"{folder.name}/{name}" for name in names]
        unchanged += kept
        sums = listing.get(manifest.SUMS)
        recordings[folder.name] = {
            "sums_sha256": sums["sha256"] if sums else None,
            "files": listing,
        }
    left_out = _left_out(settings, root)

    data = {
        "format": FORMAT,
        "created_at": now,
        "schema_revision": _schema_revision(settings),
        "database": {"kind": kind, "file": dump.name, "sha256": manifest.sha256_file(dump)},
        "files": files,
        "materials": materials,
        "materials_copied": materials_copied,
        "recordings_dir": str(root),
        "recordings": recordings,
        "copied": copied,
        "unchanged": unchanged,
        "not_backed_up": left_out,
    }
    report = BackupReport(
        dest,
        dump.name,
        len(recordings),
        copied,
        unchanged,
        materials=len(materials),
        materials_copied=materials_copied,
        not_backed_up=left_out,
    )
    return data, report


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
    materials: int = 0  # restored whole
    material_problems: dict[str, str] = field(default_factory=dict)  # file → why
    not_backed_up: list[dict[str, str]] = field(default_factory=list)  # as the backup said

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.recordings) and not self.material_problems


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


def _sqlite_files(settings: Settings) -> list[Path]:
    """The SQLite database's file and its write-ahead log, wherever database_url puts them."""
    target = _sqlite_path(settings)
    return [target.with_name(target.name + suffix) for suffix in ("", "-wal", "-shm")]


def _check_empty(settings: Settings) -> None:
    root = settings.resolved_recordings_dir
    found = _stored_files(settings.data_dir, skip=root) + _stored_files(root)
    if settings.is_sqlite:
        found += [p for p in _sqlite_files(settings) if p.exists() and p not in found]
    if found:
        raise BackupError(
            f"数据目录、录像目录或数据库文件不为空，未还原：the data dir {settings.data_dir}, "
            f"the recordings dir {root} or the database is not empty ({len(found)} files, "
            f"e.g. {found[0]}): restore into empty ones, or give --force to overwrite what is "
            "there"
        )
    if not settings.is_sqlite and _pg_has_tables(settings):
        raise BackupError(
            f"the database {make_url(settings.resolved_database_url).database} already has "
            "tables: restore into an empty database, or give --force to replace them"
        )


def _check(path: Path, name: str, expected: str | None) -> Path:
    if expected is None:
        raise BackupError(f"backup damaged: {name} is not listed in {MANIFEST}")
    if not path.is_file():
        raise BackupError(f"backup damaged: {name} is missing")
    if manifest.sha256_file(path) != expected:
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
    names.extend(data.get("materials", {}))
    for visit_id, entry in data.get("recordings", {}).items():
        if unsafe(visit_id) or "/" in visit_id:  # a recording is one folder
            names.append("/" + visit_id)
        names.extend(entry.get("files", {}))
    if "run" in data and _run_id(data) is None:
        names.append(f"/{STAGING}{data['run']}")
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


def _restore_sqlite(settings: Settings, dump: Path) -> None:
    """Copy ``dump`` to a temporary name beside the database and rename it into place only
    when it is whole: a failed copy leaves the database that was there."""
    target = _sqlite_path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + RESTORING)
    temporary.unlink(missing_ok=True)
    try:
        _sqlite_copy(dump, temporary)
        temporary.chmod(0o600)
        with temporary.open("rb+") as fh:
            os.fsync(fh.fileno())
        for old in _sqlite_files(settings)[1:]:  # the old database's log is not the new one's
            old.unlink(missing_ok=True)
        temporary.replace(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def restore(settings: Settings, src: Path, force: bool = False) -> RestoreReport:
    """Restore the backup ``src`` into the configured data dir, recordings dir and database,
    then verify every recording and material."""
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
    run = _run_id(data)
    # everything but the recordings and materials is checked before anything is written
    dump = _check(_stored(src, run, database["file"]), database["file"], database["sha256"])
    keys = {
        name: _check(_stored(src, run, name), name, digest)
        for name, digest in data["files"].items()
    }

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        _restore_sqlite(settings, dump)
    else:
        env, name = _pg_env(settings)
        clean = ["--clean", "--if-exists"] if force else []
        # one transaction: a restore that fails part-way leaves the database as it was
        _run(
            [_pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
             "--single-transaction", *clean, f"--dbname={name}", str(dump)],
            env, "pg_restore",
        )  # fmt: skip
    for name in (SIGNING_KEY, SECRET_KEY):
        if name in keys:
            _copy(keys[name], settings.data_dir / name, 0o600)

    material_problems: dict[str, str] = {}
    for name, info in sorted(data.get("materials", {}).items()):
        stored = _stored(src, run, f"{MATERIALS}/{name}")
        if not stored.is_file():
            material_problems[name] = "文件缺失 (missing from the backup)"
        elif _copy(stored, materials_dir(settings) / name) != info["sha256"]:
            material_problems[name] = "内容已被改动 (does not match backup.json)"

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
            stored = _stored(src, run, f"{RECORDINGS}/{visit_id}/{name}")
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
    materials = data.get("materials", {})
    return RestoreReport(
        database=database["file"],
        schema_revision=data.get("schema_revision"),
        recordings=checks,
        settings_file=keys.get(SETTINGS_FILE),
        materials=len(materials) - len(material_problems),
        material_problems=material_problems,
        not_backed_up=list(data.get("not_backed_up", [])),
    )
