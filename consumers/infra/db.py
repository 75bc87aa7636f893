"""PostgreSQL pool and migrations (``consumers/infra/migrations/NNN_name.sql``, applied once, in order)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
from pydantic import SecretStr

from consumers.infra.redact import redact_url
from schemas.errors import ConfigurationError, DependencyUnavailable

__all__ = ["COMMAND_TIMEOUT_S", "CONNECT_TIMEOUT_S", "DatabaseUnavailable", "connect_pool", "migrate"]

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# One migrator at a time across processes. An arbitrary key (its bytes read "NRALD", not "HERALD");
# keep the value: a migrator with a different key would not wait for one holding this one.
_LOCK_ID = 0x4E52414C44


class DatabaseUnavailable(DependencyUnavailable):
    """PostgreSQL could not be reached (reported without a traceback)."""


# Every wait on a PostgreSQL that stalls (connections open, nothing answers) is bounded by these.
# A statement gives up after COMMAND_TIMEOUT_S, and asyncpg then spends up to as long again trying
# to cancel it before it drops the connection. The pool's next call opens a new connection: left
# at asyncpg's default (60 s), each call during a stall waited a minute for its connect alone
# (measured behind tests/fakes/latency_proxy.py); a connect to a live server takes milliseconds.
COMMAND_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0


async def _keep_session(_: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool, beyond asyncpg's own rollback of an
    open transaction: nothing. asyncpg's default reset is a statement of its own (advisory locks,
    cursors, LISTEN, session settings) — a second round trip for every pool call, and nothing of
    it is ever left on a pool connection here: locks and settings are transaction-scoped
    (``pg_advisory_xact_lock``, ``SET LOCAL``), :func:`migrate` releases its session lock and
    settings or closes the connection, the fan-out releases its broadcast's session lock or closes
    the connection (the TCP keepalive settings it leaves are harmless on any connection), and
    LISTEN has connections of its own (:mod:`consumers.infra.pg_listen`)."""


async def connect_pool(
    dsn: str | SecretStr,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout_s: float = COMMAND_TIMEOUT_S,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> asyncpg.Pool:
    """A pool on ``dsn``. Errors name the server by :func:`redact_url`: never with its password."""
    raw = dsn.get_secret_value() if isinstance(dsn, SecretStr) else dsn
    try:
        pool = await asyncpg.create_pool(
            raw,
            min_size=min_size,
            max_size=max_size,
            command_timeout=command_timeout_s,
            timeout=connect_timeout_s,
            reset=_keep_session,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(
            f"PostgreSQL is not reachable at {redact_url(raw)} (set DATABASE_URL): {exc}"
        ) from exc
    except ValueError as exc:  # a malformed URL (asyncpg's ClientConfigurationError too): no retry helps
        raise ConfigurationError(f"DATABASE_URL {redact_url(raw)} is not usable: {exc}") from exc
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool, directory: Path = MIGRATIONS) -> list[str]:
    """Apply every migration not applied yet; return their names."""
    applied: list[str] = []
    async with pool.acquire() as conn:
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS herald_migrations (name text PRIMARY KEY, applied_at timestamptz "
                "NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM herald_migrations")}
            for path in await asyncio.to_thread(lambda: sorted(directory.glob("*.sql"))):
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(await asyncio.to_thread(path.read_text))
                    await conn.execute("INSERT INTO herald_migrations (name) VALUES ($1)", path.name)
                applied.append(path.name)
                log.info("applied migration %s", path.name)
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
            await conn.execute("RESET ALL")  # a migration's plain SET outlives its transaction
        except BaseException:
            # The pool does not reset a connection on its way back (_keep_session): one that may
            # still hold the session lock (a failed migration, a timeout or a cancellation after the
            # server granted it) is closed, not returned, or every later migrator would wait on it.
            conn.terminate()
            raise
    return applied
