"""Idempotency keys already sent, remembered in Redis for a window.

A key is marked only after the provider accepted the message (``sent``), with ``SET NX EX``:
the first acceptance wins and its provider message id is what a replay reports. Failures are
never marked, so a retry of a failed message is always attempted.

Redis down degrades dedupe, it does not block delivery: :meth:`seen` and :meth:`mark` log,
count ``herald_dependency_errors_total{dependency="redis"}`` and answer "not seen". A message
replayed during a Redis outage may then be sent twice, which at-least-once delivery allows;
holding every critical notification hostage to a cache would not be.
"""

from __future__ import annotations

import logging

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from consumers import metrics

__all__ = ["Dedupe"]

log = logging.getLogger(__name__)

_NO_ID = "-"  # stored when the provider gave no message id (Redis values cannot be None)


class Dedupe:
    def __init__(self, client: redis_asyncio.Redis, *, window_s: int, namespace: str, consumer: str) -> None:
        self.client = client
        self.window_s = window_s
        self.namespace = namespace
        self._errors = metrics.DEPENDENCY_ERRORS.labels("redis", consumer)

    def _key(self, idempotency_key: str) -> str:
        return f"{self.namespace}:sent:{idempotency_key}"

    async def seen(self, idempotency_key: str) -> tuple[bool, str | None]:
        """(already sent?, the provider message id of that send)."""
        if self.window_s <= 0:
            return False, None
        try:
            value = await self.client.get(self._key(idempotency_key))
        except (RedisError, OSError) as exc:
            self._errors.inc()
            log.warning("dedupe: Redis unavailable (%s); sending without the duplicate check", exc)
            return False, None
        if value is None:
            return False, None
        text = value.decode() if isinstance(value, bytes) else str(value)
        return True, None if text == _NO_ID else text

    async def mark(self, idempotency_key: str, provider_message_id: str | None) -> None:
        if self.window_s <= 0:
            return
        try:
            await self.client.set(self._key(idempotency_key), provider_message_id or _NO_ID, nx=True,
                                  ex=self.window_s)
        except (RedisError, OSError) as exc:
            self._errors.inc()
            log.warning("dedupe: Redis unavailable (%s); %s not remembered as sent", exc, idempotency_key)
