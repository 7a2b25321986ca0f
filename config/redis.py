"""Redis client factory: ``None`` in embedded mode; the deadlines of every connection."""

from __future__ import annotations

import socket
from typing import Any

from redis.asyncio import Redis

from config.settings import Settings

# How long connecting to Redis, and then each reply, may take. Without it a Redis host that
# drops packets (unreachable, not refusing) holds every login, join, lease renewal and
# socket.io emit until TCP gives up, minutes later; with it they fail after this.
TIMEOUT_SECONDS = 5.0
# A connection that waits for the next message with no deadline by design (socket.io's
# pub/sub listener: a quiet minute is normal) learns of a peer gone silent from TCP
# keepalive instead: probed after 5 s idle, every 2 s, given up after 3 unanswered.
KEEPALIVE = {socket.TCP_KEEPIDLE: 5, socket.TCP_KEEPINTVL: 2, socket.TCP_KEEPCNT: 3}


def client_options() -> dict[str, Any]:
    """``Redis.from_url`` options of a client that sends commands and waits for replies."""
    return {"socket_connect_timeout": TIMEOUT_SECONDS, "socket_timeout": TIMEOUT_SECONDS}


def listener_options(url: str) -> dict[str, Any]:
    """``Redis.from_url`` options of a pub/sub listener on ``url``: a deadline to connect,
    none for reads (redis-py's ``listen()`` applies ``socket_timeout`` to the wait for the
    next message, so a quiet channel would end it), TCP keepalive for a dead peer (a Unix
    socket has no keepalive, and no peer that can vanish silently)."""
    options: dict[str, Any] = {"socket_connect_timeout": TIMEOUT_SECONDS, "socket_timeout": None}
    if not url.startswith("unix://"):
        options |= {"socket_keepalive": True, "socket_keepalive_options": KEEPALIVE}
    return options


def create_redis(settings: Settings) -> Redis | None:
    """A Redis client when ``redis_url`` is set, otherwise ``None`` (embedded mode)."""
    if settings.redis_url is None:
        return None
    client: Redis = Redis.from_url(settings.redis_url, decode_responses=False, **client_options())
    return client
