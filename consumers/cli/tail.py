"""``herald tail <topic>``: decode Avro records and print them one JSON line each."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from contextlib import aclosing
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from consumers.infra.settings import HeraldSettings
from schemas.errors import ConfigurationError

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["format_record", "read_topic", "read_topics", "register"]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def format_record(value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> dict[str, Any]:
    """A record as a plain dict: the decoded Avro fields, or the DLQ reason and raw size."""
    from schemas.codec import DecodeError, default_codec

    out: dict[str, Any] = {}
    hdrs = {k: v.decode(errors="replace") for k, v in (headers or [])}
    if "herald-dlq-reason" in hdrs:
        out["dlq"] = {k.removeprefix("herald-"): v for k, v in hdrs.items() if k.startswith("herald-")}
    if value is None:
        out["value"] = None
        return out
    try:
        name, record = default_codec().decode_record(value)
    except DecodeError as exc:
        out["undecodable"] = {"reason": exc.reason, "bytes": len(value)}
        return out
    out["schema"] = name
    out.update(_plain(record))
    return out


async def read_topic(
    bootstrap: str, topic: str, *, follow: bool = False, limit: int | None = None, idle_s: float = 1.0
) -> Any:
    """Yield (partition, offset, key, value, headers) for every record, from the beginning."""
    records = read_topics(bootstrap, [topic], follow=follow, limit=limit, idle_s=idle_s, missing_ok=False)
    async with aclosing(records):  # the consumer stops when the caller stops reading
        async for _, partition, offset, key, value, headers in records:
            yield partition, offset, key, value, headers


async def read_topics(
    bootstrap: str,
    topics: list[str],
    *,
    follow: bool = False,
    limit: int | None = None,
    idle_s: float = 1.0,
    missing_ok: bool = True,
) -> Any:
    """Yield (topic, partition, offset, key, value, headers) for every record of the topics that
    exist, from the beginning; without ``follow``, stop at the end offsets seen at start."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaConnectionError

    from consumers.runtime.kafka import KafkaUnavailable

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        await consumer.stop()
        raise KafkaUnavailable(
            f"Kafka is not reachable at {bootstrap} (set KAFKA_BOOTSTRAP_SERVERS): {exc}"
        ) from exc
    try:
        tps = await _partitions(consumer, topics, missing_ok)
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        if not follow and all(end[tp] == 0 for tp in tps):
            return
        seen = 0
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            for tp, records in batch.items():
                for r in records:
                    yield tp.topic, tp.partition, r.offset, r.key, r.value, list(r.headers)
                    seen += 1
                    if limit is not None and seen >= limit:
                        return
            if not follow:
                positions = {tp: await consumer.position(tp) for tp in tps}
                if all(positions[tp] >= end[tp] for tp in tps):
                    return
    finally:
        await consumer.stop()


async def _partitions(
    consumer: AIOKafkaConsumer, topics: list[str], missing_ok: bool
) -> list[TopicPartition]:
    from aiokafka import TopicPartition

    tps: list[TopicPartition] = []
    for topic in topics:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            if missing_ok:
                continue
            raise ConfigurationError(f"topic {topic!r} does not exist")
        tps += [TopicPartition(topic, p) for p in sorted(partitions)]
    return tps


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tail", help="print a topic's records, Avro decoded, one JSON object per line")
    p.add_argument(
        "topic", help="full name, or a short one: events, outcomes, receipts, channel.email.priority"
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep waiting for new records")
    p.add_argument("-n", "--max", type=int, default=None, help="stop after this many records")
    p.set_defaults(func=tail)


def resolve_topic(settings: HeraldSettings, name: str) -> str:
    prefix = f"{settings.topic_prefix}."
    return name if name.startswith(prefix) else prefix + name


async def tail(settings: HeraldSettings, args: argparse.Namespace) -> int:
    topic = resolve_topic(settings, args.topic)
    try:
        async for partition, offset, key, value, headers in read_topic(
            settings.kafka_bootstrap_servers, topic, follow=args.follow, limit=args.max
        ):
            line = {
                "partition": partition,
                "offset": offset,
                "key": key.decode(errors="replace") if key else None,
                **format_record(value, headers),
            }
            sys.stdout.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            sys.stdout.flush()
    except asyncio.CancelledError:
        pass
    return 0
