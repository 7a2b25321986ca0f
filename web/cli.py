"""The ``vreception`` command: serve, migrate, create-user, set-password."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from alembic import command
from alembic.config import Config as AlembicConfig
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import or_, select

from config.db import create_engine, create_sessionmaker
from config.errors import AppError
from config.privacy import MaskingFilter
from config.redis import create_redis
from config.settings import ConfigError, Settings, load_settings
from recorder import manifest
from scheduler import service
from scheduler.models import Court, Role, User
from scheduler.scope import SYSTEM_ACTOR
from web.app import create_app
from web.auth import close_user_sessions, create_login_throttle, unlock_account
from web.demo import create_demo_data, database_is_empty, demo_password

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("vreception")


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


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
            accounts = await create_demo_data(db, settings.password_min_length)
        print("\n演示账户（密码只显示这一次） / demo accounts (passwords shown once):")
        for account in accounts:
            print(f"  {account.role.value:<10} {account.username:<10} {account.password}")
        print()
    finally:
        await engine.dispose()


def _serve(settings: Settings, demo: bool) -> int:
    migrate(settings)
    if demo:
        asyncio.run(_seed_demo(settings))
    mode = "embedded" if settings.embedded else "redis"
    print(f"vreception listening on http://{settings.host}:{settings.port}/ ({mode} mode)")
    sys.stdout.flush()
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None)
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
    cu = sub.add_parser("create-user", help="create a staff account")
    cu.add_argument("--username", required=True)
    cu.add_argument("--role", required=True, choices=[r.value for r in Role])
    cu.add_argument("--court", help="court id, code or name (not needed for admin)")
    cu.add_argument("--display-name")
    cu.add_argument("--password", help="default: prompt, or generate when not a terminal")
    sp = sub.add_parser("set-password", help="reset a staff account's password")
    sp.add_argument("--username", required=True)
    sp.add_argument("--password", help="default: prompt twice (at a terminal)")
    ver = sub.add_parser(
        "verify", help="check a recording folder or export ZIP (hashes, signature)"
    )
    ver.add_argument("target", help="a recording folder or an export .zip")
    ver.add_argument("--key", help="a trusted public key (PEM); default: the one enclosed")
    sub.add_parser("public-key", help="print this server's signing public key (PEM)")
    sub.add_parser("worker", help="process recordings from the Redis queue (needs REDIS_URL)")
    return parser


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
    for name, why in result.failed.items():
        print(f"  FAILED  {name}: {why}")
    print("核验通过 verified" if result.ok else "核验失败 VERIFICATION FAILED")
    return 0 if result.ok else 1


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
    setup_logging(settings.log_level)
    if args.command == "serve":
        return _serve(settings, args.demo)
    if args.command == "migrate":
        migrate(settings, args.revision)
        print("database is up to date")
        return 0
    if args.command == "verify":
        return _verify(args.target, args.key)
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
