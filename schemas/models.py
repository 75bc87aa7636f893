"""Plain dataclasses for the Avro contracts, with record conversion for the codec."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Self

from schemas.errors import InvalidContent

__all__ = [
    "Channel",
    "ChannelMessage",
    "DeliveryOutcome",
    "DomainEvent",
    "Lane",
    "OutcomeStatus",
    "Receipt",
    "ReceiptStatus",
    "Record",
    "Tier",
    "field_names",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Tier(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    SYSTEM = "system"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    IN_APP = "in_app"
    WEBHOOK = "webhook"


class Lane(StrEnum):
    PRIORITY = "priority"
    BULK = "bulk"


class OutcomeStatus(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED_RETRYABLE = "failed_retryable"
    FAILED_PERMANENT = "failed_permanent"
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"
    ESCALATED = "escalated"
    EXHAUSTED = "exhausted"
    CANCELLED = "cancelled"  # v2: a herald.cancel event with the notification's cancel_key


class ReceiptStatus(StrEnum):
    DELIVERED = "delivered"
    OPENED = "opened"
    READ = "read"


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def field_names(cls: type[Any]) -> tuple[str, ...]:
    """The dataclass's field names, in order (cached per class)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


class Record:
    """Base for contract dataclasses: ``SCHEMA`` names the Avro record."""

    SCHEMA: ClassVar[str]

    def to_record(self) -> dict[str, Any]:
        # StrEnum members are str, which fastavro accepts for enum symbols; only nested
        # records need converting. Field names are cached per class: this is a hot path.
        names = field_names(type(self))
        out = {name: getattr(self, name) for name in names}
        for name, value in out.items():
            if isinstance(value, Record):
                out[name] = value.to_record()
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        return cls(**{name: record[name] for name in field_names(cls) if name in record})


def _json_object(payload: str) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except RecursionError as exc:  # e.g. 100,000 nested arrays: never parseable, never retried
        raise InvalidContent("payload is nested too deeply to parse") from exc
    if not isinstance(value, dict):
        raise ValueError("payload must be a JSON object")
    return value


def _enum(kind: type[StrEnum], value: Any) -> Any:
    return value if value is None or isinstance(value, kind) else kind(value)


@dataclass(slots=True)
class DomainEvent(Record):
    SCHEMA: ClassVar[str] = "DomainEvent"

    event_id: str
    type: str
    occurred_at: datetime
    user_id: str
    tenant: str | None = None
    locale: str | None = None
    payload: str = "{}"
    topic: str | None = None  # v2: fan out to the topic's subscribers (user_id is then empty)
    send_at: datetime | None = None  # v2: a scheduled send
    cancel_key: str | None = None  # v2: cancelled by a herald.cancel event with the same key

    def data(self) -> dict[str, Any]:
        """The payload as a JSON object (parsed on demand: the classifier never needs it)."""
        return _json_object(self.payload)


@dataclass(slots=True)
class ChannelMessage(Record):
    SCHEMA: ClassVar[str] = "ChannelMessage"

    notification_id: str
    event_id: str
    event_type: str
    user_id: str
    channel: Channel
    lane: Lane
    tier: Tier
    category: str
    recipient: str
    template: str
    locale: str
    idempotency_key: str
    occurred_at: datetime
    tenant: str | None = None
    timezone: str = "UTC"
    payload: str = "{}"
    attempt: int = 1
    not_before: datetime | None = None
    expires_at: datetime | None = None
    escalated_from: str | None = None

    def __post_init__(self) -> None:
        # _enum of each, inline: the classifier makes one of these per message, from members already.
        if self.channel.__class__ is not Channel:
            self.channel = _enum(Channel, self.channel)
        if self.lane.__class__ is not Lane:
            self.lane = _enum(Lane, self.lane)
        if self.tier.__class__ is not Tier:
            self.tier = _enum(Tier, self.tier)

    def data(self) -> dict[str, Any]:
        return _json_object(self.payload)


@dataclass(slots=True)
class DeliveryOutcome(Record):
    SCHEMA: ClassVar[str] = "DeliveryOutcome"

    outcome_id: str
    notification_id: str
    event_id: str
    event_type: str
    user_id: str
    tier: Tier
    status: OutcomeStatus
    occurred_at: datetime
    recorded_at: datetime = field(default_factory=utcnow)
    channel: Channel | None = None
    lane: Lane | None = None
    reason: str | None = None
    detail: str | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    error_code: str | None = None
    idempotency_key: str | None = None
    attempt: int = 1
    retry_after_ms: int | None = None
    not_before: datetime | None = None
    message: ChannelMessage | None = None

    @classmethod
    def about(
        cls,
        message: ChannelMessage,
        status: OutcomeStatus,
        *,
        outcome_id: str,
        recorded_at: datetime,
        **fields: Any,
    ) -> DeliveryOutcome:
        """An outcome concerning ``message``: its identity, tier, channel, lane, key, attempt and
        event time copied, the message embedded; ``fields`` override or add (reason, provider...)."""
        copied: dict[str, Any] = {
            "notification_id": message.notification_id,
            "event_id": message.event_id,
            "event_type": message.event_type,
            "user_id": message.user_id,
            "tier": message.tier,
            "occurred_at": message.occurred_at,
            "channel": message.channel,
            "lane": message.lane,
            "idempotency_key": message.idempotency_key,
            "attempt": message.attempt,
            "message": message,
        }
        return cls(outcome_id=outcome_id, status=status, recorded_at=recorded_at, **{**copied, **fields})

    def __post_init__(self) -> None:
        if self.channel is not None and self.channel.__class__ is not Channel:
            self.channel = _enum(Channel, self.channel)
        if self.lane is not None and self.lane.__class__ is not Lane:
            self.lane = _enum(Lane, self.lane)
        if self.tier.__class__ is not Tier:
            self.tier = _enum(Tier, self.tier)
        if self.status.__class__ is not OutcomeStatus:
            self.status = _enum(OutcomeStatus, self.status)
        if isinstance(self.message, dict):
            self.message = ChannelMessage.from_record(self.message)


@dataclass(slots=True)
class Receipt(Record):
    SCHEMA: ClassVar[str] = "Receipt"

    notification_id: str
    user_id: str
    status: ReceiptStatus
    at: datetime = field(default_factory=utcnow)
    channel: Channel | None = None
    source: str = "app"
    tenant: str | None = None  # v2: the user's tenant ("" the default one); None: not said (v1)

    def __post_init__(self) -> None:
        self.channel = _enum(Channel, self.channel)
        self.status = _enum(ReceiptStatus, self.status)
