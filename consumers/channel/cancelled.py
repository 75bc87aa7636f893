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

__all__ = ["CancelCheck", "cancelled_among"]

log = logging.getLogger(__name__)


class CancelCheck:
    def __init__(self, client: redis_asyncio.Redis, *, consumer: str, prefix: str = "herald:cancel") -> None:
        self.client = client
        self.prefix = prefix
        self._errors = metrics.DEPENDENCY_ERRORS.labels("redis", consumer)

    def keys(self, nids: Sequence[str]) -> list[str]:
        """The marks' keys for these (deduplicated) notification ids, in order."""
        return [cancelled_notification(self.prefix, n) for n in nids]

    def unavailable(self, exc: BaseException, count: int) -> None:
        """Redis did not answer: fail open, counted and logged (``count`` messages not checked)."""
        self._errors.inc()
        log.warning("cancellation check: Redis unavailable (%s); %d message(s) not checked", exc, count)

    async def cancelled(self, notification_ids: Sequence[str]) -> set[str]:
        """The notifications among these that a herald.cancel stopped (one MGET).

        A batch that also reads the delivery ledger on the same client makes this MGET part of
        the ledger's (:func:`consumers.channel.redis_reads.read_marks`)."""
        nids = list(dict.fromkeys(notification_ids))
        if not nids:
            return set()
        try:
            values = await self.client.mget(self.keys(nids))
        except (RedisError, OSError) as exc:
            self.unavailable(exc, len(nids))
            return set()
        return cancelled_among(nids, values)


def cancelled_among(nids: Sequence[str], values: Sequence[object]) -> set[str]:
    """The ids whose mark is set (``values``: the MGET's answers for ``nids``' keys). Pure."""
    return {n for n, v in zip(nids, values, strict=True) if v is not None}
