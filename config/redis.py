"""Redis client factory: ``None`` in embedded mode."""

from __future__ import annotations

from redis.asyncio import Redis

from config.settings import Settings


def create_redis(settings: Settings) -> Redis | None:
    """A Redis client when ``redis_url`` is set, otherwise ``None`` (embedded mode)."""
    if settings.redis_url is None:
        return None
    client: Redis = Redis.from_url(settings.redis_url, decode_responses=False)
    return client
