"""The delivery ledger: what happened to each idempotency key at the provider, in Redis.

One key per idempotency key, ``<ns>:ledger:<idempotency key>``, with TTL ``ttl_s`` (at least
the longest replay window: the fallback's longest retry schedule, checked in settings):

* ``in_flight|<owner>`` written (if absent, or compare-and-set on a replay) **before** the
  provider call;
* ``done|<provider message id>`` written **right after** the provider accepted, per message;
* deleted after a failed attempt (a retry must try again);
* ``ambiguous`` once a replay found the key in flight from a dead process and chose not to
  risk a second send (so every later replay answers the same).

A process is alive while its owner key ``<ns>:owner:<owner>`` exists; :meth:`heartbeat`
refreshes it every ``owner_ttl_s / 3`` and deletes it on a clean stop. So after a SIGKILL the
only keys a replay finds ``in_flight`` are the provider calls that were in flight at the
kill: those are the only sends that can be ambiguous, and :func:`replay_decision` says what
to do about each (pure).

The marks of concurrent deliveries share round trips: every mark asked for in two turns of the
event loop is written by one script call (:mod:`consumers.channel.ledger_writes`), and each delivery
still waits for its own mark's answer (a claim before its provider call, ``done`` after it).

Redis down degrades the ledger, it does not block delivery: every call logs, counts
``herald_dependency_errors_total{dependency="redis"}`` and answers "nothing known", so a
message replayed during a Redis outage may be sent twice (at-least-once allows it); holding
every critical notification hostage to a cache would not be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from consumers.channel.ledger_writes import LedgerWrites
from consumers.runtime import metrics
from schemas.models import Channel, Tier

__all__ = [
    "DeliveryLedger",
    "Entry",
    "LedgerState",
    "Replay",
    "parse_entries",
    "replay_decision",
    "resends_unknown",
]

log = logging.getLogger(__name__)

_SEP = "|"
_NO_ID = "-"  # a send the provider accepted without a message id (Redis values cannot be None)


class LedgerState(StrEnum):
    IN_FLIGHT = "in_flight"
    DONE = "done"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True, slots=True)
class Entry:
    """What the ledger holds for one key, as the batch's lookup saw it."""

    state: LedgerState
    raw: str  # the stored value, for the compare-and-set
    owner: str | None = None  # IN_FLIGHT: the process that claimed it
    owner_alive: bool = False  # IN_FLIGHT: whether that process still heartbeats
    provider_id: str | None = None  # DONE: the provider's message id


class Replay(StrEnum):
    SEND = "send"  # nothing known, or a resend where a duplicate beats a loss
    ACK = "ack"  # already accepted by the provider: report the same `sent`, do not call it
    WAIT = "wait"  # another live process is sending it right now: ask the fallback to look again
    AMBIGUOUS = "ambiguous"  # in flight when its process died; a duplicate would hurt more than a loss


# Channels whose provider call is idempotent by key at the receiving end: the inbox insert is
# unique by idempotency key, webhook receivers dedupe on `webhook-id`. A resend there is free.
IDEMPOTENT_CHANNELS = frozenset({Channel.IN_APP, Channel.WEBHOOK})
# Tiers where a possible duplicate beats a possible loss.
RESEND_TIERS = frozenset({Tier.CRITICAL, Tier.HIGH})


def resends_unknown(tier: Tier, channel: Channel) -> bool:
    """Whether a send the provider may or may not have taken is sent again: one in flight when its
    process died, or one the provider timed out on. Yes where a duplicate is free (idempotent
    channels) or beats a loss (critical, high); no elsewhere (``failed_permanent``/``ambiguous``). Pure."""
    return channel in IDEMPOTENT_CHANNELS or tier in RESEND_TIERS


def replay_decision(entry: Entry | None, *, tier: Tier, channel: Channel, owner: str) -> Replay:
    """What to do with a message whose key the ledger holds as ``entry`` (None: nothing). Pure."""
    if entry is None:
        return Replay.SEND
    if entry.state is LedgerState.DONE:
        return Replay.ACK
    if entry.state is LedgerState.AMBIGUOUS:
        return Replay.AMBIGUOUS
    if entry.owner != owner and entry.owner_alive:
        return Replay.WAIT
    # In flight from a process that is gone (or from this one's own earlier, interrupted attempt):
    # the provider may or may not have taken it.
    return Replay.SEND if resends_unknown(tier, channel) else Replay.AMBIGUOUS


def _parse(raw: str) -> Entry | None:
    state, _, rest = raw.partition(_SEP)
    if state == LedgerState.DONE:
        return Entry(LedgerState.DONE, raw, provider_id=None if rest == _NO_ID else rest)
    if state == LedgerState.IN_FLIGHT:
        return Entry(LedgerState.IN_FLIGHT, raw, owner=rest)
    if state == LedgerState.AMBIGUOUS:
        return Entry(LedgerState.AMBIGUOUS, raw)
    return None  # unknown value (an older format): treat as nothing known


def parse_entries(keys: Sequence[str], values: Sequence[object]) -> dict[str, Entry]:
    """The entries among the MGET's ``values`` for ``keys`` (owners not yet known alive). Pure."""
    entries: dict[str, Entry] = {}
    for key, value in zip(keys, values, strict=True):
        if value is not None:
            entry = _parse(value.decode() if isinstance(value, bytes) else str(value))
            if entry is not None:
                entries[key] = entry
    return entries


# The values' prefixes as plain strings: formatting a StrEnum member in an f-string goes through
# Enum.__format__ (~0.4 us), twice per message.
_DONE = f"{LedgerState.DONE}{_SEP}"


class DeliveryLedger:
    def __init__(
        self,
        client: redis_asyncio.Redis,
        *,
        ttl_s: int,
        namespace: str,
        consumer: str,
        owner_ttl_s: float = 10.0,
    ) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.namespace = namespace
        self.owner = f"{consumer}:{uuid.uuid4().hex[:16]}"
        self._in_flight = f"{LedgerState.IN_FLIGHT}{_SEP}{self.owner}"  # this process's claims
        self.owner_ttl_s = owner_ttl_s
        self._prefix = f"{namespace}:ledger:"
        self._errors = metrics.DEPENDENCY_ERRORS.labels("redis", consumer)
        # claim, done, release and ambiguous marks of concurrent deliveries share round trips
        self.writes = LedgerWrites(client)

    def _key(self, idempotency_key: str) -> str:
        return self._prefix + idempotency_key

    def _owner_key(self, owner: str) -> str:
        return f"{self.namespace}:owner:{owner}"

    def _down(self, exc: BaseException, what: str) -> None:
        self._errors.inc()
        log.warning("delivery ledger: Redis unavailable (%s; REDIS_URL points at it); %s", exc, what)

    def keys(self, idempotency_keys: Sequence[str]) -> list[str]:
        """The ledger's Redis keys for these (deduplicated) idempotency keys, in order."""
        return [self._prefix + k for k in idempotency_keys]

    def lookup_failed(self, exc: BaseException, count: int) -> None:
        """Redis did not answer the lookup: nothing known for ``count`` messages, counted and logged."""
        self._down(exc, f"{count} message(s) handled without the ledger")

    async def lookup(self, idempotency_keys: Sequence[str]) -> dict[str, Entry]:
        """The ledger's entries for a batch: one MGET, plus one EXISTS pipeline for in-flight owners.

        A batch that also checks cancellations on the same client shares this MGET with them
        (:func:`consumers.channel.redis_reads.read_marks`)."""
        keys = list(dict.fromkeys(idempotency_keys))
        if not keys:
            return {}
        try:
            values = await self.client.mget(self.keys(keys))
        except (RedisError, OSError) as exc:
            self.lookup_failed(exc, len(keys))
            return {}
        return await self.entries(keys, values)

    async def entries(self, keys: Sequence[str], values: Sequence[object]) -> dict[str, Entry]:
        """The entries the MGET's ``values`` for ``keys`` hold, with whether their in-flight owners
        are alive (one EXISTS pipeline, only when another process's claim was found)."""
        entries = parse_entries(keys, values)
        owners = sorted({e.owner for e in entries.values() if e.owner and e.owner != self.owner})
        if not owners:
            return entries
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for o in owners:
                    pipe.exists(self._owner_key(o))
                alive = dict(zip(owners, [bool(n) for n in await pipe.execute()], strict=True))
        except (RedisError, OSError) as exc:
            self.lookup_failed(exc, len(keys))
            return {}
        return {
            k: Entry(e.state, e.raw, e.owner, alive.get(e.owner or "", False), e.provider_id)
            for k, e in entries.items()
        }

    async def claim(self, idempotency_key: str, seen: Entry | None) -> bool:
        """Mark the key in flight by this process, if it still holds what the lookup saw.

        False when another process changed it meanwhile (the caller does not send). Redis down:
        True (deliver without the ledger)."""
        key = self._key(idempotency_key)
        value = self._in_flight
        try:
            if seen is None:
                return await self.writes.set_new(key, value, self.ttl_s)
            return await self.writes.compare_and_set(key, value, self.ttl_s, seen.raw)
        except (RedisError, OSError) as exc:
            self._down(exc, "sending without an in-flight mark")
            return True

    async def done(self, idempotency_key: str, provider_id: str | None) -> None:
        """The provider accepted: any later replay is acknowledged without calling it."""
        value = _DONE + (provider_id or _NO_ID)
        try:
            await self.writes.set(self._key(idempotency_key), value, self.ttl_s)
        except (RedisError, OSError) as exc:
            self._down(exc, "an accepted send not remembered")

    async def release(self, idempotency_key: str) -> None:
        """The attempt failed: forget our claim (only our own), so the retry tries again."""
        value = self._in_flight
        try:
            await self.writes.delete_if(self._key(idempotency_key), value)
        except (RedisError, OSError) as exc:
            self._down(exc, "a failed attempt's claim left to expire")

    async def ambiguous(self, idempotency_key: str) -> None:
        """Remember the verdict, so every later replay reports the same."""
        try:
            await self.writes.set(self._key(idempotency_key), str(LedgerState.AMBIGUOUS), self.ttl_s)
        except (RedisError, OSError) as exc:
            self._down(exc, "an ambiguous verdict not remembered")

    async def heartbeat(self, stopping: asyncio.Event) -> None:
        """Keep this process's owner key alive until ``stopping``; then delete it."""
        key = self._owner_key(self.owner)
        ttl_ms = max(1, int(self.owner_ttl_s * 1000))
        while not stopping.is_set():
            try:
                await self.client.set(key, "1", px=ttl_ms)
            except (RedisError, OSError) as exc:
                self._down(exc, "owner heartbeat missed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.owner_ttl_s / 3)
        with contextlib.suppress(RedisError, OSError):
            await self.client.delete(key)
