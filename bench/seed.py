"""Realistic recipients, devices, preferences and endpoints for the throughput benchmarks."""

from __future__ import annotations

import random
from datetime import time

import asyncpg

__all__ = ["seed_users"]

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


async def ensure_users(database_url: str, users: int) -> None:
    """Migrate and seed u0..u{users-1} unless an earlier phase of this run already did."""
    from consumers.infra.db import connect_pool, migrate

    pool = await connect_pool(database_url)
    try:
        await migrate(pool)
        if not await pool.fetchval("SELECT count(*) FROM herald_recipients WHERE user_id = 'u0'"):
            await seed_users(pool, users)
    finally:
        await pool.close()
