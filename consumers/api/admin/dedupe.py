"""Event ids emitted over HTTP, in Redis: *pending* while the broker has not acked, then *done*.

A request claims each new id with ``SET NX`` and a short TTL (``admin.event_pending_ttl_s``),
holding its own token: the id is *pending*. After the broker acknowledged the events the marks
become *done* (``1``, kept ``admin.event_dedupe_ttl_s``): only then does a repeat answer
``duplicate``. A send that fails or is cancelled deletes its pending marks (only if they still
hold its token, so a later request's claim survives). A request that finds a pending mark
learns nothing about the event yet: it is refused with 503 and Retry-After (the mark's remaining
TTL, read in the same pipeline), never told ``duplicate`` (before, the id was marked done before
the broker acked, so a retry during a slow send that then failed was told the event had been
sent). A crash leaves only a pending mark, which expires within the pending TTL.

The same id twice in one request is one event: the first occurrence is claimed, a repeat takes
its answer, and a repeat of a new id is reported ``duplicate`` (it is sent once, with the
first). Without this the request's second ``SET NX`` met its own pending mark and every retry
of the batch was a 503.

Two requests may still both send one id: a pending mark that expired during a very slow send,
or Redis answering neither. That is harmless: the event id roots every idempotency key
downstream (notification id, outcome ids, provider keys), so the channel consumers send it once.
For the same reason, if Redis does not answer every event counts as new (fail open): refusing
to emit during a cache outage would be worse.

An id is claimed per tenant: tenants choose their event ids, and one tenant's ``invoice-1001``
must not make another's a duplicate. The default tenant's keys are those of the time before
tenants (``<prefix>:<event id>``); another tenant's hold it before the id, joined with ``\x1f``,
which no checked identifier contains. A done mark is ``1`` as before, so ids marked before the
upgrade stay duplicates.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

__all__ = ["DONE", "Claim", "Claims", "EventIds", "claim_state", "event_key", "first_of", "retry_after_s"]

log = logging.getLogger(__name__)

DONE = b"1"
_PENDING = b"p:"
# Delete the key only if it still holds this request's pending token (compare-and-delete).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class Claim(enum.Enum):
    NEW = "new"  # claimed now by this request: send it
    DONE = "done"  # acknowledged by the broker before: a duplicate
    PENDING = "pending"  # another request is sending it: outcome unknown yet


def event_key(prefix: str, tenant: str | None, event_id: str) -> str:
    return f"{prefix}:{event_id}" if not tenant else f"{prefix}:{tenant}\x1f{event_id}"


def claim_state(set_answer: object, value: bytes | None) -> Claim:
    """Pure: what ``SET NX`` and the ``GET`` after it say about one id. A mark gone between the
    two (expired or released) is still in someone's hands: pending, not new, not done."""
    if set_answer:
        return Claim.NEW
    if value is not None and not value.startswith(_PENDING):
        return Claim.DONE  # b"1", and any value written before pending marks existed
    return Claim.PENDING


def first_of(keys: Sequence[str]) -> list[int]:
    """Pure: for each key, the index of its first occurrence (its own index if it is the first)."""
    seen: dict[str, int] = {}
    return [seen.setdefault(k, i) for i, k in enumerate(keys)]


def retry_after_s(pttls_ms: Sequence[int]) -> int:
    """Pure: seconds until the longest of these pending marks expires, rounded up, at least 1
    (a mark gone or without a TTL, -2 / -1, may be retried at once: 1)."""
    return max(1, math.ceil(max(pttls_ms, default=0) / 1000))


@dataclass(frozen=True)
class Claims:
    states: list[Claim]  # one per (tenant, event id) asked, in order
    retry_after_s: int = 1  # when the PENDING ones' marks expire at the latest


class EventIds:
    def __init__(
        self, redis: redis_asyncio.Redis, *, prefix: str, ttl_s: int, pending_ttl_s: int = 60
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.pending_ttl_s = pending_ttl_s
        # One token per request: its pending marks, and only its own, are released on failure.
        self.token = _PENDING + secrets.token_hex(8).encode()
        # When this request's pending marks expire at the earliest (event loop time), set by claim.
        self.expires_at = asyncio.get_running_loop().time() + pending_ttl_s

    def _keys(self, event_ids: Sequence[tuple[str | None, str]]) -> list[str]:
        return [event_key(self.prefix, tenant, event_id) for tenant, event_id in event_ids]

    async def claim(self, event_ids: Sequence[tuple[str | None, str]]) -> Claims:
        """For each (tenant, event id): NEW (now pending under this request), DONE or PENDING; a
        repeat within the request takes its first occurrence's answer, DONE for a NEW one."""
        keys = self._keys(event_ids)
        first = first_of(keys)
        self.expires_at = asyncio.get_running_loop().time() + self.pending_ttl_s
        unique = [k for i, k in enumerate(keys) if first[i] == i]
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in unique:
                    pipe.set(key, self.token, nx=True, ex=self.pending_ttl_s)
                    pipe.get(key)
                    pipe.pttl(key)
                answers = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("event id dedupe unavailable, emitting without it: %s", exc)
            answers = [True, None, -2] * len(unique)
        by_key = {k: claim_state(answers[3 * j], answers[3 * j + 1]) for j, k in enumerate(unique)}
        wait = [answers[3 * j + 2] for j, k in enumerate(unique) if by_key[k] is Claim.PENDING]
        states = []
        for i, k in enumerate(keys):
            state = by_key[k]
            states.append(Claim.DONE if first[i] != i and state is Claim.NEW else state)
        return Claims(states, retry_after_s(wait))

    async def done(self, event_ids: Sequence[tuple[str | None, str]]) -> None:
        """The broker acked these: repeats are duplicates for ``ttl_s``. If Redis fails here the
        pending marks expire and a retry sends again (harmless, see the module docstring)."""
        if not event_ids:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in self._keys(event_ids):
                    pipe.set(key, DONE, ex=self.ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("could not mark sent event ids done: %s", exc)

    async def release(self, event_ids: Sequence[tuple[str | None, str]]) -> None:
        """Forget this request's pending ids (not acknowledged), so the retry goes through."""
        if not event_ids:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in self._keys(event_ids):
                    pipe.eval(_RELEASE, 1, key, self.token)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("could not release event ids after a failed send: %s", exc)
