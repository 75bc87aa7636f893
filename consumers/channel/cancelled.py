"""Is a message's notification cancelled? Checked once per batch, before any provider call.

A ``herald.cancel`` marks the notifications it stops in Redis (``consumers.workflow.cancel``);
a message that was already waiting in a lane when the cancel came is found here and reported
``cancelled`` instead of being sent. Redis down fails open (the message is sent), counted in
``herald_dependency_errors_total{dependency="redis"}``, like the delivery ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from consumers.runtime import metrics
from consumers.workflow.cancel import cancelled_notification

__all__ = ["CancelCheck"]

log = logging.getLogger(__name__)


class CancelCheck:
    def __init__(self, client: redis_asyncio.Redis, *, consumer: str, prefix: str = "herald:cancel") -> None:
        self.client = client
        self.prefix = prefix
        self._errors = metrics.DEPENDENCY_ERRORS.labels("redis", consumer)

    async def cancelled(self, notification_ids: Sequence[str]) -> set[str]:
        """The notifications among these that a herald.cancel stopped (one MGET)."""
        nids = list(dict.fromkeys(notification_ids))
        if not nids:
            return set()
        try:
            values = await self.client.mget([cancelled_notification(self.prefix, n) for n in nids])
        except (RedisError, OSError) as exc:
            self._errors.inc()
            log.warning(
                "cancellation check: Redis unavailable (%s); %d message(s) not checked", exc, len(nids)
            )
            return set()
        return {n for n, v in zip(nids, values, strict=True) if v is not None}
