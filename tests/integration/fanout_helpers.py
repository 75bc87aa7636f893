"""Helpers of the fan-out tests: a topic with subscribers, a broadcast, the copies produced."""

from __future__ import annotations

import asyncpg

from consumers.devstack import DevStack
from consumers.emitter import build_event, partition_key
from consumers.infra.settings import HeraldSettings
from consumers.runtime.handling import Incoming
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import DomainEvent
from tests.conftest import make_settings
from tests.kafka_helpers import read_all


async def subscribed_topic(pool: asyncpg.Pool, tenant: str, key: str, n: int) -> list[str]:
    users = [f"s{i:07d}" for i in range(n)]
    await pool.execute("INSERT INTO herald_topics (tenant, key) VALUES ($1, $2)", tenant, key)
    await pool.copy_records_to_table(
        "herald_topic_subscribers",
        records=[(tenant, key, u) for u in users],
        columns=["tenant", "topic", "user_id"],
    )
    return users


async def fanout_stack(stack: DevStack) -> tuple[HeraldSettings, Topics, str]:
    """Settings of a private topic prefix, its fan-out topic created, and a tenant of its own."""
    settings = make_settings(stack)
    topics = Topics(settings.topic_prefix)
    await create_topics(settings, [topics.fanout])
    return settings, topics, settings.topic_prefix


def broadcast_event(tenant: str | None, key: str) -> DomainEvent:
    event = build_event("marketing.weekly", user_id="-", tenant=tenant, data={"issue": 7})
    event.user_id, event.topic = "", key
    return event


def incoming(event: DomainEvent) -> Incoming[DomainEvent]:
    return Incoming("t", 0, 0, partition_key(event), event, (), 0)


async def copies_on(settings: HeraldSettings, topic: str) -> list[DomainEvent]:
    return [default_codec().decode(r.value, DomainEvent) for r in await read_all(settings, topic)]
