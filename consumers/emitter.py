"""The one-liner for domain services: build, validate, encode and produce a DomainEvent.

async with Emitter("kafka:9092") as emit:
    await emit("payment_receipt", user_id="u-42", data={"amount": "12.50", "currency": "EUR"})
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer

from schemas.codec import Codec, default_codec
from schemas.identifiers import check_event, check_identifiers
from schemas.models import DomainEvent, utcnow

__all__ = ["Emitter", "build_event", "partition_key"]


def build_event(
    event_type: str,
    *,
    user_id: str,
    data: dict[str, Any] | None = None,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    locale: str | None = None,
    tenant: str | None = None,
) -> DomainEvent:
    """A validated DomainEvent.

    Raises :class:`~schemas.identifiers.InvalidIdentifier` (a ValueError naming the field) for an
    empty, overlong or control-character identifier, ValueError for a non-JSON payload.
    """
    event_id = event_id or str(uuid.uuid4())
    check_identifiers(event_id=event_id, event_type=event_type, user_id=user_id, tenant=tenant)
    payload = json.dumps(data or {}, separators=(",", ":"), default=str)
    return DomainEvent(
        event_id=event_id,
        type=event_type,
        occurred_at=occurred_at or utcnow(),
        user_id=user_id,
        tenant=tenant,
        locale=locale,
        payload=payload,
    )


def partition_key(event: DomainEvent) -> bytes:
    """The Kafka key of an event: its user, or its topic when addressed to a topic (the contract)."""
    return (event.user_id or event.topic or "").encode()


class Emitter:
    """Produces DomainEvents to ``herald.events`` keyed by user id, acks=all."""

    def __init__(
        self, bootstrap_servers: str, topic: str = "herald.events", codec: Codec | None = None
    ) -> None:
        self.topic = topic
        self.codec = codec or default_codec()
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=2)

    async def __aenter__(self) -> Self:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.producer.stop()

    async def emit_event(self, event: DomainEvent) -> DomainEvent:
        """Produce ``event`` (its identifiers are checked first: InvalidIdentifier)."""
        check_event(event)
        await self.producer.send_and_wait(self.topic, self.codec.encode(event), key=partition_key(event))
        return event

    async def __call__(
        self, event_type: str, *, user_id: str, data: dict[str, Any] | None = None, **fields: Any
    ) -> DomainEvent:
        return await self.emit_event(build_event(event_type, user_id=user_id, data=data, **fields))
