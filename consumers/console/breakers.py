"""The providers' circuit breakers as the console shows them: read from the Redis keys the channel
consumers share (``<prefix>:breaker:<channel>:<provider>``, :mod:`consumers.channel.breakers`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from consumers.channel.breaker import BreakerState

__all__ = ["BreakerView", "breaker_views", "parse_breaker"]


@dataclass(frozen=True, slots=True)
class BreakerView:
    channel: str
    provider: str
    circuit: str  # closed, half_open, open
    since: datetime | None
    consecutive_failures: int


def parse_breaker(prefix: str, key: str, raw: bytes | str) -> BreakerView | None:
    """One Redis entry as a view; None for a key or value that is not a breaker's. Pure."""
    head = f"{prefix}:breaker:"
    if not key.startswith(head):
        return None
    channel, sep, provider = key[len(head) :].partition(":")
    if not sep or not provider:
        return None
    try:
        state = BreakerState.from_json(raw)
    except (ValueError, TypeError, KeyError):
        return None
    since = datetime.fromtimestamp(state.since, UTC) if state.since > 0 else None
    return BreakerView(channel, provider, state.circuit.value, since, state.consecutive)


async def breaker_views(redis: redis_asyncio.Redis, prefix: str) -> tuple[list[BreakerView], str | None]:
    """Every breaker Redis holds (a provider unused for a day has none: it is closed), or the error."""
    views: list[BreakerView] = []
    try:
        async for key in redis.scan_iter(match=f"{prefix}:breaker:*", count=200):
            name = key.decode() if isinstance(key, bytes) else str(key)
            raw = await redis.get(name)
            view = parse_breaker(prefix, name, raw) if raw is not None else None
            if view is not None:
                views.append(view)
    except (RedisError, OSError) as exc:
        return views, f"{type(exc).__name__}: {exc}"
    return sorted(views, key=lambda v: (v.channel, v.provider)), None
