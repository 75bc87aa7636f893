"""What a consumer does when the group takes partitions away: finish and commit first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import ConsumerRebalanceListener, TopicPartition

from consumers.runtime import metrics

__all__ = ["RevocationListener"]


@dataclass
class RevocationListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets an in-flight batch finish and commit before partitions are handed to another member."""

    lock: asyncio.Lock
    group_id: str
    settle: Callable[[], Awaitable[None]]
    assigned: set[TopicPartition] = field(default_factory=set)
    generation: int = 0  # bumped at each revocation: a batch fetched before it is stale

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            await self.settle()  # the batch whose acks are in flight commits before we let go
            self.generation += 1
            self.assigned -= set(revoked)
            for tp in revoked:  # another member reports these now; a stale value would double count
                try:
                    metrics.CONSUMER_LAG.remove(self.group_id, tp.topic, str(tp.partition))
                except KeyError:
                    pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned |= set(assigned)
