"""The socket.io server: in-memory manager, or python-socketio's Redis manager with REDIS_URL."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from config.settings import Settings

log = logging.getLogger("vreception.signaling")

# Seconds (engine.io advertises the interval truncated to whole seconds: keep it whole).
# Pages watch the pings themselves and say within 2 s that they stopped; the connection is
# given up only after PING_INTERVAL + PING_TIMEOUT, so a busy moment does not cut it.
PING_INTERVAL = 1
PING_TIMEOUT = 5

Authenticate = Callable[[dict[str, Any]], Awaitable[int | None]]


def same_origin(origin: str, environ: dict[str, Any]) -> bool:
    """A browser may connect from the server's own pages only. engine.io's own check takes
    the scheme from X-Forwarded-Proto alone (http without it), which refuses every page the
    server serves over HTTPS itself; here the connection's own scheme counts too."""
    request = environ["aiohttp.request"]
    schemes = {request.scheme, environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip()}
    hosts = {request.host, environ.get("HTTP_X_FORWARDED_HOST", "").split(",")[0].strip()}
    return origin in {f"{scheme}://{host}" for scheme in schemes - {""} for host in hosts - {""}}


def create_sio(settings: Settings) -> socketio.AsyncServer:
    """One socket.io server per web node; nodes share rooms through Redis when configured."""
    manager = None
    if settings.redis_url is not None:
        manager = socketio.AsyncRedisManager(settings.redis_url, channel="vreception-socketio")
    return socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=same_origin,
        max_http_buffer_size=256 * 1024,
        # a ping a second: a page whose pings stop shows it within 2 s (web/static/call.js)
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        logger=False,
        engineio_logger=False,
    )


class NotificationNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """``/notify``: a logged-in staff page receives its user's notifications live."""

    def __init__(self, authenticate: Authenticate) -> None:
        super().__init__("/notify")
        self._authenticate = authenticate

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        user_id = await self._authenticate(environ)
        if user_id is None:
            raise socketio.exceptions.ConnectionRefusedError("unauthenticated")
        await self.enter_room(sid, user_room(user_id))

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        return None


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


class SocketNotifier:
    """Pushes notifications to every open page of a user, on any node."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio

    async def push(self, user_id: int, payload: dict[str, Any]) -> None:
        try:
            await self._sio.emit(
                "notification", payload, room=user_room(user_id), namespace="/notify"
            )
        except Exception:  # a push is best effort; the list keeps the notification
            log.exception("could not push notification %s", payload.get("id"))
