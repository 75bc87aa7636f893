"""Realistic recipients, devices, preferences and endpoints for the throughput benchmarks."""

from __future__ import annotations

import random
from datetime import time

import asyncpg

__all__ = ["fresh_state", "seed_users"]

_ZONES = [
    "Europe/Lisbon",
    "America/Sao_Paulo",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "UTC",
    "America/New_York",
    "Asia/Tokyo",
    "Europe/Berlin",
]


async def seed_users(pool: asyncpg.Pool, users: int, seed: int = 11) -> None:
    """u0..u{users-1}: 95 % with email, 60 % with a phone, 70 % with a device, 20 % with quiet hours,
    10 % opted out of marketing email, 30 % opted in to activity push, 1 % owning a webhook endpoint."""
    rnd = random.Random(seed)
    recipients, tokens, prefs, endpoints = [], [], [], []
    for i in range(users):
        uid = f"u{i}"
        quiet = rnd.random() < 0.2
        recipients.append(
            (
                uid,
                f"{uid}@example.com" if rnd.random() < 0.95 else None,
                f"+1415{5550000 + i:07d}"[:15] if rnd.random() < 0.6 else None,
                rnd.choice(_ZONES),
                rnd.choice(["en", "en", "pt-BR", "pt"]),
                time(22, 0) if quiet else None,
                time(7, 0) if quiet else None,
            )
        )
        if rnd.random() < 0.7:
            tokens.append((f"tok-{uid}", uid))
        if rnd.random() < 0.1:
            prefs.append((uid, "marketing", "email", False))
        if rnd.random() < 0.3:
            prefs.append((uid, "activity", "push", True))
        if rnd.random() < 0.01:
            endpoints.append(
                (
                    f"ep-{uid}",
                    uid,
                    "https://hooks.example.com/herald",
                    ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                )
            )
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "herald_recipients",
            records=recipients,
            columns=["user_id", "email", "phone", "timezone", "locale", "quiet_start", "quiet_end"],
        )
        await conn.copy_records_to_table("herald_device_tokens", records=tokens, columns=["token", "user_id"])
        await conn.copy_records_to_table(
            "herald_preferences", records=prefs, columns=["user_id", "category", "channel", "enabled"]
        )
        await conn.copy_records_to_table(
            "herald_webhook_endpoints",
            records=endpoints,
            columns=["endpoint_id", "owner_id", "url", "secrets"],
        )


async def fresh_state(database_url: str, redis_url: str, users: int) -> None:
    """The same starting state for every measured run: every Herald table emptied (recipients,
    timers, digests, workflow runs, sent ledgers...), Redis flushed (rate-limit buckets, delivery
    ledgers, caches), then u0..u{users-1} seeded again. Without it a run after another one finds
    the rate limits spent and the deferred sends armed, and measures those cheaper paths."""
    import redis.asyncio as redis_asyncio

    from consumers.infra.db import connect_pool, migrate

    pool = await connect_pool(database_url)
    try:
        await migrate(pool)
        tables = await pool.fetch(
            "SELECT quote_ident(tablename) AS t FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE 'herald\\_%' AND tablename <> 'herald_migrations'"
        )
        if tables:
            await pool.execute(f"TRUNCATE {', '.join(r['t'] for r in tables)} CASCADE")
        client = redis_asyncio.Redis.from_url(redis_url)
        try:
            await client.flushdb()
        finally:
            await client.aclose()
        await seed_users(pool, users)
    finally:
        await pool.close()
