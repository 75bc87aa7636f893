"""Where a critical message's end-to-end latency goes, hop by hop, from Kafka record timestamps.

For each critical ``sent`` outcome (tagged by the event's ``device`` field, as bench.isolation):

* **emit**: event ``occurred_at`` → its herald.events record's timestamp (the emitter's producer),
* **classify**: that timestamp → the channel message's record timestamp on the priority topic
  (the classifier's fetch, handling and produce),
* **deliver**: that timestamp → the outcome's ``recorded_at`` (the channel consumer's fetch and
  handling up to the provider call).

Record timestamps are the producers' create times (client clocks, all on this machine).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.infra.settings import HeraldSettings
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, DomainEvent, Lane

__all__ = ["HOPS", "hop_latencies", "read_topic"]

HOPS = ("emit", "classify", "deliver")
CRITICAL_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.PUSH)


async def read_topic(settings: HeraldSettings, topic: str, each: Callable[[int, bytes], None]) -> None:
    """Call ``each(timestamp_ms, value)`` for every record of ``topic`` up to its current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        left = {tp for tp in tps if end[tp] > 0}
        while left:
            batch = await consumer.getmany(*left, timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                for r in records:
                    each(r.timestamp, r.value)
                if records and records[-1].offset + 1 >= end[tp]:
                    left.discard(tp)
            if not batch:  # nothing more within a second: the end offsets were all read
                break
    finally:
        await consumer.stop()


def _ms(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() * 1000


async def hop_latencies(
    settings: HeraldSettings, outcomes: list[DeliveryOutcome]
) -> dict[str, dict[str, list[float]]]:
    """Per tag, per hop: the latencies (ms) of these critical ``sent`` outcomes (whose event and
    channel message are found)."""
    topics = Topics(settings.topic_prefix)
    codec = default_codec()
    event_ts: dict[str, int] = {}
    message_ts: dict[str, int] = {}

    def on_event(ts: int, raw: bytes) -> None:
        event_ts[codec.decode(raw, DomainEvent).event_id] = ts

    def on_message(ts: int, raw: bytes) -> None:
        message_ts[codec.decode(raw, ChannelMessage).idempotency_key] = ts

    await read_topic(settings, topics.events, on_event)
    for channel in CRITICAL_CHANNELS:
        await read_topic(settings, topics.channel(channel, Lane.PRIORITY), on_message)
    out: dict[str, dict[str, list[float]]] = {}
    for o in outcomes:
        assert o.message is not None
        t_event = event_ts.get(o.event_id)
        t_message = message_ts.get(o.message.idempotency_key)
        if t_event is None or t_message is None:
            continue
        produced = datetime.fromtimestamp(t_event / 1000, o.occurred_at.tzinfo)
        classified = datetime.fromtimestamp(t_message / 1000, o.occurred_at.tzinfo)
        hops = out.setdefault(o.message.data().get("device", "?"), {h: [] for h in HOPS})
        hops["emit"].append(_ms(o.occurred_at, produced))
        hops["classify"].append(_ms(produced, classified))
        hops["deliver"].append(_ms(classified, o.recorded_at))
    return out
