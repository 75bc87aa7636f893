"""Kafka clients configured from settings, and idempotent topic creation."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from consumers.infra.settings import HeraldSettings
from schemas.errors import DependencyUnavailable

__all__ = ["KafkaUnavailable", "create_topics", "make_producer"]

log = logging.getLogger(__name__)


class KafkaUnavailable(DependencyUnavailable):
    """The broker could not be reached (an expected failure: reported without a traceback)."""


def make_producer(settings: HeraldSettings) -> AIOKafkaProducer:
    # acks=all and no idempotent producer (tansu does not support InitProducerId); duplicates
    # from producer retries are absorbed downstream by idempotency keys.
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        linger_ms=settings.runtime.linger_ms,
        max_batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
        request_timeout_ms=30_000,
    )


async def create_topics(
    settings: HeraldSettings, topics: list[str], partitions: int | None = None
) -> list[str]:
    """Create the topics that do not exist yet; return the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10_000)
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        raise KafkaUnavailable(
            f"Kafka is not reachable at {settings.kafka_bootstrap_servers} (set KAFKA_BOOTSTRAP_SERVERS): {exc}"
        ) from exc
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if missing:
            new = [
                NewTopic(t, partitions or settings.partitions, settings.replication_factor) for t in missing
            ]
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:  # another process raced us: fine
                pass
            log.info("created topics %s", missing)
        return missing
    finally:
        await admin.close()
