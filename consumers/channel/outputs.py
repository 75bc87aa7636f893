"""A channel consumer's verdict on one message, as the outcome record it publishes.

One :class:`~schemas.models.DeliveryOutcome` per message on ``herald.outcomes``, keyed by
notification id, with a deterministic outcome id (a replay publishes the same one); counted in
``herald_deliveries_total`` and, for a first ``sent``, in the end-to-end latency histogram.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from consumers.channel.done import Done
from consumers.infra.clock import Clock
from consumers.infra.keys import outcome_id
from consumers.runtime import metrics
from consumers.runtime.handling import Output
from consumers.runtime.topics import Topics
from schemas.codec import Codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus

__all__ = ["OutcomeOutputs"]


class _Children:
    """A metric's children by label values, looked up once: ``labels()`` takes a lock and
    checks its arguments on every call, which adds up at one call per message."""

    def __init__(self, metric: Any, *prefix: str) -> None:
        self.metric = metric
        self.prefix = prefix
        self.children: dict[tuple[str, ...], Any] = {}

    def get(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.metric.labels(*self.prefix, *values)
        return child


class OutcomeOutputs:
    def __init__(
        self, channel: Channel, lane: Lane, *, provider: str, topics: Topics, codec: Codec, clock: Clock
    ) -> None:
        self.channel = channel
        self.provider = provider  # the adapter's, for verdicts given without calling it
        self.topic = topics.outcomes
        self.codec = codec
        self.clock = clock
        self._deliveries = _Children(metrics.DELIVERIES, channel.value, lane.value)
        self._end_to_end = _Children(metrics.END_TO_END_SECONDS)

    def __call__(self, message: ChannelMessage, done: Done) -> Output:
        o = done.outcome
        now = self.clock.now()
        provider = o.provider if o is not None else self.provider
        retry_after_ms = int(o.retry_after * 1000) if o is not None and o.retry_after is not None else None
        # DeliveryOutcome.about's fields, constructed directly: no dicts to copy and merge per message.
        outcome = DeliveryOutcome(
            outcome_id=outcome_id(message.idempotency_key, done.status.value, message.attempt),
            notification_id=message.notification_id,
            event_id=message.event_id,
            event_type=message.event_type,
            user_id=message.user_id,
            tier=message.tier,
            status=done.status,
            occurred_at=message.occurred_at,
            recorded_at=now,
            channel=message.channel,
            lane=message.lane,
            reason=done.reason or (o.reason if o is not None and not o.ok else None),
            detail=done.detail or (o.detail if o is not None else None),
            provider=provider,
            provider_message_id=o.provider_message_id if o is not None else None,
            error_code=o.provider_code if o is not None else None,
            idempotency_key=message.idempotency_key,
            attempt=message.attempt,
            retry_after_ms=retry_after_ms,
            message=message,
        )
        status_label = "duplicate" if done.duplicate else done.status.value
        self._deliveries.get(provider, status_label).inc()
        if done.status is OutcomeStatus.SENT and not done.duplicate:
            self._end_to_end.get(message.tier.value, self.channel.value).observe(
                _seconds_between(message.occurred_at, now)
            )
        return Output(self.topic, self.codec.encode(outcome), message.notification_id.encode())


def _seconds_between(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())
