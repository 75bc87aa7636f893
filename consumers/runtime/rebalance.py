"""What a consumer does when the group takes partitions away: finish and commit first, within a bound.

aiokafka runs this callback inside its group coordination: until it returns, the member does not
rejoin and the whole group waits. So the wait is bounded (``settle_timeout_s``, below the rebalance
timeout aiokafka sends, which is the session timeout): past it the partitions are let go with the
batch in flight unsettled. That is safe: nothing is committed that was not acknowledged, so the
next owner replays from the last commit and the idempotency keys absorb the repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import ConsumerRebalanceListener, TopicPartition

from consumers.runtime import metrics
from consumers.runtime.settings import RuntimeSettings

__all__ = ["RevocationListener", "revoke_bound"]

log = logging.getLogger(__name__)


def revoke_bound(settings: RuntimeSettings) -> float:
    """How long a revocation waits for the batch in flight: ``revoke_settle_s``, and never more than
    80 % of the session timeout (the rebalance timeout aiokafka sends), so the member rejoins in time."""
    return min(settings.revoke_settle_s, 0.8 * settings.session_timeout_ms / 1000)


@dataclass
class RevocationListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets an in-flight batch finish and commit before partitions are handed to another member."""

    lock: asyncio.Lock
    group_id: str
    settle: Callable[[], Awaitable[None]]
    settle_timeout_s: float = 6.0
    assigned: set[TopicPartition] = field(default_factory=set)
    generation: int = 0  # bumped at each revocation: a batch fetched before it is stale
    revoking: asyncio.Event = field(default_factory=asyncio.Event)  # set while the callback runs

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.generation += 1  # whatever was fetched until now belongs to the old assignment
        self.revoking.set()  # a batch retrying a dependency outage under the lock gives it up
        try:
            await asyncio.wait_for(self._settle_locked(), self.settle_timeout_s)
        except TimeoutError:
            log.warning(
                "%s: the batch in flight did not settle within %.1fs of the revocation; letting the "
                "partitions go (the next owner replays it from the last commit)",
                self.group_id,
                self.settle_timeout_s,
            )
        finally:
            self.revoking.clear()
        self.assigned -= set(revoked)
        metrics.ASSIGNED_PARTITIONS.labels(self.group_id).set(len(self.assigned))
        for tp in revoked:  # another member reports these now; a stale value would double count
            try:
                metrics.CONSUMER_LAG.remove(self.group_id, tp.topic, str(tp.partition))
            except KeyError:
                pass

    async def _settle_locked(self) -> None:
        async with self.lock:
            await self.settle()  # the batch whose acks are in flight commits before we let go

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned |= set(assigned)
        metrics.ASSIGNED_PARTITIONS.labels(self.group_id).set(len(self.assigned))
