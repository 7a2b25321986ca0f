"""The socket.io server: in-memory manager, or python-socketio's Redis manager with REDIS_URL.

Hardened against hostile clients: client events named like socket.io's own (``connect``,
``disconnect``…) or not named by a string never reach a handler as such; broken frames end
their connection with one warning; staff sockets can be disconnected by user or session on
any node; oversized long-polling bodies are refused before they are read.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import engineio
import socketio
from aiohttp import web
from aiohttp.typedefs import Middleware
from engineio.async_drivers import aiohttp as engineio_aiohttp
from redis.asyncio import Redis

from config.redis import client_options, listener_options
from config.settings import Settings

log = logging.getLogger("vreception.signaling")

SOCKETIO_PATH = "/socket.io/"
MAX_FRAME_BYTES = 256 * 1024  # one socket.io message (an SDP is at most 64 KiB)
# socket.io's own event names (server and client side): a client may not emit them
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
# What a namespace receives instead of a reserved or non-string event name (never valid).
REFUSED_EVENT = "\x00refused"
# Emitted to a room, this disconnects the room's sockets on every node; never sent.
DISCONNECT_ROOM = "\x00disconnect-room"
NAMESPACES = ("/visit", "/notify")

Authenticate = Callable[[dict[str, Any]], Awaitable[Any]]

# Seconds (engine.io advertises the interval truncated to whole seconds: keep it whole).
# Pages watch the pings themselves and say within 2 s that they stopped; the connection is
# given up only after PING_INTERVAL + PING_TIMEOUT, so a busy moment does not cut it.
PING_INTERVAL = 1
PING_TIMEOUT = 5


def user_room(user_id: int) -> str:
    """Every staff socket of a user (both namespaces)."""
    return f"user:{user_id}"


def same_origin(origin: str, environ: dict[str, Any]) -> bool:
    """A browser may connect from the server's own pages only. engine.io's own check takes
    the scheme from X-Forwarded-Proto alone (http without it), which refuses every page the
    server serves over HTTPS itself; here the connection's own scheme counts too."""
    request = environ["aiohttp.request"]
    schemes = {request.scheme, environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip()}
    hosts = {request.host, environ.get("HTTP_X_FORWARDED_HOST", "").split(",")[0].strip()}
    return origin in {f"{scheme}://{host}" for scheme in schemes - {""} for host in hosts - {""}}


def session_room(session_id: str) -> str:
    """Every staff socket opened with one login session."""
    return f"session:{session_id}"


class _RoomDisconnects(socketio.AsyncManager):  # type: ignore[misc]
    """An emit of DISCONNECT_ROOM to a room disconnects the room's sockets on this node
    instead of sending anything (a namespace with an ``identity_revoked(sid)`` coroutine is
    told first). With Redis the emit reaches every node (the pub/sub
    manager hands what it receives to this class), so a user's sockets are closed wherever
    they are connected."""

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> Any:
        if event != DISCONNECT_ROOM:
            return await super().emit(
                event,
                data,
                namespace,
                room=room,
                skip_sid=skip_sid,
                callback=callback,
                to=to,
                **kwargs,
            )
        room = to or room
        if room is None:  # never everybody
            return None
        handler = self.server.namespace_handlers.get(namespace)
        for sid, _ in list(self.get_participants(namespace, room)):
            revoked = getattr(handler, "identity_revoked", None)
            if revoked is not None:  # the namespace says why, before the socket closes
                await revoked(sid)
            await self.server.disconnect(sid, namespace=namespace, ignore_queue=True)
        return None


class LocalManager(_RoomDisconnects):
    """One process (embedded mode)."""


class RedisManager(socketio.AsyncRedisManager, _RoomDisconnects):  # type: ignore[misc]
    """Several nodes sharing rooms through Redis.

    Publishing (every emit) keeps config/redis.py's deadlines, so an unreachable Redis fails
    an emit instead of holding it. The pub/sub listener gets a client of its own without a
    read deadline: redis-py's ``listen()`` would apply one to the wait for the next
    message, and python-socketio would then drop the subscription at every quiet moment,
    pause and subscribe again, losing what other nodes published meanwhile."""

    def __init__(self, url: str, channel: str) -> None:
        super().__init__(url, channel=channel, redis_options=client_options())

    def _redis_connect(self) -> None:
        super()._redis_connect()  # self.redis (publishing) with the deadlines
        listener = Redis.from_url(self.redis_url, **listener_options(self.redis_url))
        self.pubsub = listener.pubsub(ignore_subscribe_messages=True)


_DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError)


def _frame_problem(data: str) -> str | None:
    """What is wrong with a text frame of engine.io (carrying socket.io), or None."""
    try:
        if not data:
            raise ValueError("empty frame")
        if data[0] == "b":  # base64 binary
            return None
        if int(data[0]) not in range(len(engineio.packet.packet_names)):
            raise ValueError(f"unknown engine.io packet type {data[0]!r}")
    except ValueError as exc:
        return f"engine.io: {exc}"
    if data[0] == "4":  # an engine.io message carries one socket.io packet
        try:
            socketio.packet.Packet(encoded_packet=data[1:])
        except _DECODE_ERRORS as exc:
            return f"socket.io: {exc!r}"
    return None


def _log_broken(peer: str | None, problem: str) -> None:
    log.warning(
        "closing a socket.io connection from %s: broken frame (%s)", peer or "?", problem[:120]
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BODY = web.RequestKey("vreception_polling_body", bytes)


def _payload_problem(body: bytes) -> str | None:
    """What is wrong with a long-polling body (frames separated by 0x1e), or None."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "engine.io: the body is not UTF-8"
    for frame in text.split("\x1e"):
        problem = _frame_problem(frame)
        if problem is not None:
            return problem
    return None


def _closing(status: int, text: str) -> web.Response:
    response = web.Response(status=status, text=text)
    response.force_close()
    return response


class _Body:
    """The ``wsgi.input`` of a long-polling POST whose body the guard has already read."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def read(self, length: int = -1) -> bytes:
        chunk = self._body if length < 0 else self._body[:length]
        self._body = self._body[len(chunk) :]
        return chunk


def _translate_request(request: web.Request) -> dict[str, Any]:
    """engine.io's aiohttp request translation, reading a checked polling body from memory."""
    environ: dict[str, Any] = engineio_aiohttp.translate_request(request)
    body = request.get(_BODY)
    if body is not None:
        environ["wsgi.input"] = _Body(body)
    return environ


class _CheckedWebSocket(engineio_aiohttp.WebSocket):  # type: ignore[misc]
    """engine.io's aiohttp WebSocket that ends the connection on the first frame that does
    not decode (engine.io would raise out of its loop with a traceback, or log one for every
    frame): one warning line, and the websocket closes."""

    async def wait(self) -> Any:
        data = await super().wait()
        problem = _frame_problem(data) if isinstance(data, str) else None
        if problem is not None:
            request = self.environ.get("aiohttp.request")
            _log_broken(request.remote if request is not None else None, problem)
            await self._sock.close()
            return None  # engine.io's loop ends as if the client had closed
        return data


class SignalingServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server with the hardening described at the top of this module."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # engine.io keeps its driver functions in a module-wide dict: change this server's copy
        self.eio._async = {
            **self.eio._async,
            "websocket": _CheckedWebSocket,
            "translate_request": _translate_request,
        }
        self._broken: set[str] = set()

    def polling_guard(self) -> Middleware:
        """An aiohttp middleware for long-polling POSTs: one larger than a frame (or without
        ``Content-Length``) is answered 413 (411) before its body is read, and its HTTP
        connection closed (engine.io would leave it unanswered and hold the socket); a body
        whose frames do not decode closes the engine.io connection with one warning (engine.io
        would log a traceback for each)."""

        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.method != "POST" or not request.path.startswith(SOCKETIO_PATH):
                return await handler(request)
            length = request.content_length
            if length is None or length > self.eio.max_http_buffer_size:
                log.warning(
                    "refused a socket.io POST from %s: %s",
                    request.remote,
                    "no Content-Length" if length is None else f"{length} bytes",
                )
                too_long = length is not None
                return _closing(413 if too_long else 411, "请求体过大" if too_long else "缺少长度")
            body = await request.read()
            request[_BODY] = body
            problem = _payload_problem(body)
            if problem is None:
                return await handler(request)
            await self._close_broken(request.query.get("sid", ""), request.remote, problem)
            return _closing(400, "数据帧无效")

        return guard

    async def _close_broken(self, eio_sid: str, peer: str | None, problem: str) -> None:
        """One warning per engine.io connection that sent a broken frame, which closes it."""
        if eio_sid in self._broken:
            return
        # remembered while engine.io still holds the connection (it may be closing)
        self._broken = {b for b in self._broken if b in self.eio.sockets}
        self._broken.add(eio_sid)
        _log_broken(peer, problem)
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None:
            await socket.close(wait=False, reason=self.reason.TRANSPORT_ERROR)

    async def _handle_event(self, eio_sid: str, namespace: str, id: Any, data: Any) -> Any:
        """Every event a client emits comes here (the real connect and disconnect do not):
        a reserved or non-string name reaches the namespace as REFUSED_EVENT."""
        if not isinstance(data, list) or not data:
            data = [REFUSED_EVENT]
        elif not isinstance(data[0], str) or data[0] in RESERVED_EVENTS:
            data = [REFUSED_EVENT, *data[1:]]
        return await super()._handle_event(eio_sid, namespace, id, data)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> Any:
        """Long polling (websocket frames are checked as they arrive): a socket.io packet
        that does not decode closes the connection, with one warning."""
        if eio_sid in self._broken:
            return None
        if eio_sid not in self._binary_packet:  # not an attachment: a socket.io packet
            try:
                self.packet_class(encoded_packet=data)
            except _DECODE_ERRORS as exc:
                request = self.environ.get(eio_sid, {}).get("aiohttp.request")
                peer = request.remote if request is not None else None
                await self._close_broken(eio_sid, peer, f"socket.io: {exc!r}")
                return None
        return await super()._handle_eio_message(eio_sid, data)

    async def disconnect_room(self, room: str) -> None:
        """Disconnect the sockets of ``room`` in every namespace, on every node."""
        for namespace in NAMESPACES:
            await self.emit(DISCONNECT_ROOM, None, room=room, namespace=namespace)


def create_sio(settings: Settings) -> SignalingServer:
    """One socket.io server per web node; nodes share rooms through Redis when configured."""
    manager: _RoomDisconnects
    if settings.redis_url is not None:
        manager = RedisManager(settings.redis_url, channel="vreception-socketio")
    else:
        manager = LocalManager()
    return SignalingServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=same_origin,
        max_http_buffer_size=MAX_FRAME_BYTES,
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
        staff = await self._authenticate(environ)
        if staff is None:
            raise socketio.exceptions.ConnectionRefusedError("unauthenticated")
        await self.enter_room(sid, user_room(staff.user_id))
        await self.enter_room(sid, session_room(staff.session_id))

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        return None


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


class StaffSockets:
    """Closes a staff member's live sockets on every node when their identity changes."""

    def __init__(self, sio: SignalingServer) -> None:
        self._sio = sio

    async def user_changed(self, user_id: int) -> None:
        """The account was disabled, or its role or court changed: all its sockets close."""
        await self._sio.disconnect_room(user_room(user_id))

    async def logged_out(self, session_id: str) -> None:
        """One login session ended: the sockets opened with it close."""
        await self._sio.disconnect_room(session_room(session_id))
