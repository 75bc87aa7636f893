"""Demo data and a demo event stream for ``herald dev``: a few users who exercise every path."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aioboto3
import asyncpg

from channels.webhook.signing import generate_secret
from consumers.emitter import Emitter, build_event
from consumers.infra.settings import HeraldSettings
from consumers.workflow.cancel import CANCEL_EVENT_TYPE

__all__ = [
    "DEMO_SCRIPT",
    "DEMO_USERS",
    "emit_scheduled_and_cancelled",
    "random_events",
    "run_demo_stream",
    "seed",
]

DEMO_USERS: list[dict[str, Any]] = [
    {
        "user_id": "alice",
        "email": "alice@example.com",
        "phone": "+14155550101",
        "timezone": "Europe/Lisbon",
        "locale": "en",
        "tokens": ["tok-alice-pixel"],
    },
    {
        "user_id": "bruno",
        "email": "bruno@example.com",
        "phone": "+5511999990002",
        "timezone": "America/Sao_Paulo",
        "locale": "pt-BR",
        "tokens": ["tok-bruno-stale"],
    },  # the FCM fake answers UNREGISTERED for it
    {
        "user_id": "carla",
        "email": "carla@example.com",
        "phone": None,
        "timezone": "Asia/Kathmandu",
        "locale": "en",
        "tokens": ["tok-carla-ios"],
        "quiet_now": True,
    },
    {"user_id": "dmitri", "email": None, "phone": None, "timezone": "UTC", "locale": "en", "tokens": []},
]
STALE_TOKEN = "tok-bruno-stale"

# (event type, user, payload): one of each path, in an order that reads well in the console.
DEMO_SCRIPT: list[tuple[str, str, dict[str, Any]]] = [
    ("security_alert", "alice", {"device": "Firefox on Linux", "ip": "203.0.113.7", "location": "Porto"}),
    ("payment_receipt", "alice", {"amount": "42.00", "currency": "EUR", "merchant": "Livraria"}),
    ("payment_receipt", "bruno", {"amount": "99.90", "currency": "BRL", "merchant": "Padaria"}),
    ("comment_reply", "alice", {"author": "Bruno", "post_title": "Roadmap", "excerpt": "Agreed!"}),
    ("comment_reply", "alice", {"author": "Carla", "post_title": "Roadmap", "excerpt": "+1"}),
    ("mention", "alice", {"author": "Dmitri", "context": "the launch thread"}),
    ("mention", "carla", {"author": "Alice", "context": "standup notes"}),
    ("payment_receipt", "carla", {"amount": "7.00", "currency": "USD", "merchant": "Cafe"}),  # quiet hours
    (
        "marketing.weekly",
        "alice",
        {"headline": "New this week", "body": "Dark mode is here.", "cta_url": "https://example.com/new"},
    ),
    (
        "marketing.weekly",
        "bruno",
        {"headline": "Novidades", "body": "Modo escuro chegou.", "cta_url": "https://example.com/novo"},
    ),
    (
        "marketing.weekly",
        "dmitri",
        {"headline": "New this week", "body": "...", "cta_url": "https://example.com"},
    ),
    ("system.invoice.paid", "acme", {"invoice": "inv_0001", "amount": "120.00"}),
    ("no_such_event", "alice", {}),
]


async def seed(settings: HeraldSettings, pool: asyncpg.Pool, webhook_url: str, webhook_secret: str) -> None:
    """Recipients, device tokens, an opt-in, a webhook endpoint, and the SES sender identity."""
    async with pool.acquire() as conn:
        for u in DEMO_USERS:
            quiet_start = quiet_end = None
            if u.get("quiet_now"):
                local = datetime.now(ZoneInfo(u["timezone"]))
                quiet_start = (local - timedelta(hours=1)).time().replace(second=0, microsecond=0)
                quiet_end = (local + timedelta(minutes=2)).time().replace(second=0, microsecond=0)
            await conn.execute(
                "INSERT INTO herald_recipients (user_id, email, phone, timezone, locale, quiet_start, quiet_end) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant, user_id) DO UPDATE SET email = $2, phone = $3, "
                "timezone = $4, locale = $5, quiet_start = $6, quiet_end = $7",
                u["user_id"],
                u["email"],
                u["phone"],
                u["timezone"],
                u["locale"],
                quiet_start,
                quiet_end,
            )
            for token in u["tokens"]:
                await conn.execute(
                    "INSERT INTO herald_device_tokens (token, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    token,
                    u["user_id"],
                )
        await conn.execute(
            "INSERT INTO herald_preferences (user_id, category, channel, enabled) VALUES ('alice', 'activity', "
            "'push', true) ON CONFLICT DO NOTHING"
        )
        await conn.execute(
            "INSERT INTO herald_webhook_endpoints (endpoint_id, owner_id, url, secrets, event_types) "
            "VALUES ('ep_acme', 'acme', $1, $2, '{system.*}') ON CONFLICT (endpoint_id) DO UPDATE SET url = $1, "
            "secrets = $2",
            webhook_url,
            [webhook_secret],
        )
    domain = settings.email.from_address.rsplit("@", 1)[1].strip(" >")
    session = aioboto3.Session()
    async with session.client(
        "sesv2",
        region_name=settings.aws.region,
        endpoint_url=settings.aws.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as ses:
        await ses.create_email_identity(EmailIdentity=domain)


def random_events(rnd: random.Random) -> tuple[str, str, dict[str, Any]]:
    return rnd.choice(DEMO_SCRIPT[:-1])


async def emit_scheduled_and_cancelled(emit: Emitter, *, in_s: float = 20.0) -> None:
    """One scheduled send (deferred now, sent in ``in_s``) and one cancelled before it fires."""
    at = datetime.now(UTC) + timedelta(seconds=in_s)
    receipt = build_event(
        "payment_receipt", user_id="alice", data={"amount": "5.00", "currency": "EUR", "merchant": "Later"}
    )
    await emit.emit_event(dataclasses.replace(receipt, send_at=at))
    promo = build_event(
        "marketing.weekly",
        user_id="bruno",
        data={"headline": "Amanhã", "body": "Cancelado.", "cta_url": "https://example.com"},
    )
    await emit.emit_event(dataclasses.replace(promo, send_at=at, cancel_key="demo-promo"))
    await asyncio.sleep(1.0)
    cancel = build_event(CANCEL_EVENT_TYPE, user_id="bruno")
    await emit.emit_event(dataclasses.replace(cancel, cancel_key="demo-promo"))


async def run_demo_stream(settings: HeraldSettings, interval_s: float, stop: asyncio.Event) -> None:
    """The scripted events, a scheduled send and a cancellation, then a random event every
    ``interval_s`` until ``stop``."""
    rnd = random.Random(42)
    async with Emitter(settings.kafka_bootstrap_servers, f"{settings.topic_prefix}.events") as emit:
        for event_type, user, data in DEMO_SCRIPT:
            await emit(event_type, user_id=user, data=data)
            await asyncio.sleep(0.2)
        await emit_scheduled_and_cancelled(emit)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval_s)
            except TimeoutError:
                event_type, user, data = random_events(rnd)
                await emit(event_type, user_id=user, data=data)


def new_webhook_secret() -> str:
    return generate_secret()
