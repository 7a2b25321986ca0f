"""Which node holds a visit's room. Embedded: this one. With Redis: the first node a
participant of the visit reaches claims the room (``SET NX`` with a lease it keeps renewing
while the room lives); a participant who reaches another node is sent to the owner, so the
relay of one visit is always one process and the room's state needs no sharing. A node that
finds its lease taken by another node (it was cut off for longer than a lease) is told
(``on_lost``): its room of the visit must close, for the room now lives there."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis.asyncio import Redis

log = logging.getLogger("vreception.signaling")


async def _awaited(result: Awaitable[Any] | Any) -> Any:
    """redis-py types some async commands as "awaitable or value"."""
    return await result if inspect.isawaitable(result) else result


LostHandler = Callable[[str], Awaitable[None]]  # visit id: another node holds its room now


class RoomPlacement(Protocol):
    """Where rooms live."""

    node_url: str
    # called when a room held here turns out to be held by another node
    on_lost: LostHandler | None

    async def claim(self, visit_id: str) -> str:
        """The URL of the node holding the visit's room; claims it for this node if free
        (a claim nobody holds lapses after one lease)."""
        ...

    def hold(self, visit_id: str) -> None:
        """The room exists here: keep it pinned until released."""
        ...

    async def release(self, visit_id: str) -> None:
        """This node's room of the visit closed."""
        ...

    async def held(self, visit_id: str) -> bool:
        """Whether any node holds the visit's room now."""
        ...

    async def owner(self, visit_id: str) -> str | None:
        """The URL of the node holding the visit's room now, or None."""
        ...

    async def close(self) -> None: ...


class LocalPlacement:
    """One process: every room is here."""

    def __init__(self, node_url: str = "") -> None:
        self.node_url = node_url
        self.on_lost: LostHandler | None = None  # never: no other node
        self._held: set[str] = set()

    async def claim(self, visit_id: str) -> str:
        return self.node_url

    def hold(self, visit_id: str) -> None:
        self._held.add(visit_id)

    async def release(self, visit_id: str) -> None:
        self._held.discard(visit_id)

    async def held(self, visit_id: str) -> bool:
        return visit_id in self._held

    async def owner(self, visit_id: str) -> str | None:
        return self.node_url if visit_id in self._held else None

    async def close(self) -> None:
        return None


# Renew our leases; a lease is released only if it is still ours. A lease found gone (Redis
# restarted or failed over, this node cut off from it for a lease) is taken again when no
# other node took it meanwhile: the room still lives here.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""
CLAIM_TRIES = 5


class RedisPlacement:
    """Rooms pinned to nodes through Redis keys ``vreception:room:<visit id>`` holding the
    owner's URL, with a lease (``lease_seconds``) renewed every third of it: a node that
    dies frees its rooms within one lease."""

    def __init__(self, redis: Redis, node_url: str, lease_seconds: float = 45.0) -> None:
        self.node_url = node_url
        self._redis = redis
        self._lease_ms = int(lease_seconds * 1000)
        self._held: set[str] = set()
        self._renewer: asyncio.Task[None] | None = None
        self.on_lost: LostHandler | None = None
        self._telling: set[asyncio.Task[None]] = set()

    @staticmethod
    def key(visit_id: str) -> str:
        return f"vreception:room:{visit_id}"

    async def claim(self, visit_id: str) -> str:
        key = self.key(visit_id)
        me = self.node_url.encode()
        for _ in range(CLAIM_TRIES):
            if await self._redis.set(key, me, nx=True, px=self._lease_ms):
                return self.node_url
            owner = await self._redis.get(key)
            if owner is None:  # released or expired in between: claim it again
                continue
            if owner == me:
                await self._redis.pexpire(key, self._lease_ms)
            return owner.decode() if isinstance(owner, bytes) else str(owner)
        raise RuntimeError(f"room {visit_id}: its lease kept changing hands")

    def hold(self, visit_id: str) -> None:
        self._held.add(visit_id)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew(), name="room-lease-renewal")

    async def release(self, visit_id: str) -> None:
        self._held.discard(visit_id)
        await _awaited(self._redis.eval(_RELEASE, 1, self.key(visit_id), self.node_url))

    async def held(self, visit_id: str) -> bool:
        return bool(await self._redis.exists(self.key(visit_id)))

    async def owner(self, visit_id: str) -> str | None:
        owner = await self._redis.get(self.key(visit_id))
        if owner is None:
            return None
        return owner.decode() if isinstance(owner, bytes) else str(owner)

    async def _renew(self) -> None:
        while self._held:
            await asyncio.sleep(self._lease_ms / 3000)
            for visit_id in list(self._held):
                if visit_id not in self._held:
                    continue  # released while the others were renewed: not taken again
                try:
                    kept = await _awaited(
                        self._redis.eval(
                            _RENEW, 1, self.key(visit_id), self.node_url, str(self._lease_ms)
                        )
                    )
                except Exception:
                    log.exception("could not renew the lease of room %s", visit_id)
                    continue
                if kept == 2:
                    log.warning("the lease of room %s was gone; taken again", visit_id)
                elif not kept:
                    log.error("lost the lease of room %s to another node", visit_id)
                    self._held.discard(visit_id)
                    self._lost(visit_id)

    def _lost(self, visit_id: str) -> None:
        """Tell the namespace, which closes its room (not awaited here: the other leases
        are renewed meanwhile)."""
        if self.on_lost is None:
            return
        task = asyncio.create_task(self._tell(self.on_lost, visit_id), name="room-lease-lost")
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    @staticmethod
    async def _tell(handler: LostHandler, visit_id: str) -> None:
        try:
            await handler(visit_id)
        except Exception:
            log.exception("closing room %s after losing its lease failed", visit_id)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for task in list(self._telling):
            with contextlib.suppress(Exception):
                await task
        for visit_id in list(self._held):
            with contextlib.suppress(Exception):
                await self.release(visit_id)
        await self._redis.aclose()
