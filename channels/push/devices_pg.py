"""Device tokens of a user (``herald_device_tokens``, migration 002), for the push adapter.

A user is a (tenant, user id) (migration 230; ``''`` is the default tenant)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

__all__ = ["DeviceStore", "DeviceToken", "PgDeviceTokens"]


@dataclass(frozen=True, slots=True)
class DeviceToken:
    token: str
    platform: str


class DeviceStore(Protocol):
    async def tokens(self, user_id: str, tenant: str = "") -> list[DeviceToken]: ...

    async def delete(self, user_id: str, tokens: Sequence[str], tenant: str = "") -> int:
        """Forget dead tokens of ``user_id``; returns how many rows went."""
        ...


class PgDeviceTokens:
    """Device tokens in PostgreSQL. Every query is scoped by (tenant, user id)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def tokens(self, user_id: str, tenant: str = "") -> list[DeviceToken]:
        rows = await self._pool.fetch(
            "SELECT token, platform FROM herald_device_tokens WHERE tenant = $2 AND user_id = $1 "
            "ORDER BY last_seen_at DESC",
            user_id,
            tenant,
        )
        return [DeviceToken(r["token"], r["platform"]) for r in rows]

    async def delete(self, user_id: str, tokens: Sequence[str], tenant: str = "") -> int:
        if not tokens:
            return 0
        status: str = await self._pool.execute(
            "DELETE FROM herald_device_tokens WHERE tenant = $3 AND user_id = $1 AND token = ANY($2::text[])",
            user_id,
            list(tokens),
            tenant,
        )
        return int(status.rsplit(" ", 1)[1])

    async def register(
        self, user_id: str, token: str, platform: str = "android", tenant: str = "", *, keep: int = 0
    ) -> str | None:
        """Add or refresh a token (an app calls this at start; tests and the demo seed with it).

        A token registered to another user (or the same id in another tenant) **moves** to ``user_id``: an FCM token is a secret of
        the device that holds it, and a device that changed hands (another account signed in)
        must stop receiving the previous user's notifications. Returns the previous owner when
        the token moved, else None, so the caller can log and count the move.

        ``keep`` > 0: the user keeps at most that many tokens, the most recently registered (each
        push fans out to every token, so an unbounded list is a cost anyone with a token can grow).
        One user's registrations then take turns (a transaction-scoped advisory lock on the user):
        under READ COMMITTED concurrent ones would each count only their own new row and all stay.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            if keep > 0:
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))", tenant, user_id
                )
            previous = await conn.fetchrow(
                "SELECT user_id, tenant FROM herald_device_tokens WHERE token = $1 FOR UPDATE", token
            )
            await conn.execute(
                """
                INSERT INTO herald_device_tokens (token, user_id, platform, tenant) VALUES ($1, $2, $3, $4)
                ON CONFLICT (token) DO UPDATE SET user_id = EXCLUDED.user_id, tenant = EXCLUDED.tenant,
                    platform = EXCLUDED.platform, last_seen_at = now()
                """,
                token,
                user_id,
                platform,
                tenant,
            )
            if keep > 0:
                await conn.execute(
                    """
                    DELETE FROM herald_device_tokens WHERE token IN (
                        SELECT token FROM herald_device_tokens WHERE tenant = $2 AND user_id = $1
                        ORDER BY last_seen_at DESC, created_at DESC, token OFFSET $3)
                    """,
                    user_id,
                    tenant,
                    keep,
                )
        if previous is None or (previous["user_id"], previous["tenant"]) == (user_id, tenant):
            return None
        owner: str = previous["user_id"]
        return owner
