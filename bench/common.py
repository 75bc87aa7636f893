"""Shared benchmark plumbing: preloading events, timing a consumer until it has drained a topic."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.cost import Cost
from consumers.devstack import DevStack
from consumers.emitter import build_event
from consumers.infra.settings import HeraldSettings
from consumers.runtime.gc_tuning import tune_gc
from consumers.runtime.kafka import create_topics
from schemas.codec import default_codec

__all__ = [
    "MIX",
    "Timing",
    "count_records",
    "mixed_events",
    "preload",
    "sized",
    "stack_settings",
    "wait_drained",
]

# Event-type mix for throughput runs: mostly activity and marketing, like a real product.
MIX: list[tuple[str, float, dict[str, str]]] = [
    ("comment_reply", 0.35, {"author": "Ana", "post_title": "Release notes", "excerpt": "Looks great"}),
    ("mention", 0.15, {"author": "Bo", "context": "standup"}),
    (
        "marketing.weekly",
        0.25,
        {"headline": "New this week", "body": "...", "cta_url": "https://example.com"},
    ),
    ("tips.onboarding", 0.05, {"tip": "Use shortcuts"}),
    ("payment_receipt", 0.1, {"amount": "12.50", "currency": "EUR", "merchant": "Shop"}),
    ("login_code", 0.05, {"code": "123456"}),
    ("security_alert", 0.02, {"device": "Pixel", "ip": "203.0.113.9", "location": "Lisbon"}),
    ("system.invoice.paid", 0.03, {"invoice": "inv_1"}),
]


def sized(env: str, default: int, scale: float = 1.0) -> int:
    """A phase's size: ``env`` if set, else ``default``, times the run's ``--scale`` (at least 1)."""
    return max(1, round(int(os.environ.get(env, str(default))) * scale))


def stack_settings(stack: DevStack, prefix: str, **overrides: Any) -> HeraldSettings:
    """Settings for a standalone run (``python -m bench.<module>``) on ``stack``: its servers,
    4 partitions and topics under ``prefix`` plus the time in ms, so a rerun on the same stack
    (even within the second) starts empty."""
    return HeraldSettings(
        kafka_bootstrap_servers=stack.kafka,
        database_url=stack.database_url,
        redis_url=stack.redis_url,
        topic_prefix=f"{prefix}{int(time.time() * 1000) % 10**8}",
        partitions=4,
        **overrides,
    )


def mixed_events(
    n: int, users: int, seed: int = 7, occurred_at: datetime | None = None
) -> list[tuple[bytes, bytes]]:
    """``n`` encoded DomainEvents over ``users`` user ids (u0..), keyed by user id (occurring now,
    or all at ``occurred_at``: the same bytes every time)."""
    rnd = random.Random(seed)
    types = [m[0] for m in MIX]
    weights = [m[1] for m in MIX]
    data = {m[0]: m[2] for m in MIX}
    codec = default_codec()
    out = []
    for _ in range(n):
        t = rnd.choices(types, weights)[0]
        user = f"u{rnd.randrange(users)}"
        ev = build_event(
            t,
            user_id=user,
            data=data[t],
            event_id=str(uuid.UUID(int=rnd.getrandbits(128))),
            occurred_at=occurred_at,
        )
        out.append((user.encode(), codec.encode(ev)))
    return out


async def preload(
    settings: HeraldSettings, topic: str, records: list[tuple[bytes, bytes]], partitions: int | None = None
) -> None:
    await create_topics(settings, [topic], partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
    )
    await producer.start()
    try:
        futures = []
        for key, value in records:
            futures.append(await producer.send(topic, value, key=key))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def count_records(settings: HeraldSettings, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return 0
        end = await consumer.end_offsets(tps)
        begin = await consumer.beginning_offsets(tps)
        return sum(end[tp] - begin[tp] for tp in tps)
    finally:
        await consumer.stop()


@dataclass
class Timing:
    """A measured in-process run: wall seconds, records handled, and this process's CPU seconds."""

    seconds: float
    records: int
    cpu_s: float | None = None
    # Mean ms per batch in each step (consumers/runtime/steps.py); "handle > x" is inside handle.
    timeline: dict[str, float] = field(default_factory=dict)
    batches: int = 0

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def cost(self, process: str) -> Cost | None:
        return None if self.cpu_s is None else Cost(process, self.records, self.cpu_s, self.seconds)


async def wait_drained(
    settings: HeraldSettings,
    group: str,
    topic: str,
    total: int,
    *,
    timeout: float = 600,
    interval: float = 0.05,
    progress: Callable[[int], None] | None = None,
    first_seen: Callable[[], Awaitable[float | None]] | None = None,
) -> float:
    """Wait until ``group`` has committed ``total`` offsets on ``topic``; return the monotonic time it did.

    Every check asks the broker for each partition's commit: ``interval`` trades the end time's
    precision for the load the checks put on the broker being measured."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = 0
            for tp in tps:
                done += (await consumer.committed(tp)) or 0
            if progress:
                progress(done)
            if done >= total:
                return time.monotonic()
            await asyncio.sleep(interval)
        raise TimeoutError(f"{group} committed fewer than {total} on {topic} in {timeout}s")
    finally:
        await consumer.stop()


@contextlib.contextmanager
def process_gc() -> Iterator[None]:
    """The collector as ``herald run`` sets it (:func:`consumers.runtime.gc_tuning.tune_gc`),
    for this phase only: the raw baseline and the consumers run under it, later phases as before."""
    before = gc.get_threshold()
    tune_gc()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
