"""The webhook endpoint registry in PostgreSQL (``herald_webhook_endpoints``, migrations 002 and 040).

An endpoint has an id, its owner (the id system events are keyed by), a URL, its active
secrets (newest first), an event-type filter (glob patterns), and delivery statistics.

* **Rotation.** :meth:`EndpointStore.rotate_secret` prepends a new secret and keeps the
  previous one active for a grace period: both sign every message until it ends, so a
  receiver can deploy the new secret at its own pace. At most two secrets are ever active.
* **Failure.** Each failed attempt bumps the counters, starts ``failing_since`` if it is not
  running, and keeps the message in ``herald_webhook_pending``. An endpoint failing
  continuously for ``disable_after_s`` is disabled in the same statement (no read-then-write
  race between consumers). A success clears ``failing_since`` and the message's pending row.
* **Replay.** Pending messages of an endpoint since a time are read back, re-published by the
  CLI, and marked replayed.
"""

from __future__ import annotations

import fnmatch
import secrets as _random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from channels.webhook.signing import decode_secret, generate_secret
from channels.webhook.ssrf import check_url

__all__ = ["Endpoint", "EndpointStore", "PendingMessage", "new_endpoint_id"]

_COLUMNS = (
    "endpoint_id, owner_id, url, secrets, event_types, description, disabled_at, disabled_reason, "
    "failing_since, consecutive_failures, total_failures, total_successes, last_success_at, "
    "last_failure_at, created_at, previous_secret_expires_at"
)


def new_endpoint_id() -> str:
    return "ep_" + _random.token_hex(12)


@dataclass(frozen=True, slots=True)
class Endpoint:
    endpoint_id: str
    owner_id: str
    url: str
    secrets: tuple[str, ...]
    event_types: tuple[str, ...]
    description: str | None
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None
    consecutive_failures: int
    total_failures: int
    total_successes: int
    last_success_at: datetime | None
    last_failure_at: datetime | None
    created_at: datetime
    previous_secret_expires_at: datetime | None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    def active_secrets(self, now: datetime) -> tuple[str, ...]:
        """The secrets to sign with at ``now``: the newest, plus the previous one during its grace."""
        if len(self.secrets) <= 1:
            return self.secrets
        if self.previous_secret_expires_at is not None and now < self.previous_secret_expires_at:
            return self.secrets[:2]
        return self.secrets[:1]

    def accepts(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.event_types)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Endpoint:
        values = dict(row)
        values["secrets"] = tuple(values["secrets"])
        values["event_types"] = tuple(values["event_types"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class PendingMessage:
    idempotency_key: str
    event_type: str
    message: bytes
    reason: str | None
    first_failed_at: datetime


class EndpointStore:
    """Endpoint CRUD, statistics and the pending (replay) store. All times are passed in."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(
        self,
        owner_id: str,
        url: str,
        *,
        now: datetime,
        endpoint_id: str | None = None,
        event_types: Sequence[str] = ("*",),
        description: str | None = None,
        secret: str | None = None,
    ) -> Endpoint:
        secret = secret or generate_secret()
        decode_secret(secret)  # refuse a malformed secret at the door, not at the first send
        check_url(url)  # and a URL delivery could never parse (BlockedDestination invalid_url)
        row = await self.pool.fetchrow(
            f"INSERT INTO herald_webhook_endpoints (endpoint_id, owner_id, url, secrets, event_types, "
            f"description, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}",
            endpoint_id or new_endpoint_id(),
            owner_id,
            url,
            [secret],
            list(event_types) or ["*"],
            description,
            now,
        )
        assert row is not None
        return Endpoint.from_row(row)

    async def get(self, endpoint_id: str) -> Endpoint | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM herald_webhook_endpoints WHERE endpoint_id = $1", endpoint_id
        )
        return None if row is None else Endpoint.from_row(row)

    async def list_endpoints(self, owner_id: str | None = None) -> list[Endpoint]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM herald_webhook_endpoints WHERE $1::text IS NULL OR owner_id = $1 "
            "ORDER BY owner_id, created_at, endpoint_id",
            owner_id,
        )
        return [Endpoint.from_row(r) for r in rows]

    async def rotate_secret(
        self, endpoint_id: str, *, now: datetime, grace_s: float, new_secret: str | None = None
    ) -> Endpoint | None:
        """Make ``new_secret`` (generated if None) the signing secret; the current one stays active
        for ``grace_s`` seconds (0: retired at once). A secret older than the current one is dropped."""
        new_secret = new_secret or generate_secret()
        decode_secret(new_secret)
        row = await self.pool.fetchrow(
            f"UPDATE herald_webhook_endpoints SET secrets = ARRAY[$2::text, secrets[1]], "
            f"previous_secret_expires_at = $3 WHERE endpoint_id = $1 RETURNING {_COLUMNS}",
            endpoint_id,
            new_secret,
            now + timedelta(seconds=grace_s),
        )
        return None if row is None else Endpoint.from_row(row)

    async def disable(self, endpoint_id: str, *, reason: str, now: datetime) -> bool:
        """Disable (if enabled); True when this call disabled it."""
        result = await self.pool.execute(
            "UPDATE herald_webhook_endpoints SET disabled_at = $2, disabled_reason = $3 "
            "WHERE endpoint_id = $1 AND disabled_at IS NULL",
            endpoint_id,
            now,
            reason,
        )
        return bool(result.endswith(" 1"))

    async def enable(self, endpoint_id: str) -> bool:
        """Enable again with a clean failure streak (the auto-disable clock restarts)."""
        result = await self.pool.execute(
            "UPDATE herald_webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, "
            "failing_since = NULL, consecutive_failures = 0 WHERE endpoint_id = $1",
            endpoint_id,
        )
        return bool(result.endswith(" 1"))

    async def delete(self, endpoint_id: str) -> bool:
        result = await self.pool.execute(
            "DELETE FROM herald_webhook_endpoints WHERE endpoint_id = $1", endpoint_id
        )
        return bool(result.endswith(" 1"))

    async def record_success(self, endpoint_id: str, idempotency_key: str, *, now: datetime) -> None:
        await self.pool.execute(
            "WITH gone AS (DELETE FROM herald_webhook_pending "
            "              WHERE endpoint_id = $1 AND idempotency_key = $2) "
            "UPDATE herald_webhook_endpoints SET total_successes = total_successes + 1, "
            "last_success_at = $3, consecutive_failures = 0, failing_since = NULL WHERE endpoint_id = $1",
            endpoint_id,
            idempotency_key,
            now,
        )

    async def record_failure(
        self,
        endpoint_id: str,
        *,
        idempotency_key: str,
        event_type: str,
        message: bytes,
        reason: str,
        now: datetime,
        disable_after_s: float,
        disable_reason: str | None = None,
    ) -> bool:
        """Count a failed attempt and keep the message; disable the endpoint when it has failed
        continuously for ``disable_after_s`` or ``disable_reason`` is given (410 Gone).
        Returns True when this call disabled the endpoint."""
        async with self.pool.acquire() as conn, conn.transaction():
            # The row is locked first (FOR NO KEY UPDATE sees the latest committed version), so of
            # two consumers failing at once exactly one reports "I disabled it". NO KEY: the pending
            # row's foreign key takes KEY SHARE on it, which a plain FOR UPDATE would deadlock with.
            row = await conn.fetchrow(
                "UPDATE herald_webhook_endpoints e SET "
                "  consecutive_failures = e.consecutive_failures + 1, total_failures = e.total_failures + 1, "
                "  last_failure_at = $2, failing_since = COALESCE(e.failing_since, $2), "
                "  disabled_reason = CASE WHEN e.disabled_at IS NOT NULL THEN e.disabled_reason "
                "    WHEN $4::text IS NOT NULL THEN $4::text "
                "    WHEN COALESCE(e.failing_since, $2) <= $3 THEN 'failing' ELSE NULL END, "
                "  disabled_at = CASE WHEN e.disabled_at IS NOT NULL THEN e.disabled_at "
                "    WHEN $4::text IS NOT NULL OR COALESCE(e.failing_since, $2) <= $3 THEN $2 ELSE NULL END "
                "FROM (SELECT endpoint_id, disabled_at FROM herald_webhook_endpoints WHERE endpoint_id = $1 "
                "      FOR NO KEY UPDATE) prev "
                "WHERE e.endpoint_id = prev.endpoint_id "
                "RETURNING e.disabled_at, prev.disabled_at AS was_disabled_at",
                endpoint_id,
                now,
                now - timedelta(seconds=disable_after_s),
                disable_reason,
            )
            if row is not None:
                await self._keep(
                    conn,
                    endpoint_id,
                    idempotency_key,
                    event_type=event_type,
                    message=message,
                    reason=reason,
                    now=now,
                )
        return row is not None and row["disabled_at"] is not None and row["was_disabled_at"] is None

    async def keep_pending(
        self,
        endpoint_id: str,
        *,
        idempotency_key: str,
        event_type: str,
        message: bytes,
        reason: str,
        now: datetime,
    ) -> None:
        """Keep a message for replay without counting an attempt (its endpoint is disabled)."""
        async with self.pool.acquire() as conn:
            await self._keep(
                conn,
                endpoint_id,
                idempotency_key,
                event_type=event_type,
                message=message,
                reason=reason,
                now=now,
            )

    @staticmethod
    async def _keep(
        conn: asyncpg.Connection,
        endpoint_id: str,
        key: str,
        *,
        event_type: str,
        message: bytes,
        reason: str,
        now: datetime,
    ) -> None:
        await conn.execute(
            "INSERT INTO herald_webhook_pending (endpoint_id, idempotency_key, event_type, message, reason, "
            "first_failed_at, last_failed_at) VALUES ($1, $2, $3, $4, $5, $6, $6) "
            "ON CONFLICT (endpoint_id, idempotency_key) DO UPDATE SET "
            "last_failed_at = EXCLUDED.last_failed_at, reason = EXCLUDED.reason, message = EXCLUDED.message, "
            "replayed_at = NULL",
            endpoint_id,
            key,
            event_type,
            message,
            reason,
            now,
        )

    async def pending(
        self, endpoint_id: str, *, since: datetime, limit: int = 10_000
    ) -> list[PendingMessage]:
        rows = await self.pool.fetch(
            "SELECT idempotency_key, event_type, message, reason, first_failed_at "
            "FROM herald_webhook_pending "
            "WHERE endpoint_id = $1 AND first_failed_at >= $2 ORDER BY first_failed_at, idempotency_key "
            "LIMIT $3",
            endpoint_id,
            since,
            limit,
        )
        return [
            PendingMessage(
                r["idempotency_key"], r["event_type"], bytes(r["message"]), r["reason"], r["first_failed_at"]
            )
            for r in rows
        ]

    async def mark_replayed(self, endpoint_id: str, keys: Sequence[str], *, now: datetime) -> int:
        result = await self.pool.execute(
            "UPDATE herald_webhook_pending SET replayed_at = $3 WHERE endpoint_id = $1 "
            "AND idempotency_key = ANY($2::text[])",
            endpoint_id,
            list(keys),
            now,
        )
        return int(result.rsplit(" ", 1)[1])
