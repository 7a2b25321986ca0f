"""Typed keys of the objects the aiohttp application holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from config.db import Database
from config.settings import Settings
from recorder.jobs import Pipeline
from scheduler.notify import Notifier
from signaling.namespace import VisitNamespace
from signaling.server import StaffSockets
from web.auth import LoginThrottle

if TYPE_CHECKING:
    from web.visit_gateway import DatabaseVisitGateway

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("database", Database)
REDIS: web.AppKey[Redis | None] = web.AppKey("redis")
THROTTLE = web.AppKey("login_throttle", LoginThrottle)
SECRET = web.AppKey("secret", bytes)
METRICS = web.AppKey("metrics_registry", CollectorRegistry)
NOTIFIER: web.AppKey[Notifier | None] = web.AppKey("notifier")
PIPELINE = web.AppKey("pipeline", Pipeline)
VISITS = web.AppKey("visit_namespace", VisitNamespace)
GATEWAY: web.AppKey[DatabaseVisitGateway] = web.AppKey("visit_gateway")
STAFF_SOCKETS = web.AppKey("staff_sockets", StaffSockets)
