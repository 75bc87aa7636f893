"""``herald run fanout``: events addressed to a topic → one event per subscriber on ``<prefix>.events.fanout``.

Subscribers are read in chunks in primary-key order (user id). After the broker acknowledged
every copy of a chunk, the chunk's last user id is saved in ``herald_fanout_cursors``; a
restarted fan-out resumes after it. A crash can therefore re-send at most the chunk in flight,
with the same deterministic copy ids (uuid5 of event id + subscriber), which the classifier's
idempotency keys turn into one notification each: no subscriber is skipped, none notified twice.
A cursor is one per (tenant, event id): tenants choose their event ids, so two may broadcast
under the same one. One fan-out at a time works on a cursor: it holds a PostgreSQL session
advisory lock on (tenant, event id) from reading the cursor to finishing it, so a replica that
gets the event while another is still at it (the first overran ``max.poll.interval.ms`` and lost
its partition) waits, then finds the broadcast finished. The lock is the session's: a holder that
dies releases it with its connection (a vanished host within about a minute, by the lock
connection's TCP keepalives). The cursor only moves forward (``GREATEST``), whoever writes.

An event id whose cursor names another topic is a reused id, not a replay: it is dead-lettered
with reason ``invalid_event`` (once skipped in silence, as if already fanned out). A reuse for the
same topic cannot be told from a replay and sends nothing. A topic event with no cursor that
occurred longer ago than a finished cursor is kept is dead-lettered as ``stale_broadcast``: its
cursor may have been pruned, and a replay must not reach every subscriber again. A copy the broker
refuses for its size is dead-lettered as ``too_large``.

A topic event whose identifiers fail :func:`~schemas.identifiers.check_event`, or whose values
PostgreSQL refuses (:func:`~channels.storage_errors.classify_pg_error`), is dead-lettered with
reason ``invalid_event``; an outage of PostgreSQL or Kafka is retried, and the runtime's poison net
asks :meth:`Fanout.probe` before it blames a record for one. The probe answers for both: a broadcast
whose copies the broker refused (a partition without a leader, a produce timeout) is never the
record's fault, so while the last produce failed the probe says no and the runner pauses and
replays instead of dead-lettering the broadcast as ``poison``.

The copies go to their own topic, read by ``herald run classifier --lane bulk``, which puts
them on the bulk lane (unless the route sets ``broadcast_lane: priority``): a broadcast to a
million subscribers never queues in front of ``herald.events`` or the priority lane.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from prometheus_client import Counter

from channels.storage_errors import PG_CALL_ERRORS, classify_pg_error
from consumers.fanout.copies import copy_for, is_broadcast, stale_without_cursor
from consumers.runtime.handling import DeadLetter, Incoming, Result
from schemas.codec import Codec
from schemas.errors import DependencyUnavailable, RecordError
from schemas.identifiers import InvalidIdentifier, check_event
from schemas.models import DomainEvent

__all__ = ["CopyTooLarge", "Fanout", "ReusedEventId", "StaleBroadcast"]

log = logging.getLogger(__name__)

COPIES = Counter("herald_fanout_copies_total", "Per-subscriber copies produced by the fan-out.")
BROADCASTS = Counter("herald_fanout_events_total", "Topic events fanned out to the end.")

_PAGE = (
    "SELECT user_id FROM herald_topic_subscribers WHERE tenant = $1 AND topic = $2 AND user_id > $3 "
    "ORDER BY user_id LIMIT $4"
)
# GREATEST compares as ORDER BY above does (the same column type and collation): a writer that
# is behind (a lock lost with its connection) never moves the cursor back over acknowledged copies.
_ADVANCE = (
    "UPDATE herald_fanout_cursors SET after_user = GREATEST(after_user, $3), fanned = fanned + $4 "
    "WHERE tenant = $1 AND event_id = $2"
)
_CURSOR = (
    "SELECT topic, after_user, finished_at FROM herald_fanout_cursors WHERE tenant = $1 AND event_id = $2"
)
_START = (
    "INSERT INTO herald_fanout_cursors (event_id, tenant, topic) VALUES ($1, $2, $3) "
    "ON CONFLICT (tenant, event_id) DO UPDATE SET topic = herald_fanout_cursors.topic "
    "RETURNING topic, after_user, finished_at"
)
# The two-key form of advisory locks: its key space is apart from the one-key locks of migrate
# and the ledger. A hash collision of two events only makes one wait for the other.
_LOCK_CLASS = 0x46414E4F  # "FANO"
_TRY_LOCK = "SELECT pg_try_advisory_lock($1::int, hashtext($2 || chr(31) || $3))"
_UNLOCK = "SELECT pg_advisory_unlock($1::int, hashtext($2 || chr(31) || $3))"
LOCK_POLL_S = 1.0
# The lock dies with its session, but a server learns of a dead client only from TCP: with the
# operating system's keepalive defaults (2 h + 9 x 75 s) a holder whose host vanished (power, a cut
# link) would hold every other replica's wait for over two hours. On the lock's connection only:
# a startup parameter would be refused by a connection pooler that does not know it.
_KEEPALIVE = "SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3"


class CopyTooLarge(RecordError):
    """The broker refused a subscriber's copy for its size."""

    reason = "too_large"


class StaleBroadcast(RecordError):
    """A topic event without a cursor, older than a cursor is kept (``STALE_BROADCAST_AFTER``)."""

    reason = "stale_broadcast"


class ReusedEventId(RecordError):
    """A topic event under an event id that already fanned out (or is fanning out) to another topic."""

    reason = "invalid_event"


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
        self._kafka_failing = False  # the last produce failed; cleared by the next that succeeds

    def decode(self, raw: bytes) -> DomainEvent:
        return self.codec.decode(raw, DomainEvent)

    async def probe(self) -> bool:
        """Do PostgreSQL and the broker answer? Asked by the runtime's poison net before it blames
        a record. The broker's answer is the last produce's: PostgreSQL answering says nothing of a
        partition without a leader, and a broadcast was dead-lettered as ``poison`` for one."""
        if self._kafka_failing:
            return False
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
        except (ReusedEventId, CopyTooLarge, StaleBroadcast) as exc:
            return DeadLetter(exc.reason, type(exc).__name__, str(exc))
        except KafkaError as exc:
            raise DependencyUnavailable(f"fan-out of {event.event_id}: {exc}") from exc
        except PG_CALL_ERRORS as exc:
            if classify_pg_error(exc) == "record":  # values PostgreSQL refuses: retrying never helps
                return DeadLetter("invalid_event", type(exc).__name__, f"PostgreSQL refused: {exc}"[:1000])
            raise DependencyUnavailable(f"fan-out of {event.event_id}: {exc}") from exc
        return ()  # the copies are produced (and acknowledged) in fan_out

    async def fan_out(self, event: DomainEvent) -> int:
        """Produce every subscriber's copy not produced yet; returns how many this call produced.

        Holds the (tenant, event id) lock on a connection of its own for the whole fan-out; raises
        :class:`ReusedEventId` when the event id's cursor is another topic's, :class:`StaleBroadcast`
        for an old event without a cursor, :class:`CopyTooLarge` for a copy refused for its size."""
        assert event.topic is not None
        tenant = event.tenant or ""
        key = (_LOCK_CLASS, tenant, event.event_id)
        async with self.pool.acquire() as conn:
            try:
                # Polled, not pg_advisory_lock: a wait as long as another replica's fan-out must not
                # hit the pool's command timeout (an outage, then a poison verdict, for a wait).
                await conn.execute(_KEEPALIVE)
                tries = 0
                while not await conn.fetchval(_TRY_LOCK, *key):
                    if tries % 60 == 0:
                        log.info("fan-out of %s: another replica is at it; waiting", event.event_id)
                    tries += 1
                    await asyncio.sleep(LOCK_POLL_S)
                produced = await self._resume(conn, event, tenant)
                await conn.execute(_UNLOCK, *key)
                self._kafka_failing = False  # done: nothing the broker refused is left to replay
            except BaseException:
                # The pool does not reset a connection on its way back (consumers.infra.db): one
                # that may still hold the lock is closed, not returned, or the event's next
                # fan-out would wait on it for ever.
                conn.terminate()
                raise
        return produced

    async def _resume(self, conn: asyncpg.Connection, event: DomainEvent, tenant: str) -> int:
        """The fan-out under the lock: from the cursor to the last subscriber."""
        assert event.topic is not None
        row = await conn.fetchrow(_CURSOR, tenant, event.event_id)
        if row is None:
            if stale_without_cursor(event.occurred_at, datetime.now(UTC)):
                raise StaleBroadcast(
                    f"topic event {event.event_id!r} (tenant {tenant!r}) occurred at "
                    f"{event.occurred_at.isoformat()} and has no fan-out cursor: its broadcast may "
                    "have finished and its cursor been pruned; not sent to every subscriber again"
                )
            # DO UPDATE, not DO NOTHING, so that a row always comes back: one the janitor deleted
            # between a read and a write would otherwise leave nothing to read.
            row = await conn.fetchrow(_START, event.event_id, tenant, event.topic)
        if row["topic"] != event.topic:
            raise ReusedEventId(
                f"event id {event.event_id!r} was already broadcast to topic {row['topic']!r} "
                f"(tenant {tenant!r}); this event names topic {event.topic!r}: "
                "a broadcast needs an event id of its own"
            )
        if row["finished_at"] is not None:
            return 0  # a replay of a finished broadcast
        after, produced = row["after_user"], 0
        while ids := [r["user_id"] for r in await conn.fetch(_PAGE, tenant, event.topic, after, self.chunk)]:
            await self._produce(event, ids)
            after = ids[-1]
            await conn.execute(_ADVANCE, tenant, event.event_id, after, len(ids))
            produced += len(ids)
        await conn.execute(
            "UPDATE herald_fanout_cursors SET finished_at = now() WHERE tenant = $1 AND event_id = $2",
            tenant,
            event.event_id,
        )
        BROADCASTS.inc()
        log.info("fanned out %s to topic %r: %d copies", event.event_id, event.topic, produced)
        return produced

    async def _produce(self, event: DomainEvent, user_ids: list[str]) -> None:
        sends = []
        try:
            for uid in user_ids:
                copy = copy_for(event, uid)
                sends.append(
                    await self.producer.send(self.out_topic, self.codec.encode(copy), key=uid.encode())
                )
            await asyncio.gather(*sends)
        except MessageSizeTooLargeError as exc:
            # Refused for its size (a topic's max.message.bytes below the input limit plus the
            # copy's user id): the record's fault, never an outage that a replay would cure.
            raise CopyTooLarge(
                f"a copy of {event.event_id} is too large for {self.out_topic}: {exc}"
            ) from exc
        except KafkaError:
            self._kafka_failing = True
            raise
        self._kafka_failing = False
        COPIES.inc(len(user_ids))
