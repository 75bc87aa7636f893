"""The previous batch's acks and commit, running while the next batch is handled.

Every wait here is bounded, because the batch lock and the revocation callback wait on it: a commit
that does not complete within ``commit_timeout_s`` (aiokafka retries a commit for as long as the
coordinator is unknown, moving or loading the group) is abandoned like one the group refused
(``CommitFailedError``): the batch's outputs are acknowledged, so whoever owns the partition next
replays it from the last commit and the idempotency keys absorb the repeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from consumers.runtime import metrics
from consumers.runtime.handling import Output

__all__ = ["InFlight", "commit_offsets"]

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


class InFlight:
    """At most one batch whose outputs are being acknowledged and whose offsets are then committed."""

    def __init__(self, consumer: AIOKafkaConsumer, name: str, commit_timeout_s: float) -> None:
        self.consumer = consumer
        self.name = name
        self.commit_timeout_s = commit_timeout_s
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

    def describe(self) -> str:
        stage = self._stage
        if stage is None:
            return "none"
        return f"{stage[0]} {time.monotonic() - stage[1]:.1f}s ({len(self.batch)} records)"

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
            owned = commit_offsets(batch, self.consumer.assignment())
            if owned:
                self._stage = ("commit", time.monotonic())
                await self._commit(owned)  # ... before the offsets move
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
