"""The previous batch's acks and commit, running while the next batch is handled.

Every wait here is bounded, because the batch lock and the revocation callback wait on it: a commit
that does not complete within ``commit_timeout_s`` (aiokafka retries a commit for as long as the
coordinator is unknown, moving or loading the group) is abandoned like one the group refused
(``CommitFailedError``): the batch's outputs are acknowledged, so whoever owns the partition next
replays it from the last commit and the idempotency keys absorb the repeat.

Commits are coalesced: a batch whose acks arrive within ``commit_interval_s`` of the last commit
leaves its offsets pending, and the next batch's commit (or :meth:`InFlight.flush`, which the runner
calls on an empty poll, on a revocation and at shutdown) carries them. A lightly loaded consumer
otherwise sends one OffsetCommit per record, a broker round trip as costly as the produce itself.
Pending offsets are always acknowledged ones, so a crash replays at most that window more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from consumers.runtime import metrics
from consumers.runtime.handling import Output

__all__ = ["InFlight", "commit_due", "commit_offsets", "merge_offsets"]

log = logging.getLogger(__name__)

Batch = list[ConsumerRecord[bytes, bytes]]


def commit_offsets(batch: Batch, owned: set[TopicPartition]) -> dict[TopicPartition, int]:
    """The offsets that commit ``batch``: one past its last record, per partition still owned."""
    offsets: dict[TopicPartition, int] = {}
    for raw in batch:
        tp = TopicPartition(raw.topic, raw.partition)
        if tp in owned:
            offsets[tp] = max(offsets.get(tp, 0), raw.offset + 1)
    return offsets


def merge_offsets(pending: dict[TopicPartition, int], new: dict[TopicPartition, int]) -> None:
    """Fold ``new`` into ``pending``, keeping the furthest offset per partition (batches commit in
    order, so the later one is the further one; max() keeps a replay from moving it back)."""
    for tp, offset in new.items():
        pending[tp] = max(pending.get(tp, 0), offset)


def commit_due(now: float, last: float | None, interval_s: float) -> bool:
    """Whether pending offsets go to the broker now: never committed yet, or ``interval_s`` since
    the last commit (0 commits every batch)."""
    return last is None or now - last >= interval_s


class InFlight:
    """At most one batch whose outputs are being acknowledged and whose offsets are then committed."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        name: str,
        commit_timeout_s: float,
        commit_interval_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.name = name
        self.commit_timeout_s = commit_timeout_s
        self.commit_interval_s = commit_interval_s
        self.clock = clock
        self.pending: dict[TopicPartition, int] = {}  # acknowledged, not yet committed
        self._last_commit: float | None = None
        self.batch: Batch = []
        self._task: asyncio.Task[None] | None = None
        self._stage: tuple[str, float] | None = None  # ("acks" | "commit", time.monotonic())

    def start(self, batch: Batch, records: list[Output], acks: list[asyncio.Future[Any]]) -> None:
        """Wait for ``acks``, then commit ``batch``, in the background (the caller settled the last)."""
        self.batch = batch
        self._task = asyncio.create_task(
            self._ack_and_commit(batch, records, acks), name=f"commit:{self.name}"
        )

    def abandon(self) -> Batch:
        """Forget the batch in flight (its acks failed or will: it is replayed); returns it."""
        batch, self.batch, self._task = self.batch, [], None
        return batch

    async def settle(self) -> None:
        """Wait for the batch in flight to be acknowledged and committed (raises its KafkaError).

        The wait is shielded: a caller that gives up (a bounded revocation) leaves the task to finish
        or time out by itself rather than cancelling the producer's ack futures under it."""
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.shield(task)
            finally:
                self.batch = []

    async def flush(self, *, force: bool) -> None:
        """Commit the pending offsets: all of them with ``force`` (revocation, shutdown), else only
        once ``commit_interval_s`` has passed. Call after :meth:`settle` (commits stay in order)."""
        if self.pending and (force or commit_due(self.clock(), self._last_commit, self.commit_interval_s)):
            await self._commit_pending()

    def describe(self) -> str:
        stage = self._stage
        if stage is None:
            return "none"
        return f"{stage[0]} {time.monotonic() - stage[1]:.1f}s ({len(self.batch)} records)"

    def describe_pending(self) -> dict[str, int]:
        return {f"{tp.topic}[{tp.partition}]": offset for tp, offset in sorted(self.pending.items())}

    async def _ack_and_commit(
        self, batch: Batch, records: list[Output], acks: list[asyncio.Future[Any]]
    ) -> None:
        self._stage = ("acks", time.monotonic())
        try:
            await asyncio.gather(*acks)  # every output acknowledged (acks=all) ...
            produced: dict[str, int] = {}
            for r in records:
                produced[r.topic] = produced.get(r.topic, 0) + 1
            for topic, n in produced.items():
                metrics.PRODUCED.labels(topic).inc(n)
            merge_offsets(self.pending, commit_offsets(batch, self.consumer.assignment()))
            if self.pending and commit_due(self.clock(), self._last_commit, self.commit_interval_s):
                await self._commit_pending()  # ... before the offsets move
        finally:
            self._stage = None

    async def _commit_pending(self) -> None:
        # Only partitions still owned: one revoked meanwhile is its new owner's to commit.
        owned = self.consumer.assignment()
        offsets = {tp: offset for tp, offset in self.pending.items() if tp in owned}
        self.pending = {}
        self._last_commit = self.clock()
        if offsets:
            self._stage = ("commit", time.monotonic())
            try:
                await self._commit(offsets)
            finally:
                self._stage = None

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await asyncio.wait_for(self.consumer.commit(offsets), self.commit_timeout_s)
        except CommitFailedError as exc:
            # The group rebalanced under us: the new owner replays; outputs are idempotent.
            metrics.COMMITS_ABANDONED.labels(self.name, "rebalance").inc()
            log.warning("%s: commit failed after rebalance (%s); batch will be replayed", self.name, exc)
        except TimeoutError:
            # Coordinator unknown, moving or loading the group, or the request stalled: nothing
            # moved, so the batch is replayed from the last commit, as after a rebalance.
            metrics.COMMITS_ABANDONED.labels(self.name, "timeout").inc()
            log.warning(
                "%s: commit not done within %.1fs; abandoned, batch will be replayed",
                self.name,
                self.commit_timeout_s,
            )
