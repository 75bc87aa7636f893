"""Reads in the in-app inbox, published as ``read`` receipts so the fallback cancels escalations.

The HTTP API calls :class:`InboxReads`; it marks rows read in PostgreSQL first, then produces
one :class:`~schemas.models.Receipt` per row to ``herald.receipts`` (key = notification id,
like outcomes) and waits for the broker's acks. If producing fails the rows stay read and the
caller gets the error: calling :meth:`InboxReads.mark_read` again re-publishes (it returns
rows read earlier too); receipts are idempotent downstream.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from channels.in_app.inbox_pg import InboxService, ReadRow
from consumers.runtime import metrics
from consumers.runtime.topics import Topics
from schemas.codec import Codec, default_codec
from schemas.models import Channel, Receipt, ReceiptStatus

__all__ = ["InboxReads", "receipt_for"]


def receipt_for(row: ReadRow) -> Receipt:
    return Receipt(
        notification_id=row.notification_id,
        user_id=row.user_id,
        status=ReceiptStatus.READ,
        at=row.read_at,
        channel=Channel.IN_APP,
        source="inbox",
    )


class InboxReads:
    def __init__(
        self, inbox: InboxService, producer: AIOKafkaProducer, topics: Topics, codec: Codec | None = None
    ) -> None:
        self.inbox = inbox
        self._producer = producer
        self._topic = topics.receipts
        self._codec = codec or default_codec()

    async def mark_read(self, user_id: str, ids: Sequence[uuid.UUID], tenant: str = "") -> list[ReadRow]:
        rows = await self.inbox.mark_read(user_id, ids, tenant)
        await self._publish(rows)
        return rows

    async def mark_all_read(self, user_id: str, tenant: str = "") -> list[ReadRow]:
        rows = await self.inbox.mark_all_read(user_id, tenant)
        await self._publish(rows)
        return rows

    async def _publish(self, rows: Sequence[ReadRow]) -> None:
        if not rows:
            return
        futures = [
            await self._producer.send(
                self._topic, self._codec.encode(receipt_for(r)), key=r.notification_id.encode()
            )
            for r in rows
        ]
        await asyncio.gather(*futures)
        metrics.PRODUCED.labels(self._topic).inc(len(rows))
