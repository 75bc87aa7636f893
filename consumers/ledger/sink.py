"""The ledger's handler: outcomes, receipts and dead letters → rows of the activity store.

One poll batch is one multi-row insert, done before the runtime commits the batch's offsets
(at-least-once); the store's unique index makes a replayed batch add nothing. The handler never
produces: a record it cannot read is dead-lettered by the runtime like anywhere else, except on the
.dlq topics, whose bodies are never decoded as a condition of sinking (only their headers matter).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consumers.infra.clock import Clock
from consumers.ledger.rows import (
    ActivityRow,
    DeadLetterCoordinates,
    partition_day,
    row_from_dead_letter,
    row_from_outcome,
    row_from_receipt,
)
from consumers.ledger.store import ActivityWriter
from consumers.runtime.handling import DeadLetter, Incoming, Result
from schemas.codec import Codec, DecodeError
from schemas.models import DeliveryOutcome, Receipt

__all__ = ["LedgerSink", "body_ids"]

_ID_FIELDS = ("event_id", "notification_id", "user_id", "event_type", "channel")


def body_ids(codec: Codec, raw: bytes) -> dict[str, str | None]:
    """Whatever identifiers a dead letter's body gives away, when it is a Herald record at all."""
    try:
        _, record = codec.decode_record(raw)
    except DecodeError:
        return {}
    out: dict[str, str | None] = {}
    for name in _ID_FIELDS:
        value = record.get(name)
        if name == "event_type" and value is None:
            value = record.get("type")
        out[name] = str(value) if value is not None else None
    return out


class LedgerSink:
    name = "ledger"

    def __init__(self, writer: ActivityWriter, codec: Codec, clock: Clock) -> None:
        self.writer = writer
        self.codec = codec
        self.clock = clock

    def decode(self, raw: bytes) -> bytes:
        # The topic decides how to read a record (handle), not the bytes alone.
        return raw

    def _row(self, item: Incoming[bytes]) -> ActivityRow:
        if item.topic.endswith(".dlq"):
            at = DeadLetterCoordinates(item.topic, item.partition, item.offset, item.timestamp_ms)
            return row_from_dead_letter(at, item.headers, body_ids(self.codec, item.value))
        name, record = self.codec.decode_record(item.value)
        try:
            if name == DeliveryOutcome.SCHEMA:
                return row_from_outcome(DeliveryOutcome.from_record(record))
            if name == Receipt.SCHEMA:
                return row_from_receipt(Receipt.from_record(record))
        except (TypeError, ValueError) as exc:
            raise DecodeError("invalid", f"{name}: {exc}") from exc
        raise DecodeError("unexpected_schema", f"the ledger reads outcomes and receipts, got {name}")

    async def handle(self, batch: Sequence[Incoming[bytes]]) -> Sequence[Result]:
        results: list[Result] = []
        rows: list[ActivityRow] = []
        for item in batch:
            try:
                row = self._row(item)
            except DecodeError as exc:
                results.append(DeadLetter(exc.reason, type(exc).__name__, exc.detail))
                continue
            rows.append(row)
            results.append([])
        # The runtime counts what the ledger consumed (herald_consumed_total{consumer="ledger"}).
        await self.writer.insert(_unique(rows), partition_day(self.clock.now()))
        return results


def _unique(rows: list[ActivityRow]) -> list[ActivityRow]:
    """One row per identity (a producer retry can put one record twice in a batch)."""
    seen: dict[tuple[Any, ...], ActivityRow] = {}
    for r in rows:
        seen.setdefault((r.dedupe_key, r.status, r.attempt, r.anchor_at), r)
    return list(seen.values())
