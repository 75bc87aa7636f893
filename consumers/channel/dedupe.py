"""Idempotency keys already sent, remembered in Redis for a window.

A key is marked only after the provider accepted the message (``sent``), with ``SET NX EX``:
the first acceptance wins and its provider message id is what a replay reports. Failures are
never marked, so a retry of a failed message is always attempted. The consumer looks a whole
batch up with one MGET and marks its sends with one script call (a ``SET NX EX`` per key, in
Redis) before the batch's outcomes are produced (so before the commit): two commands per batch,
not two per message. One command instead of a pipeline of one SET per key: redis-py spent more
CPU packing and parsing those than the consumer spent on anything but rendering.

Redis down degrades dedupe, it does not block delivery: :meth:`seen` and :meth:`mark` log,
count ``herald_dependency_errors_total{dependency="redis"}`` and answer "not seen". A message
replayed during a Redis outage may then be sent twice, which at-least-once delivery allows;
holding every critical notification hostage to a cache would not be.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from consumers.runtime import metrics

__all__ = ["Dedupe"]

log = logging.getLogger(__name__)

_NO_ID = "-"  # stored when the provider gave no message id (Redis values cannot be None)

# KEYS: the keys to mark; ARGV[1]: the window in seconds, ARGV[i + 1]: KEYS[i]'s provider message id.
_MARK = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'NX', 'EX', ARGV[1])
end
return #KEYS
"""


class Dedupe:
    def __init__(self, client: redis_asyncio.Redis, *, window_s: int, namespace: str, consumer: str) -> None:
        self.client = client
        self.window_s = window_s
        self.namespace = namespace
        self._errors = metrics.DEPENDENCY_ERRORS.labels("redis", consumer)
        self._mark = client.register_script(_MARK)

    def _key(self, idempotency_key: str) -> str:
        return f"{self.namespace}:sent:{idempotency_key}"

    async def seen(self, idempotency_keys: Sequence[str]) -> dict[str, str | None]:
        """The keys already sent, each with the provider message id of that send (one MGET)."""
        keys = list(dict.fromkeys(idempotency_keys))
        if self.window_s <= 0 or not keys:
            return {}
        try:
            values = await self.client.mget([self._key(k) for k in keys])
        except (RedisError, OSError) as exc:
            self._errors.inc()
            log.warning(
                "dedupe: Redis unavailable (%s; REDIS_URL points at it); sending %d message(s) without the duplicate check",
                exc,
                len(keys),
            )
            return {}
        out: dict[str, str | None] = {}
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                text = value.decode() if isinstance(value, bytes) else str(value)
                out[key] = None if text == _NO_ID else text
        return out

    async def mark(self, sent: Mapping[str, str | None]) -> None:
        """Remember keys as sent (SET NX EX each, one script call): the first acceptance wins."""
        if self.window_s <= 0 or not sent:
            return
        try:
            await self._mark(
                keys=[self._key(key) for key in sent],
                args=[self.window_s, *(provider_id or _NO_ID for provider_id in sent.values())],
            )
        except (RedisError, OSError) as exc:
            self._errors.inc()
            log.warning(
                "dedupe: Redis unavailable (%s; REDIS_URL points at it); %d sent message(s) not remembered",
                exc,
                len(sent),
            )
