"""``vreception backup`` / ``restore`` / ``migrate --backup`` as an IT person runs them:
real signed recordings (the real pipeline), a real SQLite or PostgreSQL database, the
command line in its own process. A restore into empty directories gives the same rows,
the same files byte for byte and valid signatures; a tampered backup is caught."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from config.db import create_engine
from config.keys import load_secret_key
from config.settings import Settings
from recorder.manifest import SUMS, verify
from recorder.state import VisitRecording, save_state
from tests.archive_fixtures import add_visit, record_visit, signed_recording
from tests.conftest import ROOT, PostgresServer
from tests.helpers import World
from web import backup as backup_module
from web.backup import BackupError, backup, restore
from web.cli import MIGRATIONS, migrate

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()  # the schema after migrating


def cli(config: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VRECEPTION_")}
    return subprocess.run(
        [sys.executable, "-m", "web.cli", "--config", str(config), *args],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_config(path: Path, **values: str) -> Path:
    path.write_text("".join(f'{key} = "{value}"\n' for key, value in values.items()))
    return path


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def sqlite_rows(path: Path) -> dict[str, list[str]]:
    con = sqlite3.connect(path)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {}
        for table in tables:
            query = f'SELECT * FROM "{table}"'  # noqa: S608 (names from sqlite_master)
            rows[table] = sorted(repr(r) for r in con.execute(query))
        return rows
    finally:
        con.close()


async def pg_rows(settings: Settings) -> dict[str, list[str]]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            tables = (
                await conn.execute(
                    text(
                        "SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                    )
                )
            ).scalars()
            rows = {}
            for table in sorted(tables):
                result = await conn.execute(text(f'SELECT * FROM "{table}"'))  # noqa: S608
                rows[table] = sorted(repr(tuple(r)) for r in result)
            return rows
    finally:
        await engine.dispose()


async def three_recordings(settings: Settings, world: World) -> dict[str, str]:
    """A real recording made by the pipeline, a quick signed one and one still being
    recorded (no signature yet); and the secret key a running server makes."""
    load_secret_key(settings)
    ids = {}
    for key, number in (("real", "101"), ("quick", "102"), ("open", "103")):
        ids[key] = await add_visit(
            settings,
            court_id=world.courts["basic_a"],
            receiving_court_id=world.courts["mid_a"],
            judge_id=world.users["judge_a"],
            number=f"（2026）甲信{number}号",
            petitioner="赵六",
            id_number=f"110101199001011{number}",
        )
    await record_visit(settings, ids["real"], {"court_name": "甲市某区人民法院"}, seconds=4)
    await signed_recording(settings, ids["quick"])
    (settings.resolved_recordings_dir / ids["open"]).mkdir()
    save_state(
        settings.resolved_recordings_dir / ids["open"],
        VisitRecording(visit_id=ids["open"], started_at=1.0e9, tracks=[]),
    )
    return ids


async def test_backup_then_restore_into_empty_dirs_gives_the_same_rows_files_and_signatures(
    migrated: Settings, world: World, tmp_path: Path
) -> None:
    settings = migrated
    ids = await three_recordings(settings, world)
    config = write_config(tmp_path / "vreception.toml", data_dir=str(settings.data_dir))
    dest = tmp_path / "backup"

    out = cli(config, "backup", str(dest))
    assert out.returncode == 0, out.stderr
    first = json.loads((dest / "backup.json").read_text())
    originals = files_of(settings.resolved_recordings_dir)
    assert sorted(first["copied"]) == sorted(originals)  # everything, the first time
    assert first["database"]["kind"] == "sqlite" and (dest / "database.sqlite3").is_file()
    assert first["schema_revision"] == HEAD
    for visit_id in (ids["real"], ids["quick"]):
        sums = settings.resolved_recordings_dir / visit_id / SUMS
        recording = first["recordings"][visit_id]
        assert recording["sums_sha256"] == first["recordings"][visit_id]["files"][SUMS]["sha256"]
        assert recording["sums_sha256"] == hashlib.sha256(sums.read_bytes()).hexdigest()
    assert first["recordings"][ids["open"]]["sums_sha256"] is None
    assert set(first["files"]) == {"signing-key.pem", "secret.key", "vreception.toml"}
    assert (dest / "vreception.toml").read_bytes() == config.read_bytes()
    assert oct((dest / "signing-key.pem").stat().st_mode & 0o777) == "0o600"

    # a second backup into the same folder copies only what is new
    out = cli(config, "backup", str(dest))
    assert out.returncode == 0, out.stderr
    second = json.loads((dest / "backup.json").read_text())
    assert second["copied"] == [] and second["unchanged"] == len(originals)
    assert "files copied: 0" in out.stdout
    late = await add_visit(
        settings,
        court_id=world.courts["basic_a"],
        receiving_court_id=world.courts["mid_a"],
        judge_id=world.users["judge_a"],
        number="（2026）甲信104号",
        petitioner="钱七",
        id_number="110101199001011104",
    )
    await signed_recording(settings, late)
    out = cli(config, "backup", str(dest))
    assert out.returncode == 0, out.stderr
    third = json.loads((dest / "backup.json").read_text())
    assert third["copied"] and all(name.startswith(late + "/") for name in third["copied"])
    assert third["unchanged"] == len(originals)

    # restore into empty directories elsewhere
    target = tmp_path / "restored"
    config2 = write_config(
        tmp_path / "restored.toml",
        data_dir=str(target / "data"),
        recordings_dir=str(target / "recordings"),
    )
    out = cli(config2, "restore", str(dest))
    assert out.returncode == 0, out.stdout + out.stderr
    for visit_id in (ids["real"], ids["quick"], late):
        assert f"OK        {visit_id}: 签名有效 signature valid" in out.stdout
    assert f"UNSIGNED  {ids['open']}" in out.stdout
    assert files_of(target / "recordings") == files_of(settings.resolved_recordings_dir)
    for name in ("signing-key.pem", "secret.key"):
        assert (target / "data" / name).read_bytes() == (settings.data_dir / name).read_bytes()
    for visit_id in (ids["real"], ids["quick"], late):
        assert verify(target / "recordings" / visit_id).ok
    before = sqlite_rows(settings.data_dir / "vreception.db")
    after = sqlite_rows(target / "data" / "vreception.db")
    old_root, new_root = str(settings.resolved_recordings_dir), str(target / "recordings")
    assert any(old_root in row for row in before["recordings"])
    before["recordings"] = sorted(r.replace(old_root, new_root) for r in before["recordings"])
    assert after == before  # every table, every row; recordings point at their new place

    # the restored install runs: the server reads the restored database and keys
    out = cli(config2, "migrate")
    assert out.returncode == 0 and "up to date" in out.stdout, out.stderr

    # a non-empty install is not overwritten without --force
    out = cli(config2, "restore", str(dest))
    assert out.returncode == 1
    assert "is not empty" in out.stderr and "--force" in out.stderr
    out = cli(config2, "restore", str(dest), "--force")
    assert out.returncode == 0, out.stdout + out.stderr
    assert files_of(target / "recordings") == files_of(settings.resolved_recordings_dir)


async def test_restore_names_a_tampered_recording_and_refuses_a_damaged_database(
    migrated: Settings, world: World, tmp_path: Path
) -> None:
    settings = migrated
    ids = await three_recordings(settings, world)
    config = write_config(tmp_path / "vreception.toml", data_dir=str(settings.data_dir))
    dest = tmp_path / "backup"
    assert cli(config, "backup", str(dest)).returncode == 0

    composite = dest / "recordings" / ids["real"] / "composite.mp4"
    data = bytearray(composite.read_bytes())
    data[len(data) // 2] ^= 0xFF
    composite.write_bytes(bytes(data))
    target = tmp_path / "restored"
    config2 = write_config(tmp_path / "restored.toml", data_dir=str(target))
    out = cli(config2, "restore", str(dest))
    assert out.returncode == 1
    assert f"FAILED    {ids['real']}" in out.stdout
    assert "composite.mp4: 内容已被改动" in out.stdout
    assert f"OK        {ids['quick']}" in out.stdout
    assert "1 recordings FAILED verification" in out.stdout

    damaged = tmp_path / "damaged"
    shutil.copytree(dest, damaged)
    with (damaged / "database.sqlite3").open("ab") as fh:
        fh.write(b"\0")
    empty = tmp_path / "empty"
    config3 = write_config(tmp_path / "empty.toml", data_dir=str(empty))
    out = cli(config3, "restore", str(damaged))
    assert out.returncode == 1
    assert "backup damaged: database.sqlite3 does not match its SHA-256" in out.stderr
    assert not empty.exists() or not any(empty.rglob("*"))  # nothing was written

    out = cli(config3, "restore", str(tmp_path / "nowhere"))
    assert out.returncode == 1 and "is not a vreception backup" in out.stderr


@pytest.mark.postgres
async def test_postgres_backup_with_pg_dump_restores_into_an_empty_database(
    postgres_server: PostgresServer, world_pg: tuple[Settings, World], tmp_path: Path
) -> None:
    settings, world = world_pg
    visit_id = await add_visit(
        settings,
        court_id=world.courts["basic_a"],
        receiving_court_id=world.courts["mid_a"],
        judge_id=world.users["judge_a"],
        number="（2026）甲信201号",
        petitioner="孙八",
        id_number="110101199001011201",
    )
    await signed_recording(settings, visit_id)
    config = write_config(
        tmp_path / "vreception.toml",
        data_dir=str(settings.data_dir),
        database_url=str(settings.database_url),
    )
    dest = tmp_path / "backup"
    out = cli(config, "backup", str(dest))
    assert out.returncode == 0, out.stderr
    manifest = json.loads((dest / "backup.json").read_text())
    assert manifest["database"]["kind"] == "postgresql"
    assert (dest / "database.pgdump").read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format

    url = await asyncio.to_thread(postgres_server.create_database, "vr_restored")
    target = tmp_path / "restored"
    restored = Settings(data_dir=target, database_url=url)
    config2 = write_config(tmp_path / "restored.toml", data_dir=str(target), database_url=url)
    out = cli(config2, "restore", str(dest))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"OK        {visit_id}" in out.stdout
    assert verify(target / "recordings" / visit_id).ok
    before, after = await pg_rows(settings), await pg_rows(restored)
    old_root, new_root = str(settings.resolved_recordings_dir), str(target / "recordings")
    before["recordings"] = sorted(r.replace(old_root, new_root) for r in before["recordings"])
    assert before["courts"] and after == before

    shutil.rmtree(target)
    out = cli(config2, "restore", str(dest))  # the files are gone, the tables are not
    assert out.returncode == 1 and "already has tables" in out.stderr
    out = cli(config2, "restore", str(dest), "--force")  # --clean in one transaction
    assert out.returncode == 0, out.stdout + out.stderr
    assert await pg_rows(restored) == after


@pytest.fixture
async def world_pg(postgres_server: PostgresServer, tmp_path: Path) -> tuple[Settings, World]:
    from config.db import create_sessionmaker
    from tests.helpers import seed_world

    url = await asyncio.to_thread(postgres_server.create_database, "vr_backup")
    settings = Settings(data_dir=tmp_path / "var", database_url=url)
    await asyncio.to_thread(migrate, settings)
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            world = await seed_world(db)
    finally:
        await engine.dispose()
    return settings, world


def test_migrate_with_backup_backs_up_first_then_upgrades_and_not_when_it_fails(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    migrate(settings, "0003")
    config = write_config(tmp_path / "vreception.toml", data_dir=str(settings.data_dir))

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    out = cli(config, "migrate", "--backup", str(blocked))
    assert out.returncode == 1 and "not migrated" in out.stderr
    assert "is not a folder" in out.stderr
    db = settings.data_dir / "vreception.db"
    assert sqlite_rows(db)["alembic_version"] == ["('0003',)"]
    photos = tmp_path / "photos"  # a folder of something else is not written into
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"jpeg")
    out = cli(config, "backup", str(photos))
    assert out.returncode == 1 and "holds no backup.json" in out.stderr
    assert [p.name for p in photos.iterdir()] == ["a.jpg"]

    out = cli(config, "migrate", "--backup", str(tmp_path / "before-upgrade"))
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout
    taken = json.loads((tmp_path / "before-upgrade" / "backup.json").read_text())
    assert taken["schema_revision"] == "0003"  # the backup holds the database as it was
    dump = tmp_path / "before-upgrade" / "database.sqlite3"
    assert sqlite_rows(dump)["alembic_version"] == ["('0003',)"]
    assert sqlite_rows(db)["alembic_version"] == [f"('{HEAD}',)"]


@pytest.mark.parametrize(
    "recordings",
    [
        {"../escape": {"sums_sha256": None, "files": {}}},
        {"v1": {"sums_sha256": None, "files": {"../../etc/cron.d/x": {"sha256": "0"}}}},
        {"v1": {"sums_sha256": None, "files": {"/etc/passwd": {"sha256": "0"}}}},
    ],
)
def test_restore_refuses_a_backup_naming_paths_outside_its_folders(
    tmp_path: Path, recordings: dict[str, Any]
) -> None:
    src = tmp_path / "backup"
    src.mkdir()
    (src / "backup.json").write_text(
        json.dumps(
            {
                "format": 1,
                "database": {"kind": "sqlite", "file": "database.sqlite3", "sha256": "0"},
                "files": {},
                "recordings": recordings,
            }
        )
    )
    settings = Settings(data_dir=tmp_path / "var")
    with pytest.raises(BackupError, match="unsafe path"):
        restore(settings, src)
    assert not settings.data_dir.exists()


# ------------------------------------------------------------- interrupted runs, materials


async def new_visit(settings: Settings, world: World, number: str) -> str:
    return await add_visit(
        settings,
        court_id=world.courts["basic_a"],
        receiving_court_id=world.courts["mid_a"],
        judge_id=world.users["judge_a"],
        number=f"（2026）甲信{number}号",
        petitioner="周九",
        id_number=f"110101199001011{number}",
    )


def fail_copies(monkeypatch: pytest.MonkeyPatch, dest: Path, after: int) -> None:
    """Copying into the backup's recordings fails as on a full disk after ``after`` copies."""
    real = backup_module._copy
    done: list[Path] = []

    def copy(source: Path, target: Path, mode: int | None = None) -> str:
        if target.is_relative_to(dest) and "recordings" in target.relative_to(dest).parts:
            if len(done) >= after:
                raise OSError(errno.ENOSPC, "No space left on device")
            done.append(target)
        return real(source, target, mode)

    monkeypatch.setattr(backup_module, "_copy", copy)


def restored_into(tmp_path: Path, name: str, src: Path) -> tuple[Settings, Any]:
    """Restore ``src`` into new empty folders; returns their settings and the report."""
    target = Settings(data_dir=tmp_path / name)
    return target, restore(target, src)


def rows_moved(settings: Settings, rows: dict[str, list[str]], target: Settings) -> Any:
    old, new = str(settings.resolved_recordings_dir), str(target.resolved_recordings_dir)
    return {**rows, "recordings": sorted(r.replace(old, new) for r in rows["recordings"])}


async def test_a_backup_that_dies_part_way_leaves_the_last_good_backup_restorable(
    migrated: Settings, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = migrated
    load_secret_key(settings)
    first = await new_visit(settings, world, "301")
    await signed_recording(settings, first)
    still_open = "0" * 32  # a recording still being made: it sorts first, and grows
    growing = settings.resolved_recordings_dir / still_open / "tracks" / "judge-camera-1.webm"
    growing.parent.mkdir(parents=True)
    growing.write_bytes(b"\x1aE\xdf\xa3" + b"a" * 1000)
    dest = tmp_path / "backup"
    await asyncio.to_thread(backup, settings, dest)
    good = (dest / "backup.json").read_bytes()
    rows_then = sqlite_rows(settings.data_dir / "vreception.db")
    growing_then = growing.read_bytes()

    late = await new_visit(settings, world, "302")
    await signed_recording(settings, late)
    with growing.open("ab") as fh:
        fh.write(b"b" * 1000)
    fail_copies(monkeypatch, dest, after=1)  # the growing file is copied, then the disk fills
    with pytest.raises(OSError, match="No space left"):
        await asyncio.to_thread(backup, settings, dest)
    monkeypatch.undo()
    assert (dest / "backup.json").read_bytes() == good
    assert not list(dest.glob(".staging-*"))  # its copies are gone, the old ones kept
    # a run killed outright leaves its staging folder: restore ignores it
    killed = dest / (".staging-" + "f" * 32)
    (killed / "recordings" / first).mkdir(parents=True)
    (killed / "database.sqlite3").write_bytes(b"half a database")
    (killed / "recordings" / first / "composite.mp4").write_bytes(b"half a file")

    target, report = await asyncio.to_thread(restored_into, tmp_path, "r1", dest)
    assert report.ok, report
    assert sqlite_rows(target.data_dir / "vreception.db") == rows_moved(settings, rows_then, target)
    assert [c.visit_id for c in report.recordings] == [still_open, first]
    restored_track = target.resolved_recordings_dir / still_open / "tracks" / growing.name
    assert restored_track.read_bytes() == growing_then  # as it was, not half the new one
    assert verify(target.resolved_recordings_dir / first).ok

    # the next run deletes what the killed one left and backs up everything
    report2 = await asyncio.to_thread(backup, settings, dest)
    assert not killed.exists()
    assert sorted(report2.copied) == sorted(
        [f"{still_open}/tracks/judge-camera-1.webm"]
        + [f"{late}/{n}" for n in files_of(settings.resolved_recordings_dir / late)]
    )
    target, report = await asyncio.to_thread(restored_into, tmp_path, "r2", dest)
    assert report.ok and len(report.recordings) == 3
    assert files_of(target.resolved_recordings_dir) == files_of(settings.resolved_recordings_dir)


async def test_a_backup_that_dies_after_its_commit_restores_as_the_new_backup(
    migrated: Settings, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = migrated
    load_secret_key(settings)
    first = await new_visit(settings, world, "311")
    await signed_recording(settings, first)
    dest = tmp_path / "backup"
    await asyncio.to_thread(backup, settings, dest)
    late = await new_visit(settings, world, "312")
    await signed_recording(settings, late)
    rows_now = sqlite_rows(settings.data_dir / "vreception.db")

    real = backup_module._move_into_place
    moved: list[Path] = []

    def move(staged: Path, target: Path) -> None:  # killed after the first move
        if moved:
            raise OSError(errno.EIO, "Input/output error")
        moved.append(target)
        real(staged, target)

    monkeypatch.setattr(backup_module, "_move_into_place", move)
    with pytest.raises(BackupError, match="备份已写入"):
        await asyncio.to_thread(backup, settings, dest)
    monkeypatch.undo()
    assert list(dest.glob(".staging-*"))  # half its files are still staged

    target, report = await asyncio.to_thread(restored_into, tmp_path, "r1", dest)
    assert report.ok and [c.visit_id for c in report.recordings] == sorted([first, late])
    assert sqlite_rows(target.data_dir / "vreception.db") == rows_moved(settings, rows_now, target)
    assert files_of(target.resolved_recordings_dir) == files_of(settings.resolved_recordings_dir)

    # the next run finishes the moves first: nothing is copied again
    report2 = await asyncio.to_thread(backup, settings, dest)
    assert report2.copied == [] and not list(dest.glob(".staging-*"))
    data = json.loads((dest / "backup.json").read_text())
    for visit_id, entry in data["recordings"].items():
        for name, info in entry["files"].items():
            path = dest / "recordings" / visit_id / name
            assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"]


async def test_case_materials_are_backed_up_incrementally_and_restored(
    migrated: Settings, tmp_path: Path
) -> None:
    settings = migrated
    folder = settings.data_dir / "materials"
    folder.mkdir()
    scan = b"%PDF-1.4 a scanned petition"
    scan_name = hashlib.sha256(scan).hexdigest() + ".pdf"
    (folder / scan_name).write_bytes(scan)
    (folder / ".upload-0123.part").write_bytes(b"%PDF-1.4 half an upload")
    dest = tmp_path / "backup"

    report = await asyncio.to_thread(backup, settings, dest)
    assert report.materials_copied == [scan_name]
    data = json.loads((dest / "backup.json").read_text())
    assert data["materials"][scan_name]["sha256"] == hashlib.sha256(scan).hexdigest()
    assert list(data["materials"]) == [scan_name]  # not the upload still under way
    assert (dest / "materials" / scan_name).read_bytes() == scan

    photo = b"\x89PNG\r\n\x1a\n a photo of the evidence"
    photo_name = hashlib.sha256(photo).hexdigest() + ".png"
    (folder / photo_name).write_bytes(photo)
    report = await asyncio.to_thread(backup, settings, dest)
    assert report.materials_copied == [photo_name] and report.materials == 2

    target, restored = await asyncio.to_thread(restored_into, tmp_path, "r1", dest)
    assert restored.ok and restored.materials == 2
    assert files_of(target.data_dir / "materials") == {scan_name: scan, photo_name: photo}

    (dest / "materials" / scan_name).write_bytes(b"%PDF-1.4 another petition")
    _, restored = await asyncio.to_thread(restored_into, tmp_path, "r2", dest)
    assert not restored.ok
    assert restored.material_problems == {scan_name: "内容已被改动 (does not match backup.json)"}


async def test_backup_names_recordings_outside_the_recordings_dir_and_exits_3(
    migrated: Settings, world: World, tmp_path: Path
) -> None:
    settings = migrated
    load_secret_key(settings)
    inside = await new_visit(settings, world, "321")
    await signed_recording(settings, inside)
    outside = await new_visit(settings, world, "322")
    elsewhere = tmp_path / "old-disk" / outside
    elsewhere.parent.mkdir()
    shutil.move(await signed_recording(settings, outside), elsewhere)
    con = sqlite3.connect(settings.data_dir / "vreception.db")
    with con:
        con.execute(
            "UPDATE recordings SET folder = ? WHERE visit_id = ?", (str(elsewhere), outside)
        )
    con.close()
    config = write_config(tmp_path / "vreception.toml", data_dir=str(settings.data_dir))
    dest = tmp_path / "backup"

    out = cli(config, "backup", str(dest))
    assert out.returncode == 3, out.stdout + out.stderr
    assert "1 个录像未备份" in out.stderr
    assert f"未备份 NOT BACKED UP  {outside}: {elsewhere}" in out.stderr
    assert "备份完成" not in out.stdout
    data = json.loads((dest / "backup.json").read_text())  # the rest is backed up
    assert list(data["recordings"]) == [inside]
    assert [(i["visit_id"], i["folder"]) for i in data["not_backed_up"]] == [
        (outside, str(elsewhere))
    ]
    out = cli(config, "migrate", "--backup", str(tmp_path / "before-upgrade"))
    assert out.returncode == 3 and "not migrated: the backup is incomplete" in out.stderr


async def test_restore_without_force_leaves_a_live_sqlite_database_outside_the_data_dir(
    migrated: Settings, tmp_path: Path
) -> None:
    dest = tmp_path / "backup"
    await asyncio.to_thread(backup, migrated, dest)
    live = tmp_path / "elsewhere" / "court.db"
    live.parent.mkdir()
    con = sqlite3.connect(live)
    with con:
        con.execute("CREATE TABLE newer (x TEXT)")
        con.execute("INSERT INTO newer VALUES ('written after the backup')")
    con.close()
    target = Settings(data_dir=tmp_path / "empty", database_url=f"sqlite+aiosqlite:///{live}")

    with pytest.raises(BackupError, match="is not empty") as raised:
        await asyncio.to_thread(restore, target, dest)
    assert str(live) in str(raised.value) and "--force" in str(raised.value)
    assert sqlite_rows(live)["newer"] == ["('written after the backup',)"]
    assert not target.data_dir.exists()
    db = tmp_path / "crashed" / "court.db"
    wal = db.with_name("court.db-wal")  # a log not yet written into its database
    wal.parent.mkdir()
    wal.write_bytes(b"frames")
    crashed = Settings(data_dir=tmp_path / "empty", database_url=f"sqlite+aiosqlite:///{db}")
    with pytest.raises(BackupError, match="is not empty"):
        await asyncio.to_thread(restore, crashed, dest)
    assert wal.read_bytes() == b"frames"


async def test_a_forced_restore_that_fails_part_way_keeps_the_sqlite_database(
    migrated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "backup"
    await asyncio.to_thread(backup, migrated, dest)
    live = tmp_path / "elsewhere" / "court.db"
    live.parent.mkdir()
    con = sqlite3.connect(live)
    with con:
        con.execute("CREATE TABLE newer (x TEXT)")
        con.execute("INSERT INTO newer VALUES ('written after the backup')")
    con.close()
    target = Settings(data_dir=tmp_path / "var2", database_url=f"sqlite+aiosqlite:///{live}")

    connect = sqlite3.connect

    class FullDisk:  # the backup's database, whose copy runs out of space half-way
        def __init__(self, con: sqlite3.Connection) -> None:
            self.con = con

        def backup(self, dst: sqlite3.Connection, **_: Any) -> None:
            dst.execute("CREATE TABLE half (x TEXT)")
            dst.commit()
            raise sqlite3.OperationalError("database or disk is full")

        def close(self) -> None:
            self.con.close()

    def failing(database: str, *args: Any, **kwargs: Any) -> Any:
        con = connect(database, *args, **kwargs)
        return FullDisk(con) if "mode=ro" in str(database) else con

    monkeypatch.setattr(
        backup_module, "sqlite3", SimpleNamespace(connect=failing, Error=sqlite3.Error)
    )
    with pytest.raises(BackupError, match="disk is full"):
        await asyncio.to_thread(restore, target, dest, True)
    assert sqlite_rows(live) == {"newer": ["('written after the backup',)"]}
    assert [p.name for p in live.parent.iterdir()] == ["court.db"]


def test_a_forced_postgres_restore_runs_pg_restore_in_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "backup"
    src.mkdir()
    dump = b"PGDMP a dump"
    (src / "database.pgdump").write_bytes(dump)
    database = {
        "kind": "postgresql",
        "file": "database.pgdump",
        "sha256": hashlib.sha256(dump).hexdigest(),
    }
    (src / "backup.json").write_text(
        json.dumps({"format": 1, "database": database, "files": {}, "recordings": {}})
    )
    calls: list[list[str]] = []
    monkeypatch.setattr(backup_module, "_pg_tool", lambda name: name)
    monkeypatch.setattr(backup_module, "_run", lambda args, env, what: calls.append(args))
    settings = Settings(
        data_dir=tmp_path / "var", database_url="postgresql+asyncpg://vr@127.0.0.1:1/vr"
    )
    restore(settings, src, force=True)
    [args] = calls
    assert args[0] == "pg_restore" and "--clean" in args and "--single-transaction" in args
