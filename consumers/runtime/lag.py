"""``herald_consumer_lag`` per owned partition, measured between batches from the consumer's own
fetch state (high watermark minus position): no broker round trip."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer

from consumers.runtime import metrics

__all__ = ["update_lag"]


async def update_lag(consumer: AIOKafkaConsumer, group_id: str) -> None:
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        position = await consumer.position(tp)
        metrics.CONSUMER_LAG.labels(group_id, tp.topic, str(tp.partition)).set(max(0, high - position))
