"""Shared pieces of the webhook integration tests: messages, endpoints, adapters."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from channels.webhook.endpoints_pg import Endpoint, EndpointStore
from channels.webhook.http import WebhookAdapter, WebhookSettings
from channels.webhook.signing import generate_secret
from channels.webhook.ssrf import Resolver, system_resolver
from consumers.infra.keys import idempotency_key, notification_id
from schemas.models import Channel, ChannelMessage, Lane, Tier, utcnow
from tests.fakes.webhook_receiver import Behaviour, WebhookReceiver

LOCAL = ("127.0.0.1",)  # tests allow-list the receiver's address explicitly


def webhook_message(
    endpoint_id: str,
    *,
    owner: str = "acct-1",
    event_type: str = "system.invoice_paid",
    payload: dict[str, Any] | None = None,
    attempt: int = 1,
) -> ChannelMessage:
    event_id = str(uuid.uuid4())
    now = utcnow()
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # Avro timestamp-millis
    return ChannelMessage(
        notification_id=notification_id(event_id, owner),
        event_id=event_id,
        event_type=event_type,
        user_id=owner,
        channel=Channel.WEBHOOK,
        lane=Lane.PRIORITY,
        tier=Tier.SYSTEM,
        category="system",
        recipient=endpoint_id,
        template="",
        locale="en",
        idempotency_key=idempotency_key(event_id, Channel.WEBHOOK.value, endpoint_id),
        occurred_at=now - timedelta(milliseconds=5),
        payload=json.dumps(payload or {"invoice": 42}),
        attempt=attempt,
    )


def adapter(
    pool: asyncpg.Pool, *, resolver: Resolver = system_resolver, clock: Any = None, **config: Any
) -> WebhookAdapter:
    cfg = WebhookSettings(
        **{
            "allow_hosts": LOCAL,
            "connect_timeout_s": 2.0,
            "total_timeout_s": 5.0,
            "endpoint_cache_ttl_s": 0.0,
            **config,
        }
    )
    kwargs: dict[str, Any] = {"resolver": resolver}
    if clock is not None:
        kwargs["clock"] = clock
    return WebhookAdapter(EndpointStore(pool), cfg, **kwargs)


async def endpoint(
    pool: asyncpg.Pool,
    receiver: WebhookReceiver,
    behaviour: Behaviour | None = None,
    *,
    event_types: tuple[str, ...] = ("*",),
    url: str | None = None,
) -> Endpoint:
    secret = generate_secret()
    ep_id = "ep_" + uuid.uuid4().hex[:16]
    path = f"/hooks/{ep_id}"
    receiver_url = receiver.endpoint(path, [secret], behaviour)
    return await EndpointStore(pool).add(
        "acct-1",
        url or receiver_url,
        now=datetime.now(UTC),
        endpoint_id=ep_id,
        event_types=event_types,
        secret=secret,
    )
