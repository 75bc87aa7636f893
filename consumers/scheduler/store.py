"""Durable timers in PostgreSQL: the only way Herald waits.

A consumer never sleeps on a message. A deferred send, a retry, an escalation check or a
digest is a row in ``herald_timers`` (``due_at``), armed idempotently by key within its
namespace (the deployment's topic prefix: a poller releases only its own deployment's timers). The
:class:`TimerPoller` releases due rows with ``FOR UPDATE SKIP LOCKED`` (many pollers can
run side by side), hands each to the handler of its kind, produces what the handler
returns, waits for the broker's acks and only then marks the rows fired and commits. A
crash between produce and commit re-fires the row: the outputs carry idempotency keys.

Each timer fires inside a savepoint of the batch's transaction. A fire handler that fails on the
timer's own data (a :class:`~schemas.errors.RecordError`, a PostgreSQL data error, a bug: anything
but an outage) rolls back that timer's work only; the row is marked ``failed`` with its error in
``last_error`` (``herald_timers_failed_total``) and the rest of the batch is released. An outage
(PostgreSQL, Kafka, :class:`~schemas.errors.DependencyUnavailable`) fails the whole batch, which
is retried after a backoff: the rows stay pending.

A kind with a batch handler (:data:`FireBatchHandler`, the presets' workflow steps) fires all its
rows of a poll together, in one savepoint. If that fails on data, the savepoint is rolled back, its
:data:`BatchLock` retakes what it locked and they fire one by one as above (the bad one set aside).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram

from channels.storage_errors import PG_CALL_ERRORS, PG_ERRORS, PG_OUTAGES, classify_pg_error
from consumers.infra.backoff import backoff
from consumers.infra.clock import Clock, SystemClock
from consumers.infra.settings import SchedulerSettings
from consumers.runtime.handling import Output
from consumers.runtime.produce import produce_all
from consumers.scheduler.batching import batches, in_row_order
from consumers.scheduler.timer import (
    BatchLock,
    FireBatchHandler,
    FireHandler,
    Timer,
    publish_timer,
    read_timer,
    timer_of,
)
from schemas.errors import DependencyUnavailable

__all__ = [
    "FireBatchHandler",
    "FireHandler",
    "Scheduler",
    "Timer",
    "TimerPoller",
    "is_outage",
    "publish_timer",
]

log = logging.getLogger(__name__)

TIMERS_FIRED = Counter("herald_timers_fired_total", "Timers released by the scheduler.", ["kind"])
TIMERS_FAILED = Counter(
    "herald_timers_failed_total",
    "Timers set aside as failed: their fire handler failed on their data (not an outage).",
    ["kind"],
)
TIMER_BATCHES_UNDONE = Counter(
    "herald_timer_batches_undone_total",
    "Batches of timers fired together that failed on data, were undone and fired one by one.",
    ["kind"],
)
TIMERS_ARMED = Counter("herald_timers_armed_total", "Timers armed (duplicates by key not counted).", ["kind"])
TIMER_LATENESS = Histogram(
    "herald_timer_lateness_seconds",
    "Delay between a timer's due time and its release.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
TIMER_BACKLOG = Gauge("herald_timers_pending", "Timers armed and not yet fired or cancelled.")
TIMERS_DUE = Gauge("herald_timers_due", "Timers past their due time, not yet released.")


def is_outage(exc: BaseException) -> bool:
    """Whether a fire handler's error is the servers' fault (retry the batch), not the timer's. Pure."""
    if isinstance(exc, PG_CALL_ERRORS) and classify_pg_error(exc) == "record":
        return False  # first: asyncpg's DataError (a value it cannot encode) is an InterfaceError
    if isinstance(exc, (DependencyUnavailable, KafkaError, *PG_OUTAGES)):
        return True
    return isinstance(exc, asyncpg.PostgresError) and classify_pg_error(exc) == "dependency"


async def _publish(timer: Timer, _: asyncpg.Connection) -> Sequence[Output]:
    if timer.topic is None or timer.payload is None:
        raise ValueError(f"publish timer {timer.key} has no topic or payload")
    return [Output(timer.topic, timer.payload, timer.msg_key)]


_INSERT = """
INSERT INTO herald_timers (namespace, key, kind, due_at, topic, msg_key, payload, data)
SELECT $8, * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::bytea[], $6::bytea[], $7::jsonb[])
ON CONFLICT (namespace, key) DO NOTHING
RETURNING key, kind
"""


_SAVEPOINT = "herald_timer"

# A batch holds its timers' rows, and the rows its handlers locked (a digest, a workflow), from its
# SELECT to its commit, broker acks included: one that takes this long is logged with where the
# time went, so a stall that ends in a retry or a commit is never silent.
SLOW_BATCH_S = 5.0


class Scheduler:
    """Arms and cancels the timers of one namespace (the deployment's topic prefix)."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock | None = None, *, namespace: str) -> None:
        self.pool = pool
        self.clock = clock or SystemClock()
        self.namespace = namespace

    async def arm(self, timers: Sequence[Timer], conn: asyncpg.Connection | None = None) -> int:
        """Arm timers; a key already armed (or fired) is left alone. Returns how many were new."""
        return len(await self.arm_new(timers, conn))

    async def arm_new(self, timers: Sequence[Timer], conn: asyncpg.Connection | None = None) -> set[str]:
        """:meth:`arm` in one statement, whatever their number; the keys that were new."""
        if not timers:
            return set()
        args = (
            [t.key for t in timers],
            [t.kind for t in timers],
            [t.due_at for t in timers],
            [t.topic for t in timers],
            [t.msg_key for t in timers],
            [t.payload for t in timers],
            [json.dumps(dict(t.data)) for t in timers],
            self.namespace,
        )
        if conn is None:
            async with self.pool.acquire() as c:
                rows = await c.fetch(_INSERT, *args)
        else:
            rows = await conn.fetch(_INSERT, *args)
        for row in rows:
            TIMERS_ARMED.labels(row["kind"]).inc()
        return {row["key"] for row in rows}

    async def cancel(
        self, key: str, conn: asyncpg.Connection | None = None, *, unless_firing: bool = False
    ) -> bool:
        """Cancel a pending timer. ``unless_firing``: leave it if a poller holds it (it is firing):
        waiting for it while holding a row its fire locks next would deadlock, and a fire that
        re-checks what the cancel was for (a state row's step) finds nothing to do."""
        sql = (
            "UPDATE herald_timers SET state = 'cancelled' "
            "WHERE namespace = $2 AND key = $1 AND state = 'pending'"
        )
        if unless_firing:
            sql = (
                "UPDATE herald_timers SET state = 'cancelled' WHERE id = (SELECT id FROM herald_timers "
                "WHERE namespace = $2 AND key = $1 AND state = 'pending' FOR UPDATE SKIP LOCKED)"
            )
        if conn is None:
            result = await self.pool.execute(sql, key, self.namespace)
        else:
            result = await conn.execute(sql, key, self.namespace)
        return bool(result.endswith(" 1"))

    async def state(self, key: str) -> str | None:
        value = await self.pool.fetchval(
            "SELECT state FROM herald_timers WHERE namespace = $2 AND key = $1", key, self.namespace
        )
        return None if value is None else str(value)


class TimerPoller:
    """Releases due timers. Safe to run in several processes at once."""

    def __init__(
        self,
        scheduler: Scheduler,
        producer: AIOKafkaProducer,
        settings: SchedulerSettings,
        handlers: Mapping[str, FireHandler] | None = None,
        *,
        batch_handlers: Mapping[str, FireBatchHandler] | None = None,
        batch_locks: Mapping[str, BatchLock] | None = None,
        slow_batch_s: float = SLOW_BATCH_S,
    ) -> None:
        self.scheduler = scheduler
        self.slow_batch_s = slow_batch_s
        self.producer = producer
        self.settings = settings
        self.handlers: dict[str, FireHandler] = {"publish": _publish, **(handlers or {})}
        # only for kinds that also fire one by one: what a failed batch falls back to
        self.batch_handlers = {k: h for k, h in (batch_handlers or {}).items() if k in self.handlers}
        self.batch_locks = dict(batch_locks or {})
        # Kinds whose handler never touches the connection: a failure has nothing to undo, so they
        # fire without a savepoint (a round trip each; the scheduler fires nothing else).
        self._no_writes = {"publish"} if self.handlers["publish"] is _publish else set()
        self._idle = True  # the last batch found nothing: look before opening a transaction

    async def _any_due(self, now: datetime) -> bool:
        """One statement, no transaction: an idle poller asks this ten times a second, where a
        batch's transaction would cost three round trips (BEGIN, SELECT … FOR UPDATE, COMMIT)."""
        return bool(
            await self.scheduler.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM herald_timers WHERE namespace = $3 AND state = 'pending' "
                "AND due_at <= $1 AND kind = ANY($2::text[]))",
                now,
                list(self.handlers),
                self.scheduler.namespace,
            )
        )

    async def release_due(self) -> int:
        """Release one batch of due timers; return how many were released (fired, or set aside as
        failed: a batch of failing timers still counts, so a drain loop moves on to the next)."""
        now = self.scheduler.clock.now()
        if self._idle and not await self._any_due(now):
            return 0
        async with self.scheduler.pool.acquire() as conn:
            started = time.monotonic()  # rows are held from here: the wait for a connection is not theirs
            try:
                async with conn.transaction():
                    rows = await conn.fetch(
                        "SELECT id, key, kind, due_at, topic, msg_key, payload, data FROM herald_timers "
                        "WHERE namespace = $4 AND state = 'pending' AND due_at <= $1 AND kind = ANY($3::text[]) "
                        "ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                        now,
                        self.settings.batch_size,
                        list(self.handlers),  # a poller only takes the kinds it can fire
                        self.scheduler.namespace,
                    )
                    self._idle = not rows
                    if not rows:
                        return 0
                    results, failed = await self._fire_rows(conn, rows)
                    outputs = in_row_order(results)
                    fired = [rows[i] for i in sorted(results)]
                    fired_at = time.monotonic()
                    # acknowledged by the broker before rows are marked fired
                    await produce_all(self.producer, outputs)
                    acked_at = time.monotonic()
                    ids = [r["id"] for r in fired]
                    await conn.execute(
                        "UPDATE herald_timers SET state = 'fired', fired_at = $2 WHERE id = ANY($1::bigint[])",
                        ids,
                        now,
                    )
            except BaseException:
                if (took := time.monotonic() - started) >= self.slow_batch_s:
                    log.warning(
                        "scheduler: a batch held its rows %.1fs and failed; nothing was marked fired, "
                        "its timers are tried again",
                        took,
                    )
                raise
        if (took := time.monotonic() - started) >= self.slow_batch_s:
            log.warning(
                "scheduler: a batch of %d timers (%s) held its rows %.1fs: select and handlers %.1fs, "
                "broker acks of %d records %.1fs, marking and commit %.1fs",
                len(rows),
                ", ".join(sorted({r["kind"] for r in rows})),
                took,
                fired_at - started,
                len(outputs),
                acked_at - fired_at,
                started + took - acked_at,
            )
        # counted once the transaction committed: a rolled-back batch is tried again, not failed
        for kind in failed:
            TIMERS_FAILED.labels(kind).inc()
        released_at = self.scheduler.clock.now()
        for row in fired:
            TIMERS_FIRED.labels(row["kind"]).inc()
            TIMER_LATENESS.labels(row["kind"]).observe(
                max(0.0, (released_at - row["due_at"]).total_seconds())
            )
        return len(rows)

    async def _fire_rows(
        self, conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]
    ) -> tuple[dict[int, Sequence[Output]], list[str]]:
        """Fire the rows: the outputs of those that fired, by row index, and the kinds of those set aside.

        Each batch, and each timer that writes and is not in one, fires in a savepoint of its own,
        so a failing one undoes only its own work: one round trip each (release the last one's,
        set its own)."""
        results: dict[int, Sequence[Output]] = {}
        failed: list[str] = []
        saving = False
        timers = [timer_of(r) if r["kind"] in self.batch_handlers else None for r in rows]
        for kind, indices in batches([t.kind if t else None for t in timers], self.batch_handlers).items():
            released = f"RELEASE SAVEPOINT {_SAVEPOINT}; " if saving else ""
            await conn.execute(f"{released}SAVEPOINT {_SAVEPOINT}")
            saving = True
            batch = {i: t for i in indices if (t := timers[i]) is not None}
            done = await self._fire_batch(conn, kind, list(batch.values()))
            results.update({i: done[t.key] for i, t in batch.items() if t.key in done})
        for i, row in enumerate(rows):
            if i in results:
                continue
            writes = row["kind"] not in self._no_writes
            if writes:
                released = f"RELEASE SAVEPOINT {_SAVEPOINT}; " if saving else ""
                await conn.execute(f"{released}SAVEPOINT {_SAVEPOINT}")
                saving = True
            out = await self._fire(conn, row, rollback=writes)
            if out is not None:
                results[i] = out
            else:
                failed.append(row["kind"])
        return results, failed

    async def _fire_batch(
        self, conn: asyncpg.Connection, kind: str, timers: Sequence[Timer]
    ) -> Mapping[str, Sequence[Output]]:
        """The batch's outputs by timer key; nothing when it failed on data (undone: they fire one by one)."""
        try:
            return await self.batch_handlers[kind](timers, conn)
        except Exception as exc:
            if is_outage(exc):
                raise
            await conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            if (relock := self.batch_locks.get(kind)) is not None:  # before anything fires one by one
                await relock(timers, conn)
            TIMER_BATCHES_UNDONE.labels(kind).inc()
            log.warning(
                "scheduler: a batch of %d %s timers failed (%s: %s); firing them one by one",
                len(timers),
                kind,
                type(exc).__name__,
                exc,
            )
            return {}

    async def _fire(
        self, conn: asyncpg.Connection, row: asyncpg.Record, *, rollback: bool
    ) -> Sequence[Output] | None:
        """The timer's outputs, or None when it failed on its own data (then marked ``failed``).
        With ``rollback``, it runs in the savepoint :meth:`release_due` set for it."""
        try:
            timer = read_timer(row)
            return await self.handlers[timer.kind](timer, conn)
        except Exception as exc:
            if is_outage(exc):
                raise  # the whole batch backs off and is tried again
            if rollback:
                await conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")  # undo only this timer's work
            error = f"{type(exc).__name__}: {exc}"[:1000].replace("\x00", "\ufffd")
            log.error("scheduler: timer %s (%s) failed, set aside: %s", row["key"], row["kind"], error)
            await conn.execute(
                "UPDATE herald_timers SET state = 'failed', fired_at = $2, last_error = $3 WHERE id = $1",
                row["id"],
                self.scheduler.clock.now(),
                error.encode("utf-8", "replace").decode("utf-8"),
            )
            return None

    async def observe_backlog(self) -> None:
        row = await self.scheduler.pool.fetchrow(
            "SELECT count(*) AS pending, count(*) FILTER (WHERE due_at <= $1) AS due FROM herald_timers "
            "WHERE namespace = $2 AND state = 'pending'",
            self.scheduler.clock.now(),
            self.scheduler.namespace,
        )
        if row is not None:
            TIMER_BACKLOG.set(row["pending"])
            TIMERS_DUE.set(row["due"])

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll until ``stopping`` is set; an outage (PostgreSQL, Kafka) backs off and recovers by itself."""
        polls = failures = 0
        while not stopping.is_set():
            wait = self.settings.poll_interval_s
            try:
                fired = await self.release_due()
                polls += 1
                if polls % 20 == 1:
                    await self.observe_backlog()
                failures = 0
            except (*PG_ERRORS, KafkaError, DependencyUnavailable) as exc:
                failures += 1
                wait = backoff(failures, base=wait, cap=5.0, jitter=0.2, rand=random.random())
                log.warning("scheduler: dependency unavailable (%s); retrying in %.1fs", exc, wait)
                fired = 0
            if fired < self.settings.batch_size:
                try:
                    await asyncio.wait_for(stopping.wait(), timeout=wait)
                except TimeoutError:
                    pass
