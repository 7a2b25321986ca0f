"""Typed keys of the objects the aiohttp application holds."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config.settings import Settings
from scheduler.notify import Notifier
from web.auth import LoginThrottle

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONMAKER = web.AppKey("sessionmaker", async_sessionmaker[AsyncSession])
REDIS: web.AppKey[Redis | None] = web.AppKey("redis")
THROTTLE = web.AppKey("login_throttle", LoginThrottle)
SECRET = web.AppKey("secret", bytes)
METRICS = web.AppKey("metrics_registry", CollectorRegistry)
NOTIFIER: web.AppKey[Notifier | None] = web.AppKey("notifier")
WRITE_SESSIONMAKER = web.AppKey("write_sessionmaker", async_sessionmaker[AsyncSession])
