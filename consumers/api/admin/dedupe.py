"""Event ids already emitted over HTTP: Redis ``SET NX`` with a TTL, one pipeline per request.

If Redis does not answer, every event counts as new (fail open): a repeat then reaches the
classifier, whose outputs carry idempotency keys derived from the event id, so the channel
consumers still send it once. Refusing to emit during a cache outage would be worse.

An id is claimed per tenant: tenants choose their event ids, and one tenant's ``invoice-1001``
must not make another's a duplicate. The default tenant's keys are those of the time before
tenants (``<prefix>:<event id>``); another tenant's hold it before the id, joined with ``\x1f``,
which no checked identifier contains.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

__all__ = ["EventIds", "event_key"]

log = logging.getLogger(__name__)


def event_key(prefix: str, tenant: str | None, event_id: str) -> str:
    return f"{prefix}:{event_id}" if not tenant else f"{prefix}:{tenant}\x1f{event_id}"


class EventIds:
    def __init__(self, redis: redis_asyncio.Redis, *, prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s

    async def claim(self, event_ids: Sequence[tuple[str | None, str]]) -> list[bool]:
        """For each (tenant, event id), True when it was not seen within the TTL (and is now claimed)."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for tenant, event_id in event_ids:
                    pipe.set(event_key(self.prefix, tenant, event_id), b"1", nx=True, ex=self.ttl_s)
                answers = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("event id dedupe unavailable, emitting without it: %s", exc)
            return [True] * len(event_ids)
        return [bool(a) for a in answers]

    async def release(self, event_ids: Sequence[tuple[str | None, str]]) -> None:
        """Forget ids whose events were not acknowledged, so the caller's retry is not a 'duplicate'."""
        if not event_ids:
            return
        try:
            await self.redis.delete(*(event_key(self.prefix, t, e) for t, e in event_ids))
        except (RedisError, OSError) as exc:
            log.warning("could not release event ids after a failed send: %s", exc)
