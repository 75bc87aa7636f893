"""A member left with no partitions while partitions go unread: rejoin the group.

A group can settle with partitions that no member owns: the leader's assignment left some out
(a buggy or mismatched assignor; a broker that accepts an assignment not covering every member,
as the embedded broker's build does), and nothing tells the members, whose heartbeats keep
succeeding. Kafka only rebalances when membership changes, so the group stays that way and
those partitions are never read.

A member that holds nothing can see it: some partition of its topics has records past its
committed offset, and that offset has not moved for ``after_s``. It then rejoins (unsubscribe,
subscribe), which makes the group rebalance. The same signs appear when the owner of a partition
is stuck, not gone (a long dependency outage): the rejoin is then a harmless rebalance, so it is
spaced by ``after_s`` too. :func:`should_rejoin` decides, without I/O; :class:`OrphanWatch` reads
the offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from consumers.runtime import metrics

__all__ = ["OrphanWatch", "Stalls", "should_rejoin"]

log = logging.getLogger(__name__)


@dataclass
class Stalls:
    """Since when each partition's committed offset has stood still with records past it."""

    since: dict[TopicPartition, float] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)

    def observe(
        self, now: float, committed: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
    ) -> None:
        for tp, end in ends.items():
            offset = committed.get(tp, 0)
            if end <= offset or self.committed.get(tp) != offset:
                self.since.pop(tp, None)  # caught up, or moving: nobody is missing it
            if end > offset:
                self.since.setdefault(tp, now)
            self.committed[tp] = offset

    def longest(self, now: float) -> float:
        """Seconds the longest-standing partition has been unread (0.0: none)."""
        return max((now - t for t in self.since.values()), default=0.0)


def should_rejoin(*, assigned: bool, stalled_s: float, since_last_rejoin_s: float, after_s: float) -> bool:
    """Rejoin when this member holds nothing and a partition has stood unread for ``after_s``,
    at most once every ``after_s``. ``after_s`` of 0 turns the check off."""
    if after_s <= 0 or assigned:
        return False
    return stalled_s >= after_s and since_last_rejoin_s >= after_s


class OrphanWatch:
    """Checks every ``interval_s`` while the member holds nothing; rejoins as :func:`should_rejoin` says."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        name: str,
        topics: Sequence[str],
        *,
        after_s: float,
        rejoin: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        self.consumer = consumer
        self.name = name
        self.topics = list(topics)
        self.after_s = after_s
        self.rejoin = rejoin
        self.clock = clock
        self.stalls = Stalls()
        self.last_rejoin = clock()

    async def run(self, stopping: asyncio.Event) -> None:
        interval = max(1.0, self.after_s / 4)
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), interval)
                return
            except TimeoutError:
                pass
            try:
                await self.check()
            except Exception:  # a bug here must not end the watch silently for the process's life
                log.exception("%s: orphan check failed; looking again in %.0fs", self.name, interval)

    async def check(self) -> bool:
        """One look; True when it rejoined."""
        if self.after_s <= 0 or self.consumer.assignment():
            self.stalls = Stalls()  # owning partitions: what others do is theirs to watch
            return False
        try:
            committed, ends = await self._offsets()
        except (KafkaError, OSError, TimeoutError) as exc:  # the broker is away: look again later
            log.debug("%s: orphan check skipped: %s", self.name, exc)
            return False
        now = self.clock()
        self.stalls.observe(now, committed, ends)
        stalled = self.stalls.longest(now)
        if not should_rejoin(
            assigned=bool(self.consumer.assignment()),
            stalled_s=stalled,
            since_last_rejoin_s=now - self.last_rejoin,
            after_s=self.after_s,
        ):
            return False
        log.warning(
            "%s: no partitions here while %d partition(s) went unread for %.0fs; rejoining the group",
            self.name,
            len(self.stalls.since),
            stalled,
        )
        metrics.GROUP_REJOINS.labels(self.name, "unread_partitions").inc()
        self.last_rejoin = now
        self.stalls = Stalls()
        self.rejoin()
        return True

    async def _offsets(self) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        tps = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]
        if not tps:
            return {}, {}
        ends: dict[TopicPartition, int] = await asyncio.wait_for(self.consumer.end_offsets(tps), 10)
        committed: dict[TopicPartition, int] = {}
        for tp in tps:
            offset = await asyncio.wait_for(self.consumer.committed(tp), 10)
            committed[tp] = offset or 0
        return committed, ends
