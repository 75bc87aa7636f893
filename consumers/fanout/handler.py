"""``herald run fanout``: events addressed to a topic → one event per subscriber on ``<prefix>.events.fanout``.

Subscribers are read in chunks in primary-key order (user id). After the broker acknowledged
every copy of a chunk, the chunk's last user id is saved in ``herald_fanout_cursors``; a
restarted fan-out resumes after it. A crash can therefore re-send at most the chunk in flight,
with the same deterministic copy ids (uuid5 of event id + subscriber), which the classifier's
idempotency keys turn into one notification each: no subscriber is skipped, none notified twice.
A cursor is one per (tenant, event id): tenants choose their event ids, so two may broadcast
under the same one.

A topic event whose identifiers fail :func:`~schemas.identifiers.check_event`, or whose values
PostgreSQL refuses (:func:`~channels.storage_errors.classify_pg_error`), is dead-lettered with
reason ``invalid_event``; an outage of PostgreSQL or Kafka is retried, and the runtime's poison net
asks :meth:`Fanout.probe` before it blames a record for one.

The copies go to their own topic, read by ``herald run classifier --lane bulk``, which puts
them on the bulk lane (unless the route sets ``broadcast_lane: priority``): a broadcast to a
million subscribers never queues in front of ``herald.events`` or the priority lane.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from channels.storage_errors import PG_CALL_ERRORS, classify_pg_error
from consumers.fanout.copies import copy_for, is_broadcast
from consumers.runtime.handling import DeadLetter, Incoming, Result
from schemas.codec import Codec
from schemas.errors import DependencyUnavailable
from schemas.identifiers import InvalidIdentifier, check_event
from schemas.models import DomainEvent

__all__ = ["Fanout"]

log = logging.getLogger(__name__)

COPIES = Counter("herald_fanout_copies_total", "Per-subscriber copies produced by the fan-out.")
BROADCASTS = Counter("herald_fanout_events_total", "Topic events fanned out to the end.")

_PAGE = (
    "SELECT user_id FROM herald_topic_subscribers WHERE tenant = $1 AND topic = $2 AND user_id > $3 "
    "ORDER BY user_id LIMIT $4"
)


class Fanout:
    name = "fanout"

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        codec: Codec,
        out_topic: str,
        *,
        chunk: int = 1000,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.codec = codec
        self.out_topic = out_topic
        self.chunk = chunk

    def decode(self, raw: bytes) -> DomainEvent:
        return self.codec.decode(raw, DomainEvent)

    async def probe(self) -> bool:
        """Does PostgreSQL answer? Asked by the runtime's poison net before it blames a record."""
        async with asyncio.timeout(2.0):
            return bool(await self.pool.fetchval("SELECT 1"))

    async def handle(self, batch: Sequence[Incoming[DomainEvent]]) -> Sequence[Result]:
        return [await self._one(item.value) for item in batch]

    async def _one(self, event: DomainEvent) -> Result:
        """Fan ``event`` out (its copies acknowledged) or its dead letter; an outage raises."""
        if not is_broadcast(event):
            return ()  # addressed to a user: the classifier's
        try:
            check_event(event)  # a raw producer can bypass the emitter's check
        except InvalidIdentifier as exc:
            return DeadLetter(exc.reason, type(exc).__name__, str(exc))
        try:
            await self.fan_out(event)
        except KafkaError as exc:
            raise DependencyUnavailable(f"fan-out of {event.event_id}: {exc}") from exc
        except PG_CALL_ERRORS as exc:
            if classify_pg_error(exc) == "record":  # values PostgreSQL refuses: retrying never helps
                return DeadLetter("invalid_event", type(exc).__name__, f"PostgreSQL refused: {exc}"[:1000])
            raise DependencyUnavailable(f"fan-out of {event.event_id}: {exc}") from exc
        return ()  # the copies are produced (and acknowledged) in fan_out

    async def fan_out(self, event: DomainEvent) -> int:
        """Produce every subscriber's copy not produced yet; returns how many this call produced."""
        assert event.topic is not None
        tenant = event.tenant or ""
        await self.pool.execute(
            "INSERT INTO herald_fanout_cursors (event_id, tenant, topic) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            event.event_id,
            tenant,
            event.topic,
        )
        row = await self.pool.fetchrow(
            "SELECT after_user, finished_at FROM herald_fanout_cursors WHERE tenant = $1 AND event_id = $2",
            tenant,
            event.event_id,
        )
        if row["finished_at"] is not None:
            return 0  # a replay of a finished broadcast
        after, produced = row["after_user"], 0
        while ids := [
            r["user_id"] for r in await self.pool.fetch(_PAGE, tenant, event.topic, after, self.chunk)
        ]:
            await self._produce(event, ids)
            after = ids[-1]
            await self.pool.execute(
                "UPDATE herald_fanout_cursors SET after_user = $3, fanned = fanned + $4 "
                "WHERE tenant = $1 AND event_id = $2",
                tenant,
                event.event_id,
                after,
                len(ids),
            )
            produced += len(ids)
        await self.pool.execute(
            "UPDATE herald_fanout_cursors SET finished_at = now() WHERE tenant = $1 AND event_id = $2",
            tenant,
            event.event_id,
        )
        BROADCASTS.inc()
        log.info("fanned out %s to topic %r: %d copies", event.event_id, event.topic, produced)
        return produced

    async def _produce(self, event: DomainEvent, user_ids: list[str]) -> None:
        sends = []
        for uid in user_ids:
            copy = copy_for(event, uid)
            sends.append(await self.producer.send(self.out_topic, self.codec.encode(copy), key=uid.encode()))
        await asyncio.gather(*sends)
        COPIES.inc(len(user_ids))
