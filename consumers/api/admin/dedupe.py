"""Event ids already emitted over HTTP: Redis ``SET NX`` with a TTL, one pipeline per request.

If Redis does not answer, every event counts as new (fail open): a repeat then reaches the
classifier, whose outputs carry idempotency keys derived from the event id, so the channel
consumers still send it once. Refusing to emit during a cache outage would be worse.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

__all__ = ["EventIds"]

log = logging.getLogger(__name__)


class EventIds:
    def __init__(self, redis: redis_asyncio.Redis, *, prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s

    async def claim(self, event_ids: Sequence[str]) -> list[bool]:
        """For each id, True when it was not seen within the TTL (and is now claimed)."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for event_id in event_ids:
                    pipe.set(f"{self.prefix}:{event_id}", b"1", nx=True, ex=self.ttl_s)
                answers = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("event id dedupe unavailable, emitting without it: %s", exc)
            return [True] * len(event_ids)
        return [bool(a) for a in answers]

    async def release(self, event_ids: Sequence[str]) -> None:
        """Forget ids whose events were not acknowledged, so the caller's retry is not a 'duplicate'."""
        if not event_ids:
            return
        try:
            await self.redis.delete(*(f"{self.prefix}:{e}" for e in event_ids))
        except (RedisError, OSError) as exc:
            log.warning("could not release event ids after a failed send: %s", exc)
