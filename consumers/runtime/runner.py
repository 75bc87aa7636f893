"""The consume → handle → produce → commit loop every Herald consumer runs on.

Guarantees (docs/architecture.md, "Invariants"):

* **At-least-once.** Offsets of a poll batch are committed only after every record the
  handler produced for it, and every dead letter, is acknowledged by the broker
  (``acks=all``). A crash anywhere before the commit replays the batch; outputs carry
  idempotency keys, so replays are harmless downstream. One batch's acks and commit run
  while the next batch is handled (commits stay in order), so the broker round trips
  do not idle the handler. Commits are coalesced (``commit_interval_ms``,
  :mod:`consumers.runtime.inflight`): pending offsets are always acknowledged ones, and are
  committed on an idle poll, on a revocation and at shutdown.
* **Per-key order.** Partitions are handled in offset order and outputs are produced in
  that order; a handler may run different keys concurrently but keeps one key sequential.
  The next batch is polled and decoded, and the handler's optional ``prepare`` started, while
  the current one waits (:mod:`consumers.runtime.ahead`); it is handled only after the current
  batch's outputs are enqueued.
* **Bad input is kept.** Undecodable bytes, oversized records and records the handler
  rejects go to ``<topic>.dlq`` with the reason, error class and source
  topic/partition/offset in headers, and the partition moves on.
* **Outages pause, they do not drop.** A :class:`DependencyUnavailable` (database or cache down)
  retries the batch with backoff; past ``handler_max_retries`` the consumer seeks back to
  its last commit, reports not-ready and keeps trying.
* **A record is never a reason to stop.** A batch that fails otherwise, or keeps failing with
  ``DependencyUnavailable`` past ``poison_after_retries`` tries while the dependency answers,
  is split until the failing record stands alone (:mod:`consumers.runtime.isolate`); that record
  is dead-lettered (``poison``, or the ``RecordError``'s reason) and the rest goes through.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from consumers.infra.backoff import backoff
from consumers.runtime import metrics
from consumers.runtime.ahead import Decoded, decode_batch
from consumers.runtime.ghost_leader import watch_leader
from consumers.runtime.handling import DeadLetter, Handler, Incoming, Output, Result, dead_letter_headers
from consumers.runtime.inflight import InFlight
from consumers.runtime.isolate import Probe, isolate
from consumers.runtime.lag import update_lag
from consumers.runtime.orphan import OrphanWatch
from consumers.runtime.produce import enqueue_all
from consumers.runtime.rebalance import RevocationListener, revoke_bound
from consumers.runtime.settings import RuntimeSettings
from consumers.runtime.steps import Steps
from consumers.runtime.topics import dlq
from schemas.errors import DependencyUnavailable

__all__ = ["Runner"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class Runner(Generic[T]):
    """Runs one handler over one consumer group until :meth:`stop`."""

    def __init__(
        self,
        handler: Handler[T],
        *,
        topics: Sequence[str],
        group_id: str,
        bootstrap_servers: str,
        producer: AIOKafkaProducer,
        settings: RuntimeSettings,
        consumer_factory: Callable[..., AIOKafkaConsumer] = AIOKafkaConsumer,
    ) -> None:
        self.handler = handler
        self.topics = list(topics)
        self.group_id = group_id
        self.settings = settings
        self.producer = producer
        self._lock = asyncio.Lock()
        self._listener = RevocationListener(
            self._lock, group_id, self._settle_or_rewind, settle_timeout_s=revoke_bound(settings)
        )
        self._stopping = asyncio.Event()
        self._ready = False
        self._batch_since: float | None = None  # time.monotonic() when the batch in hand was taken
        self.consumer = consumer_factory(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,  # tansu: a record waits up to half of it per hop
            fetch_max_bytes=settings.fetch_max_bytes,
            max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
        )
        self._inflight = InFlight(
            self.consumer, handler.name, settings.commit_timeout_s, settings.commit_interval_ms / 1000
        )
        self._rejoin = False  # set by the orphan watch; done by the loop between polls
        self._orphans = OrphanWatch(
            self.consumer,
            handler.name,
            self.topics,
            after_s=settings.orphan_rejoin_after_s,
            rejoin=self._request_rejoin,
            clock=time.monotonic,
        )
        self.steps = Steps()  # wall time per step of a batch (make bench prints the timeline)
        # Read at scrape time: a batch stuck on a slow dependency shows while it is stuck, not after.
        metrics.READY.labels(handler.name).set_function(lambda: 1.0 if self.ready else 0.0)
        metrics.BATCH_AGE.labels(handler.name).set_function(self.batch_age)
        self._handle_time = metrics.HANDLER_SECONDS.labels(handler.name)

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish the batch in flight, commit, leave the group and return."""
        self._stopping.set()

    @property
    def ready(self) -> bool:
        """Consuming normally: assigned, not paused, and not stuck in one batch (a slow dependency)."""
        return self._ready and self.batch_age() <= self.settings.stuck_batch_s

    def batch_age(self) -> float:
        """Seconds the batch in hand has been handled for (0.0 between batches)."""
        since = self._batch_since
        return 0.0 if since is None else time.monotonic() - since

    def describe(self) -> dict[str, object]:
        """Where this runner stands (``kill -USR1``, :mod:`consumers.runtime.taskdump`)."""
        coordinator = getattr(self.consumer, "_coordinator", None)
        return {
            "group": self.group_id,
            "assignment": sorted(f"{tp.topic}[{tp.partition}]" for tp in self.consumer.assignment()),
            "revocations": self._listener.generation,
            "group_generation": getattr(coordinator, "generation", None),
            "ready": self.ready,
            "batch_age_s": round(self.batch_age(), 1),
            "lock_held": self._lock.locked(),
            "in_flight": self._inflight.describe(),
            "uncommitted": self._inflight.describe_pending(),
            "revoking": self._listener.revoking.is_set(),
            "stopping": self.stopping,
        }

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _request_rejoin(self) -> None:
        self._rejoin = True

    async def run(self) -> None:
        await self.consumer.start()
        watch_leader(self.consumer, self.handler.name, session_timeout_ms=self.settings.session_timeout_ms)
        self.consumer.subscribe(self.topics, listener=self._listener)
        watch = asyncio.create_task(self._orphans.run(self._stopping), name=f"orphans:{self.handler.name}")
        ahead: asyncio.Task[Decoded[T]] | None = None  # the next batch, fetched while this one waits
        try:
            while not self._stopping.is_set():
                current = await ahead if ahead is not None else await self._fetch()
                ahead = None
                if current.generation != self._listener.generation:
                    continue  # fetched before a revocation: replayed from the commit by the owner
                if self._rejoin and not current.batch:  # holds nothing: leave and join again
                    self._rejoin = False
                    self.consumer.unsubscribe()
                    self.consumer.subscribe(self.topics, listener=self._listener)
                    continue
                if not current.batch:  # idle: commit what is pending once commit_interval_ms is up
                    async with self._lock:
                        await self._settle_or_rewind(flush=False)
                    self._set_ready(bool(self.consumer.assignment()))
                    continue
                ahead = asyncio.create_task(self._fetch())
                async with self._lock:
                    if current.generation != self._listener.generation:
                        continue  # revoked while we waited for the lock: stale as above
                    self._batch_since = time.monotonic()
                    try:
                        replayed = await self._process(current)
                    finally:
                        self._batch_since = None
                if replayed:  # those offsets come again, and so must the batch fetched after them
                    self._rewind([*replayed, *(await ahead).batch])
                    ahead = None
                self.steps.batches += 1
                await update_lag(self.consumer, self.group_id)
            async with self._lock:
                await self._settle_or_rewind()
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            if ahead is not None:  # fetched, never handled, never committed: nothing to undo
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)
            self._set_ready(False)
            await self.consumer.stop()  # leaves the group: partitions move at once

    async def _fetch(self) -> Decoded[T]:
        """Poll and decode; let the handler start what the batch will need (``prepare``)."""
        polled_at = time.perf_counter()
        fetched = await self.consumer.getmany(
            timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.max_batch
        )
        # An empty poll is idle time (no records yet, or joining the group), not a batch's wait.
        self.steps.add("poll" if fetched else "poll (empty)", time.perf_counter() - polled_at)
        # After the poll: what it returned belongs to the assignment of this moment (a join or a
        # rebalance may complete inside getmany).
        generation = self._listener.generation
        batch = [r for records in fetched.values() for r in records]
        with self.steps.step("decode"):
            decoded: Decoded[T] = decode_batch(
                self.handler, batch, self.settings.max_message_bytes, generation
            )
        prepare = getattr(self.handler, "prepare", None)
        if prepare is not None and decoded.incoming:
            prepare(decoded.incoming)  # starts lookups; never raises, handle() reports failures
        return decoded

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready

    # -- one batch ---------------------------------------------------------------------------
    async def _process(self, fetched: Decoded[T]) -> list[ConsumerRecord[bytes, bytes]]:
        """Handle one batch until its outputs are enqueued; the records rewound for a replay, if any."""
        batch = fetched.batch
        started = time.perf_counter()
        attempt = 0
        while True:
            try:
                # Past a few tries, look for a poison record instead of blaming the dependency.
                split = attempt >= self.settings.poison_after_retries
                await self._process_once(fetched if attempt == 0 else None, batch, split=split)
                self._set_ready(True)
                break
            except DependencyUnavailable as exc:
                if self._listener.revoking.is_set():
                    # Let the partitions go now (the lock is ours): nothing of this batch was
                    # produced or committed, so whoever owns them next replays it from the commit.
                    log.warning("%s: %s; batch left to the next owner (rebalance)", self.handler.name, exc)
                    return []
                attempt += 1
                metrics.HANDLER_RETRIES.labels(self.handler.name).inc()
                if attempt > self.settings.handler_max_retries:
                    # Give up on this poll: rewind to the last commit and poll again later.
                    log.error(
                        "%s: dependency still failing after %d tries (%s); pausing",
                        self.handler.name,
                        attempt - 1,
                        exc,
                    )
                    self._set_ready(False)
                    self._rewind(batch)
                    await self._sleep(self.settings.handler_retry_max_s)
                    return batch
                delay = backoff(
                    attempt,
                    base=self.settings.handler_retry_base_s,
                    cap=self.settings.handler_retry_max_s,
                    jitter=0.2,
                    rand=random.random(),
                )
                log.warning(
                    "%s: retryable failure (%s); retry %d in %.2fs", self.handler.name, exc, attempt, delay
                )
                await self._sleep(delay)
            except KafkaError as exc:
                # Produce failed or timed out: nothing is committed, so rewind and let it replay.
                log.error("%s: Kafka error while producing (%s); replaying batch", self.handler.name, exc)
                replayed = [*self._inflight.abandon(), *batch]
                self._rewind(replayed)
                await self._sleep(1.0)
                return replayed
        self._handle_time.observe(time.perf_counter() - started)
        return []

    async def _sleep(self, seconds: float) -> None:
        # Interruptible by stop() and by a revocation: neither waits for a backoff to run out.
        waits = [asyncio.ensure_future(e.wait()) for e in (self._stopping, self._listener.revoking)]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _rewind(self, batch: list[ConsumerRecord[bytes, bytes]]) -> None:
        first: dict[TopicPartition, int] = {}
        for r in batch:
            tp = TopicPartition(r.topic, r.partition)
            first[tp] = min(first.get(tp, r.offset), r.offset)
        for tp, offset in first.items():
            if tp in self.consumer.assignment():
                self.consumer.seek(tp, offset)

    async def _process_once(
        self, fetched: Decoded[T] | None, batch: list[ConsumerRecord[bytes, bytes]], *, split: bool = False
    ) -> None:
        """One try: ``fetched`` as decoded ahead on the first, decoded afresh on a retry."""
        if fetched is None:
            fetched = decode_batch(self.handler, batch, self.settings.max_message_bytes)
        results = list(fetched.results)
        with self.steps.step("handle"):
            handled = await self._handle(fetched.incoming, split=split)
        for i, result in zip(fetched.pending, handled, strict=True):
            results[i] = result
        await self._produce_and_schedule_commit(batch, [r for r in results if r is not None])

    async def _handle(self, decoded: list[Incoming[T]], *, split: bool) -> Sequence[Result]:
        if not decoded:
            return []
        try:
            results = await self.handler.handle(decoded)
        except DependencyUnavailable as exc:
            if not split:
                raise
            return await self._isolate(decoded, exc)
        except Exception as exc:
            log.exception("%s: batch handler failed; isolating the failing record", self.handler.name)
            return await self._isolate(decoded, exc)
        if len(results) != len(decoded):
            raise RuntimeError(
                f"{self.handler.name}: handler returned {len(results)} results for {len(decoded)}"
            )
        return results

    async def _isolate(self, decoded: list[Incoming[T]], exc: Exception) -> Sequence[Result]:
        started = time.perf_counter()
        probe: Probe | None = getattr(self.handler, "probe", None)
        results, calls = await isolate(self.handler.handle, decoded, exc, probe=probe)
        dead = sum(isinstance(r, DeadLetter) for r in results)
        log.warning(
            "%s: split a failing batch of %d in %d calls (%.2fs): %d record(s) dead-lettered",
            self.handler.name,
            len(decoded),
            calls,
            time.perf_counter() - started,
            dead,
        )
        return results

    async def _produce_and_schedule_commit(
        self, batch: list[ConsumerRecord[bytes, bytes]], results: list[Result]
    ) -> None:
        records: list[Output] = []
        for raw, result in zip(batch, results, strict=True):
            if isinstance(result, DeadLetter):
                headers = (
                    *raw.headers,
                    *dead_letter_headers(result, raw.topic, raw.partition, raw.offset, self.group_id),
                )
                records.append(
                    Output(dlq(raw.topic), raw.value if raw.value is not None else b"", raw.key, headers)
                )
                metrics.DLQ.labels(raw.topic, result.reason).inc()
                log.warning(
                    "%s: %s[%d]@%d → %s (%s: %s)",
                    self.handler.name,
                    raw.topic,
                    raw.partition,
                    raw.offset,
                    dlq(raw.topic),
                    result.reason,
                    result.detail[:200],
                )
            else:
                records.extend(result)
        # Hand this batch's outputs to the producer now, then wait for the previous batch's
        # acks and commit; this batch's acks and commit overlap the next batch's handling.
        # Commits stay in order, and each covers only records whose outputs were acknowledged.
        with self.steps.step("enqueue"):
            acks = await enqueue_all(self.producer, records)
        with self.steps.step("wait acks+commit"):
            await self._settle()
        self._inflight.start(batch, records, acks)

    async def _settle(self) -> None:
        """Wait for the batch in flight to be acknowledged and committed (raises its KafkaError)."""
        await self._inflight.settle()

    async def _settle_or_rewind(self, *, flush: bool = True) -> None:
        """:meth:`_settle`, then commit the pending offsets (all of them with ``flush``: revocation,
        shutdown); if the broker did not acknowledge, replay that batch instead of committing."""
        batch = self._inflight.batch
        try:
            await self._settle()
            await self._inflight.flush(force=flush)
        except KafkaError as exc:
            log.error("%s: Kafka error while producing (%s); replaying batch", self.handler.name, exc)
            self._rewind(batch)
