"""``herald.cancel``: stop everything still pending for the notifications that carry a cancel_key.

In one PostgreSQL transaction: pending timers tagged with the key (scheduled sends, workflow
steps, quiet-hours deferrals) and pending retries of notifications sent with the key are
cancelled, active workflows are marked cancelled, digest items are taken out. Then Redis
remembers the key and those notifications for ``ttl`` so that an event with the key that is
still on its way, or a message already waiting in a channel lane, is refused (the channel
consumer checks before the provider call). One ``cancelled`` outcome per notification stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import overload

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from consumers.infra.keys import derived_key, notification_id, outcome_id
from schemas.codec import Codec
from schemas.errors import DependencyUnavailable
from schemas.models import ChannelMessage, DeliveryOutcome, DomainEvent, OutcomeStatus, Tier

__all__ = ["CANCEL_EVENT_TYPE", "Canceller", "cancelled_key", "cancelled_notification", "scoped_cancel_key"]

log = logging.getLogger(__name__)
CANCEL_EVENT_TYPE = "herald.cancel"


@overload
def scoped_cancel_key(cancel_key: str, tenant: str | None) -> str: ...
@overload
def scoped_cancel_key(cancel_key: str | None, tenant: str | None) -> str | None: ...
def scoped_cancel_key(cancel_key: str | None, tenant: str | None) -> str | None:
    """The cancel_key as stored and looked up (timers, workflows, digest items, the index, Redis):
    a tenant's keys name it, so a tenant's herald.cancel stops only that tenant's notifications.
    The default tenant's stay bare (as before tenants); ``\\x1e`` appears in no checked identifier."""
    if not cancel_key or not tenant:
        return cancel_key
    return f"{tenant}\x1e{cancel_key}"


def cancelled_key(prefix: str, cancel_key: str) -> str:
    return f"{prefix}:key:{cancel_key}"


def cancelled_notification(prefix: str, notification_id: str) -> str:
    return f"{prefix}:nid:{notification_id}"


class CancelUnavailable(DependencyUnavailable):
    """Redis could not record a cancellation: the cancel event is retried, never half-applied."""


@dataclass(frozen=True, slots=True)
class Canceller:
    pool: asyncpg.Pool
    redis: Redis
    codec: Codec
    tier_of: Callable[[str], Tier]  # event type → tier (the routing table)
    namespace: str  # the deployment's timers (the topic prefix)
    prefix: str = "herald:cancel"
    ttl_s: int = 7 * 86_400

    async def cancel(
        self, cancel_key: str, now: datetime, tenant: str | None = None
    ) -> list[DeliveryOutcome]:
        """Apply one cancellation in ``tenant``; the ``cancelled`` outcomes to publish (deterministic ids)."""
        scoped = scoped_cancel_key(cancel_key, tenant)
        async with self.pool.acquire() as conn, conn.transaction():
            # Notifications already under way with this key (sent at once, or by a workflow step):
            # their retries are stopped and their messages in a lane flagged.
            nids = [
                r["notification_id"]
                for r in await conn.fetch(
                    "SELECT notification_id FROM herald_cancel_index WHERE cancel_key = $1 UNION "
                    "SELECT notification_id FROM herald_workflows WHERE cancel_key = $1",
                    scoped,
                )
            ]
            timers = await conn.fetch(
                "UPDATE herald_timers SET state = 'cancelled' WHERE namespace = $3 AND state = 'pending' AND ("
                "(data ? 'cancel_key' AND data->>'cancel_key' = $1) OR "
                "(kind = 'publish' AND data->>'notification_id' = ANY($2::text[]))) RETURNING payload",
                scoped,
                nids,
                self.namespace,
            )
            # The workflow rows locked in notification_id order first, as the timer poller's batch and
            # the fallback lock them: an UPDATE alone takes them in storage order, and a poll holding
            # one of them while it waits for another would deadlock with it.
            await conn.execute(
                "SELECT 1 FROM herald_workflows WHERE cancel_key = $1 AND state IN ('running', 'waiting') "
                "ORDER BY notification_id FOR UPDATE",
                scoped,
            )
            flows = await conn.fetch(
                "UPDATE herald_workflows SET state = 'cancelled', updated_at = $2 "
                "WHERE cancel_key = $1 AND state IN ('running', 'waiting') RETURNING event",
                scoped,
                now,
            )
            # Then the digests holding its items, in id order, as join_digest takes them after the
            # workflow row: a digest being sent (its items deleted as it is marked sent) finishes
            # first, and its items are no longer there to be reported cancelled as well as listed.
            await conn.execute(
                "SELECT 1 FROM herald_workflow_digests WHERE id IN (SELECT digest_id FROM "
                "herald_workflow_digest_items WHERE cancel_key = $1) ORDER BY id FOR UPDATE",
                scoped,
            )
            items = await conn.fetch(
                "DELETE FROM herald_workflow_digest_items WHERE cancel_key = $1 RETURNING event", scoped
            )
            await self._remember(scoped, nids)
        payloads = [r["payload"] for r in timers] + [r["event"] for r in flows] + [r["event"] for r in items]
        outcomes = self._outcomes(cancel_key, payloads, now)
        log.info("cancel %s: %d notifications stopped", cancel_key, len(outcomes))
        return outcomes

    async def _remember(self, cancel_key: str, nids: Iterable[str]) -> None:
        """Inside the transaction: a Redis failure rolls the cancellation back (the event is retried)."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(cancelled_key(self.prefix, cancel_key), "1", ex=self.ttl_s)
                for nid in nids:
                    pipe.set(cancelled_notification(self.prefix, nid), "1", ex=self.ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CancelUnavailable(f"recording cancel_key {cancel_key!r} in Redis failed: {exc}") from exc

    async def cancelled(self, cancel_keys: Sequence[str]) -> set[str]:
        """Which of these keys were cancelled (an event carrying one is refused)."""
        if not cancel_keys:
            return set()
        values = await self.redis.mget([cancelled_key(self.prefix, k) for k in cancel_keys])
        return {k for k, v in zip(cancel_keys, values, strict=True) if v is not None}

    async def index(self, pairs: Sequence[tuple[str, str]], now: datetime) -> None:
        """Notifications sent at once with a cancel_key: (scoped cancel_key, notification_id)."""
        if pairs:
            await self.pool.executemany(
                "INSERT INTO herald_cancel_index (cancel_key, notification_id, created_at) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING",
                [(k, n, now) for k, n in pairs],
            )

    def _outcomes(
        self, cancel_key: str, payloads: Sequence[bytes | None], now: datetime
    ) -> list[DeliveryOutcome]:
        seen: dict[str, DeliveryOutcome] = {}
        for raw in payloads:
            if raw is None:
                continue
            name, record = self.codec.decode_record(raw)
            if name == DomainEvent.SCHEMA:
                event = DomainEvent.from_record(record)
                outcome = self.for_event(
                    event, notification_id(event.event_id, event.user_id, event.tenant), cancel_key, now
                )
            elif name == ChannelMessage.SCHEMA:
                message = ChannelMessage.from_record(record)
                outcome = DeliveryOutcome.about(
                    message,
                    OutcomeStatus.CANCELLED,
                    outcome_id=outcome_id(
                        derived_key(message.notification_id, f"cancel:{cancel_key}"), "cancelled"
                    ),
                    recorded_at=now,
                    reason="cancel_key",
                    detail=f"cancelled by herald.cancel {cancel_key}",
                )
            else:
                continue
            seen.setdefault(outcome.notification_id, outcome)
        return list(seen.values())

    def for_event(self, event: DomainEvent, nid: str, cancel_key: str, now: datetime) -> DeliveryOutcome:
        return DeliveryOutcome(
            outcome_id=outcome_id(derived_key(nid, f"cancel:{cancel_key}"), "cancelled"),
            notification_id=nid,
            event_id=event.event_id,
            event_type=event.type,
            user_id=event.user_id,
            tier=self.tier_of(event.type),
            status=OutcomeStatus.CANCELLED,
            occurred_at=event.occurred_at,
            recorded_at=now,
            reason="cancel_key",
            detail=f"cancelled by herald.cancel {cancel_key}",
        )
