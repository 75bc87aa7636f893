"""The live page's consumer lag: sampled every 15 s by the API process into a 15-minute window.

Lag per group is the sum over its partitions of (end offset - committed offset), read from the
broker (the groups it lists, the offsets each committed), so it needs no Prometheus and no other
process's cooperation. Which topics a group reads follows Herald's group names
(:func:`group_topics`); the admin client's OffsetFetch of a whole group is not used because some
Kafka-protocol brokers (tansu) answer it in a shape aiokafka cannot decode. Event and delivery
rates come from the activity store (:meth:`ActivityReader.rates`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from consumers.infra.clock import Clock
from consumers.runtime.topics import Topics

__all__ = ["LagSample", "LagSampler", "group_topics", "lag_by_group"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LagSample:
    at: datetime
    lag: dict[str, int]  # group → records behind


def lag_by_group(
    committed: dict[str, dict[TopicPartition, int]], ends: dict[TopicPartition, int]
) -> dict[str, int]:
    """Pure: records behind per group (a partition never committed counts from its end: unknown)."""
    return {
        group: sum(max(0, ends.get(tp, off) - off) for tp, off in offsets.items())
        for group, offsets in committed.items()
    }


def group_topics(group: str, topics: Topics) -> list[str]:
    """The topics a Herald consumer group reads, from its name (``herald-channel-email-priority``...);
    [] for a group that is not one of Herald's processes."""
    if group == "herald-classifier":
        return [topics.events]
    if group in ("herald-fallback", "herald-ledger"):
        return [topics.outcomes, topics.receipts]
    if group.startswith("herald-channel-"):
        channel, _, lane = group.removeprefix("herald-channel-").rpartition("-")
        try:
            return [topics.channel(channel, lane)]
        except ValueError:
            return []
    return []


class LagSampler:
    def __init__(
        self, bootstrap: str, prefix: str, clock: Clock, *, window_s: int = 900, every_s: float = 15.0
    ) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.clock = clock
        self.every_s = every_s
        self.samples: deque[LagSample] = deque(maxlen=max(2, int(window_s / every_s)))
        self.error: str | None = None

    async def sample(self) -> LagSample:
        topics = Topics(self.prefix)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        await admin.start()
        try:
            groups = sorted(str(g[0]) for g in await admin.list_consumer_groups())
        finally:
            await admin.close()
        reads = {g: group_topics(g, topics) for g in groups}
        reads = {g: t for g, t in reads.items() if t}
        probe = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await probe.start()
        try:
            await probe._client.force_metadata_update()
            parts = {t: sorted(probe.partitions_for_topic(t) or ()) for ts in reads.values() for t in ts}
            tps = [TopicPartition(t, p) for t, ps in parts.items() for p in ps]
            ends: dict[TopicPartition, int] = await probe.end_offsets(tps) if tps else {}
        finally:
            await probe.stop()
        committed = {
            g: await self._committed(g, [tp for tp in tps if tp.topic in ts]) for g, ts in reads.items()
        }
        return LagSample(self.clock.now(), lag_by_group(committed, ends))

    async def _committed(self, group: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()  # never subscribes: it does not join the group, it only asks
        try:
            out = {}
            for tp in tps:
                offset = await consumer.committed(tp)
                if offset is not None and offset >= 0:
                    out[tp] = offset
            return out
        finally:
            await consumer.stop()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                self.samples.append(await self.sample())
                self.error = None
            except (KafkaError, OSError, TimeoutError) as exc:  # the page says so; next round
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("console lag sampler: %s", self.error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.every_s)
