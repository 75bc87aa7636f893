"""Tenants as a scope, end to end on the dev stack: the same user id in two tenants is two
recipients with their own addresses, preferences and inbox. An event of tenant A is decided on
A's profile and reaches A's address only; the in-app row lands in A's inbox, which only a user
token carrying A's tenant claim reads; templates see A's recipient properties."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest_asyncio
import redis.asyncio as redis_asyncio

from channels.base import Content, Outcome
from channels.in_app.inbox import InAppAdapter
from channels.in_app.inbox_pg import InboxService
from channels.templates import TemplateRenderer
from consumers.channel.consumer import ChannelConsumer
from consumers.classifier.handler import Classifier, decide_config
from consumers.classifier.lookup import ProfileCache
from consumers.classifier.ratelimit import RateLimiter
from consumers.classifier.routing import load_routing
from consumers.devstack import DevStack
from consumers.emitter import build_event
from consumers.infra.clock import ManualClock
from consumers.infra.recipient_properties import RecipientProperties
from consumers.infra.settings import ChannelConsumerSettings, HeraldSettings
from consumers.runtime.handling import DeadLetter, Incoming, Output
from consumers.runtime.topics import Topics
from consumers.scheduler.store import Scheduler
from schemas.codec import default_codec
from schemas.models import (
    Channel,
    ChannelMessage,
    DeliveryOutcome,
    DomainEvent,
    Lane,
    OutcomeStatus,
    Tier,
    utcnow,
)
from tests.api_helpers import RunningApi, api_settings, running_api
from tests.conftest import make_settings

CODEC = default_codec()


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: DevStack) -> AsyncIterator[RunningApi]:
    async with running_api(make_settings(stack, api=api_settings())) as running:
        yield running


def _classifier(settings: HeraldSettings, pool: asyncpg.Pool, redis: redis_asyncio.Redis) -> Classifier:
    clock = ManualClock(datetime(2025, 6, 1, 12, 0, 30, tzinfo=UTC))
    return Classifier(
        table=load_routing(settings.classifier.routing_file),
        profiles=ProfileCache(pool, ttl_s=30, max_size=1000),
        limiter=RateLimiter(redis),
        scheduler=Scheduler(pool, clock, namespace=settings.topic_prefix),
        config=decide_config(settings),
        clock=clock,
    )


def _messages(result: object) -> list[ChannelMessage]:
    assert not isinstance(result, DeadLetter), result
    assert isinstance(result, (list, tuple))
    out: list[ChannelMessage] = []
    for o in result:
        assert isinstance(o, Output)
        if "outcomes" not in o.topic:
            out.append(CODEC.decode(o.value, ChannelMessage))
    return out


def _outcomes(result: object) -> list[DeliveryOutcome]:
    assert isinstance(result, (list, tuple))
    return [CODEC.decode(o.value, DeliveryOutcome) for o in result if "outcomes" in o.topic]


async def test_an_event_is_decided_on_its_tenants_profile_only(
    settings: HeraldSettings, pg_pool: asyncpg.Pool, redis_client: redis_asyncio.Redis
) -> None:
    user = f"t-{uuid.uuid4().hex[:10]}"
    await pg_pool.execute(
        "INSERT INTO herald_recipients (tenant, user_id, email, phone) VALUES "
        "('acme', $1, 'u@acme.example', '+15550100101'), ('globex', $1, 'u@globex.example', '+15550100102')",
        user,
    )
    # globex's user turned the activity inbox off; acme's did not.
    await pg_pool.execute(
        "INSERT INTO herald_preferences (tenant, user_id, category, channel, enabled) "
        "VALUES ('globex', $1, 'activity', 'in_app', false)",
        user,
    )
    handler = _classifier(settings, pg_pool, redis_client)
    events: list[DomainEvent] = [
        build_event("security_alert", user_id=user, tenant="acme"),
        build_event("security_alert", user_id=user, tenant="globex"),
        build_event("security_alert", user_id=user),  # the default tenant: no recipient there
        build_event("comment_reply", user_id=user, tenant="acme"),
        build_event("comment_reply", user_id=user, tenant="globex"),
    ]
    batch = [Incoming("events", 0, i, user.encode(), e, (), 0) for i, e in enumerate(events)]
    acme, globex, default, reply_acme, reply_globex = await handler.handle(batch)

    def addresses(result: object, channel: Channel) -> list[tuple[str, str | None]]:
        return [(m.recipient, m.tenant) for m in _messages(result) if m.channel is channel]

    assert addresses(acme, Channel.EMAIL) == [("u@acme.example", "acme")]
    assert addresses(acme, Channel.SMS) == [("+15550100101", "acme")]
    assert addresses(globex, Channel.EMAIL) == [("u@globex.example", "globex")]
    assert addresses(default, Channel.EMAIL) == []  # never another tenant's address
    assert {o.reason for o in _outcomes(default)} >= {"no_address"}
    assert addresses(reply_acme, Channel.IN_APP) == [(user, "acme")]
    assert _messages(reply_globex) == []
    assert [o.reason for o in _outcomes(reply_globex)] == ["opted_out"]


async def test_inboxes_are_per_tenant_and_read_with_the_tokens_tenant(api: RunningApi) -> None:
    user = f"t-{uuid.uuid4().hex[:10]}"
    adapter = InAppAdapter(InboxService(api.ctx.pool))
    for tenant in ("acme", "globex", "globex"):
        event = build_event("comment_reply", user_id=user, tenant=tenant)
        message = ChannelMessage(
            notification_id=f"n-{event.event_id}",
            event_id=event.event_id,
            event_type="comment_reply",
            user_id=user,
            channel=Channel.IN_APP,
            lane="priority",  # type: ignore[arg-type]
            tier="medium",  # type: ignore[arg-type]
            category="activity",
            recipient=user,
            template="comment_reply",
            locale="en",
            idempotency_key=f"k-{event.event_id}",
            occurred_at=event.occurred_at,
            tenant=tenant,
        )
        outcome = await adapter.deliver(
            message, Content(title=f"to {tenant}", text="b"), idempotency_key=message.idempotency_key
        )
        assert outcome.status == "sent", outcome
    acme, globex, default = api.auth(user, "acme"), api.auth(user, "globex"), api.auth(user)
    acme_items = (await api.client.get("/v1/inbox", headers=acme)).json()["items"]
    assert [i["title"] for i in acme_items] == ["to acme"]
    assert [i["title"] for i in (await api.client.get("/v1/inbox", headers=globex)).json()["items"]] == [
        "to globex",
        "to globex",
    ]
    assert (await api.client.get("/v1/inbox", headers=default)).json()["items"] == []
    assert (await api.client.get("/v1/inbox/unread-count", headers=globex)).json() == {"unread": 2}
    # globex's token cannot read or mark acme's row, even knowing its id.
    row_id = acme_items[0]["id"]
    assert (await api.client.get(f"/v1/inbox/{row_id}", headers=globex)).status_code == 404
    r = await api.client.post("/v1/inbox/read", json={"ids": [row_id]}, headers=globex)
    assert r.status_code == 404
    # Preferences are the tenant's too.
    body = {"preferences": [{"category": "activity", "channel": "in_app", "enabled": False}]}
    assert (await api.client.put("/v1/preferences", json=body, headers=acme)).status_code == 200
    stored = await api.ctx.pool.fetch(
        "SELECT tenant, enabled FROM herald_preferences WHERE user_id = $1 AND category = 'activity'", user
    )
    assert [(r["tenant"], r["enabled"]) for r in stored] == [("acme", False)]


async def test_the_same_event_id_and_user_in_two_tenants_is_two_notifications(
    settings: HeraldSettings, pg_pool: asyncpg.Pool, redis_client: redis_asyncio.Redis
) -> None:
    # Tenants choose their event ids: acme's and globex's invoice-1001 for the same user id get
    # their own notification ids and keys, so the inbox (unique by key) keeps both rows.
    user, event_id = f"t-{uuid.uuid4().hex[:10]}", f"invoice-{uuid.uuid4().hex[:8]}"
    handler = _classifier(settings, pg_pool, redis_client)
    events = [build_event("comment_reply", user_id=user, tenant=t) for t in ("acme", "globex")]
    for event in events:
        event.event_id = event_id
    batch = [Incoming("events", 0, i, user.encode(), e, (), 0) for i, e in enumerate(events)]
    messages = [m for result in await handler.handle(batch) for m in _messages(result)]
    in_app = [m for m in messages if m.channel is Channel.IN_APP]
    assert [m.tenant for m in in_app] == ["acme", "globex"]
    assert len({m.notification_id for m in in_app}) == len({m.idempotency_key for m in in_app}) == 2
    adapter = InAppAdapter(InboxService(pg_pool))
    for m in in_app:
        outcome = await adapter.deliver(
            m, Content(title=f"to {m.tenant}", text="b"), idempotency_key=m.idempotency_key
        )
        assert outcome.status == "sent", outcome
    rows = await pg_pool.fetch(
        "SELECT tenant, title FROM herald_inbox WHERE user_id = $1 ORDER BY tenant", user
    )
    assert [(r["tenant"], r["title"]) for r in rows] == [("acme", "to acme"), ("globex", "to globex")]


class _Sms:
    """Records what would be sent (the provider edge; no network)."""

    channel = Channel.SMS
    provider = "recording"

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        self.texts[message.tenant or ""] = content.text or ""
        return Outcome.sent(self.provider, f"pm-{idempotency_key}")

    async def close(self) -> None:
        return None


async def test_templates_read_the_tenants_recipient_properties(
    settings: HeraldSettings, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    (tmp_path / "plan" / "en").mkdir(parents=True)
    (tmp_path / "plan" / "en" / "sms.txt.j2").write_text(
        "{{ recipient.properties.first_name | default('Hi') }}: plan {{ recipient.properties.plan }}"
    )
    user = f"t-{uuid.uuid4().hex[:10]}"
    await pg_pool.execute(
        "INSERT INTO herald_recipients (tenant, user_id, properties) VALUES "
        '(\'acme\', $1, \'{"first_name": "Ana", "plan": "pro"}\'), (\'globex\', $1, \'{"plan": "free"}\')',
        user,
    )
    sms = _Sms()
    consumer = ChannelConsumer(
        channel=Channel.SMS,
        lane=Lane.PRIORITY,
        adapter=sms,
        topics=Topics(settings.topic_prefix),
        settings=ChannelConsumerSettings(),
        renderer=TemplateRenderer(tmp_path, "en"),
        properties=RecipientProperties(pg_pool),
    )
    batch = []
    for i, tenant in enumerate(("acme", "globex", None)):
        event_id = str(uuid.uuid4())
        m = ChannelMessage(
            notification_id=f"n-{event_id}",
            event_id=event_id,
            event_type="plan",
            user_id=user,
            channel=Channel.SMS,
            lane=Lane.PRIORITY,
            tier=Tier.HIGH,
            category="c",
            recipient=f"+1555010010{i}",
            template="plan",
            locale="en",
            idempotency_key=f"k-{event_id}",
            occurred_at=utcnow(),
            tenant=tenant,
        )
        batch.append(Incoming("t", 0, i, user.encode(), m, (), 0))
    results = await consumer.handle(batch)
    statuses = [CODEC.decode(r[0].value, DeliveryOutcome).status for r in results]  # type: ignore[index]
    assert statuses == [OutcomeStatus.SENT] * 3
    # acme's and globex's properties, each to its own; no recipient in the default tenant: blanks.
    assert sms.texts == {"acme": "Ana: plan pro", "globex": "Hi: plan free", "": "Hi: plan"}
