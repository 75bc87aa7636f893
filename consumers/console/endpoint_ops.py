"""Operations on webhook endpoints shared by ``herald endpoints`` and the console: re-publishing an
endpoint's kept (undelivered) messages, and each endpoint's recent health from the activity store."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from channels.webhook.endpoints_pg import Endpoint, EndpointStore
from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.errors import ConfigurationError
from schemas.models import Channel, ChannelMessage

__all__ = ["endpoint_health", "parse_since", "replay_pending"]

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(value: str, now: datetime) -> datetime:
    """``2026-11-20T10:00:00Z``, ``2026-11-20`` (UTC) or a duration back from now: ``90m``, ``6h``, ``3d``."""
    value = value.strip()
    rel = _RELATIVE.fullmatch(value)
    if rel:
        return now - timedelta(seconds=float(rel.group(1)) * _UNITS[rel.group(2)])
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"--since {value!r}: expected an ISO date/time or a duration like 6h, 3d"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def replay_pending(
    settings: HeraldSettings, store: EndpointStore, ep: Endpoint, since: datetime, now: datetime
) -> int:
    """Re-publish kept messages to the webhook topic of their lane, attempt 1 (a fresh retry
    schedule), same idempotency key (receivers that got one before dedupe on webhook-id); marked
    replayed only after the broker acknowledged them. Returns how many."""
    if ep.disabled:
        raise ConfigurationError(
            f"{ep.endpoint_id} is disabled ({ep.disabled_reason}): enable it before replaying"
        )
    codec, topics = default_codec(), Topics(settings.topic_prefix)
    pending = await store.pending(ep.endpoint_id, since=since)
    records: list[tuple[str, bytes]] = []
    for p in pending:
        message = dataclasses.replace(codec.decode(p.message, ChannelMessage), attempt=1, not_before=None)
        records.append((topics.channel(Channel.WEBHOOK, message.lane), codec.encode(message)))
    if records:
        await create_topics(settings, sorted({t for t, _ in records}))
        producer = make_producer(settings)
        await producer.start()
        try:
            futures = [await producer.send(t, v, key=ep.endpoint_id.encode()) for t, v in records]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        await store.mark_replayed(ep.endpoint_id, [p.idempotency_key for p in pending], now=now)
    return len(records)


async def endpoint_health(pool: asyncpg.Pool, since: datetime) -> dict[str, dict[str, Any]]:
    """Per endpoint id (a webhook message's recipient) since ``since``: attempts, success rate and
    the last error, from the activity store."""
    rows = await pool.fetch(
        "SELECT recipient, count(*) AS attempts, count(*) FILTER (WHERE status = 'sent') AS sent, "
        "(array_agg(concat_ws(' ', error_code, reason) ORDER BY recorded_at DESC) "
        "   FILTER (WHERE status LIKE 'failed%'))[1] AS last_error, "
        "max(recorded_at) FILTER (WHERE status LIKE 'failed%') AS last_error_at "
        "FROM herald_activity WHERE kind = 'outcome' AND channel = 'webhook' AND recorded_at >= $1 "
        "AND status IN ('sent', 'failed_retryable', 'failed_permanent') GROUP BY recipient",
        since,
    )
    return {
        r["recipient"]: {
            "attempts": r["attempts"],
            "success_rate": r["sent"] / r["attempts"] if r["attempts"] else None,
            "last_error": r["last_error"],
            "last_error_at": r["last_error_at"],
        }
        for r in rows
    }
