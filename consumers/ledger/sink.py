"""The ledger's handler: outcomes, receipts and dead letters → rows of the activity store.

One poll batch is one multi-row insert, done before the runtime commits the batch's offsets
(at-least-once); the store's unique index makes a replayed batch add nothing. The handler never
produces: a record it cannot read is dead-lettered by the runtime like anywhere else, except on the
.dlq topics, whose bodies are never decoded as a condition of sinking (only their headers matter).

A row PostgreSQL refuses (a :class:`~schemas.errors.RecordError` from the store) is the record's
fault: the runtime's poison net splits the batch until it stands alone. An outcome or a receipt
is then dead-lettered to ``<topic>.dlq``; a dead letter cannot be (``<topic>.dlq.dlq`` does not
exist), so its row is stored bare instead (:func:`~consumers.ledger.rows.bare_dead_letter`: coordinates and reason, the
refusal in ``detail``), and the record itself stays in its .dlq topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from consumers.infra.clock import Clock
from consumers.ledger.rows import (
    ActivityRow,
    DeadLetterCoordinates,
    bare_dead_letter,
    partition_day,
    row_from_dead_letter,
    row_from_outcome,
    row_from_receipt,
)
from consumers.ledger.store import ActivityWriter
from consumers.runtime.handling import DeadLetter, Incoming, Result
from schemas.codec import Codec, DecodeError
from schemas.errors import RecordError
from schemas.models import DeliveryOutcome, Receipt

__all__ = ["LedgerSink", "body_ids"]

log = logging.getLogger(__name__)

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
        # The generated readers (schemas/decoding.py), not fastavro's dict then the dataclass.
        record = self.codec.decode_one_of(item.value, (DeliveryOutcome, Receipt))
        if isinstance(record, DeliveryOutcome):
            return row_from_outcome(record)
        assert isinstance(record, Receipt)  # decode_one_of returns one of the kinds asked, or raises
        return row_from_receipt(record)

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
        today = partition_day(self.clock.now())
        try:
            await self.writer.insert(_unique(rows), today)
        except RecordError as exc:
            if len(rows) != 1 or rows[0].kind != "dead_letter":
                raise  # the runtime's poison net splits the batch down to the record at fault
            # A dead letter alone, refused: it has nowhere further to go, so store what always fits.
            log.warning("ledger: dead letter %s stored bare: %s", rows[0].dedupe_key, exc)
            await self.writer.insert([bare_dead_letter(rows[0], str(exc))], today)
        return results

    async def probe(self) -> bool:
        """Does PostgreSQL answer? Asked by the runtime's poison net before it blames a record."""
        async with asyncio.timeout(2.0):
            return bool(await self.writer.pool.fetchval("SELECT 1"))


def _unique(rows: list[ActivityRow]) -> list[ActivityRow]:
    """One row per identity (a producer retry can put one record twice in a batch)."""
    seen: dict[tuple[Any, ...], ActivityRow] = {}
    for r in rows:
        seen.setdefault((r.dedupe_key, r.status, r.attempt, r.anchor_at), r)
    return list(seen.values())
