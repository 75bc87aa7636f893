"""Dead letters as an operator sees them: read one (headers, decoded body or hex), and replay one or
all that match back to their source topic, each replay audited in ``herald_dlq_audit``.

Counts come from the activity store (:mod:`consumers.ledger.queries`); the records themselves are
read from the .dlq topic, which stays the source of truth: nothing here depends on the ledger
having seen a record. A replayed record keeps its key, value and the headers it had before it was
dead-lettered, plus ``herald-replayed-from`` (``<dlq topic>:<partition>:<offset>``); the verdict
headers are dropped, so a record that fails again carries one fresh verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import KafkaUnavailable, make_producer
from schemas.codec import Codec, DecodeError, default_codec
from schemas.errors import ConfigurationError

__all__ = [
    "DeadLetterRecord",
    "ReplayResult",
    "audit_log",
    "describe",
    "read_dead_letters",
    "replay",
    "show",
]

_VERDICT_PREFIXES = ("herald-dlq-", "herald-source-", "herald-consumer-group", "herald-replayed-from")


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        found = None
        for key, raw in self.headers:
            if key == name:
                found = raw.decode("utf-8", "replace")  # the last verdict wins
        return found

    @property
    def reason(self) -> str:
        return self.header("herald-dlq-reason") or "unknown"

    @property
    def source_topic(self) -> str | None:
        return self.header("herald-source-topic")

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    def decoded(self, codec: Codec | None = None) -> tuple[str, dict[str, Any]] | None:
        """(schema name, fields) when the body is a record Herald can read; None otherwise."""
        if not self.value:
            return None
        try:
            return (codec or default_codec()).decode_record(self.value)
        except DecodeError:
            return None

    def replay_headers(self) -> list[tuple[str, bytes]]:
        kept = [(k, v) for k, v in self.headers if not k.startswith(_VERDICT_PREFIXES)]
        kept.append(("herald-replayed-from", f"{self.topic}:{self.partition}:{self.offset}".encode()))
        return kept


def describe(record: DeadLetterRecord) -> dict[str, Any]:
    """A dead letter as plain data: coordinates, headers, and the body decoded or as hex."""
    out: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "at": record.at.isoformat(timespec="milliseconds"),
        "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
        "reason": record.reason,
        "source_topic": record.source_topic,
        "headers": {k: v.decode("utf-8", "replace") for k, v in record.headers},
    }
    decoded = record.decoded()
    if decoded is not None:
        out["schema"], out["body"] = decoded[0], decoded[1]
    else:
        out["body_hex"] = (record.value or b"").hex()
    return out


async def _consumer(settings: HeraldSettings) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    try:
        await consumer.start()
    except KafkaConnectionError as exc:
        await consumer.stop()
        raise KafkaUnavailable(
            f"Kafka is not reachable at {settings.kafka_bootstrap_servers}: {exc}"
        ) from exc
    return consumer


def _record(r: Any) -> DeadLetterRecord:
    return DeadLetterRecord(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value, tuple(r.headers))


async def read_dead_letters(
    settings: HeraldSettings, topic: str, *, partition: int | None = None, offset: int | None = None
) -> AsyncGenerator[DeadLetterRecord, None]:
    """Every record of ``topic`` (or the one at ``partition``/``offset``), oldest first per partition."""
    consumer = await _consumer(settings)
    try:
        await consumer._client.force_metadata_update()
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        if not parts:
            raise ConfigurationError(f"topic {topic!r} does not exist")
        if partition is not None:
            parts = [p for p in parts if p == partition]
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            if offset is not None:
                consumer.seek(tp, offset)
            else:
                await consumer.seek_to_beginning(tp)
        stop_at = {tp: (min(offset + 1, end[tp]) if offset is not None else end[tp]) for tp in tps}
        while [tp for tp in tps if await consumer.position(tp) < stop_at[tp]]:
            batch = await consumer.getmany(*tps, timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    if r.offset < stop_at[tp]:
                        yield _record(r)
    finally:
        await consumer.stop()


async def show(settings: HeraldSettings, topic: str, partition: int, offset: int) -> DeadLetterRecord | None:
    async with contextlib.aclosing(
        read_dead_letters(settings, topic, partition=partition, offset=offset)
    ) as records:
        async for record in records:
            if record.offset == offset:
                return record
    return None


def _replayable(settings: HeraldSettings, record: DeadLetterRecord) -> bool:
    """Only back into a Herald topic: the source header is data, and data must not pick any topic."""
    source = record.source_topic or ""
    return (
        record.value is not None
        and source.startswith(f"{settings.topic_prefix}.")
        and not source.endswith(".dlq")
    )


@dataclass(frozen=True, slots=True)
class ReplayResult:
    replayed: list[DeadLetterRecord]
    skipped: int  # matched, but no Herald source topic to go back to (or no value)


async def replay(
    settings: HeraldSettings,
    pool: asyncpg.Pool,
    topic: str,
    match: Callable[[DeadLetterRecord], bool],
    *,
    actor: str,
    selector: str,
    partition: int | None = None,
    offset: int | None = None,
) -> ReplayResult:
    """Produce every matching dead letter back to its source topic (acks=all), then audit it."""
    if not actor.strip():
        raise ConfigurationError("a replay needs an actor (who asked for it)")
    chosen: list[DeadLetterRecord] = []
    skipped = 0
    async for record in read_dead_letters(settings, topic, partition=partition, offset=offset):
        if not match(record):
            continue
        if not _replayable(settings, record):
            skipped += 1
            continue
        chosen.append(record)
    if chosen:
        producer = make_producer(settings)
        await producer.start()
        try:
            acks = [
                await producer.send(r.source_topic or "", r.value, key=r.key, headers=r.replay_headers())
                for r in chosen
            ]
            await asyncio.gather(*acks)
        finally:
            await producer.stop()
    targets = sorted({r.source_topic or "" for r in chosen}) or ["-"]
    await pool.execute(
        "INSERT INTO herald_dlq_audit (actor, action, dlq_topic, target_topic, selector, records) "
        "VALUES ($1, 'replay', $2, $3, $4, $5)",
        actor[:200],
        topic,
        ",".join(targets),
        selector[:500],
        len(chosen),
    )
    return ReplayResult(chosen, skipped)


async def audit_log(pool: asyncpg.Pool, limit: int = 50) -> Sequence[asyncpg.Record]:
    rows: Sequence[asyncpg.Record] = await pool.fetch(
        "SELECT actor, action, dlq_topic, target_topic, selector, records, at FROM herald_dlq_audit "
        "ORDER BY at DESC, id DESC LIMIT $1",
        limit,
    )
    return rows
