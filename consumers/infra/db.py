"""PostgreSQL pool and migrations (``consumers/infra/migrations/NNN_name.sql``, applied once, in order).

A migration file runs in one transaction, which waits at most ``lock_timeout_s`` for each lock
it takes and is tried again a few times when it does not get one: a migration queued behind a
long transaction would otherwise hold every reader of its table waiting behind it (PostgreSQL
queues them after the ACCESS EXCLUSIVE request). A file whose first line is
:data:`NO_TRANSACTION` runs outside a transaction, statement by statement (for ``CREATE INDEX
CONCURRENTLY``, which cannot run in one), with no lock timeout: a concurrent index build blocks
no write, but it waits for every transaction older than itself (a ``pg_dump``, a long report).

Migration statements run under :data:`MIGRATION_TIMEOUT_S`, not the pool's ``command_timeout``
(30 s): a backfill of a big table or a build waiting out an old transaction takes what it takes;
one that exceeds even that is :class:`MigrationBlocked`. The migrate lock is taken with
``pg_try_advisory_lock`` in a loop, never a statement that waits: a second migrator blocked in
``pg_advisory_lock`` holds a snapshot, which the first one's ``CREATE INDEX CONCURRENTLY`` waits
for while the second waits for its lock: a deadlock PostgreSQL ends by failing one of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import asyncpg
from pydantic import SecretStr

from consumers.infra.redact import redact_url
from schemas.errors import ConfigurationError, DependencyUnavailable

__all__ = [
    "COMMAND_TIMEOUT_S",
    "CONNECT_TIMEOUT_S",
    "NO_TRANSACTION",
    "DatabaseUnavailable",
    "MigrationBlocked",
    "connect_pool",
    "migrate",
    "statements",
]

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# One migrator at a time across processes. An arbitrary key (its bytes read "NRALD", not "HERALD");
# keep the value: a migrator with a different key would not wait for one holding this one.
_LOCK_ID = 0x4E52414C44


class DatabaseUnavailable(DependencyUnavailable):
    """PostgreSQL could not be reached (reported without a traceback)."""


class MigrationBlocked(DatabaseUnavailable):
    """A migration did not get its locks in any of its tries: another transaction holds the
    table (retryable: start again once it ends)."""


NO_TRANSACTION = "-- herald: no transaction"
# Each try of a transactional migration waits this long for a lock, then gives way to the
# readers and writers queued behind it; it is tried this many times, LOCK_PAUSE_S apart (doubling).
LOCK_TIMEOUT_S = 5.0
LOCK_TRIES = 5
LOCK_PAUSE_S = 1.0
# A migration statement (and the wait for another process's migrations) gives up after this long:
# long enough for an index build on a big table behind a day-long transaction, short of forever.
MIGRATION_TIMEOUT_S = 86_400.0
# How often a migrator waiting for another one's migrations asks for the lock again.
LOCK_POLL_S = 1.0


def statements(sql: str) -> list[str]:
    """A :data:`NO_TRANSACTION` file's statements: each ends with ``;`` at the end of a line
    (comment lines dropped). Sent one by one: PostgreSQL runs a string of several statements as
    one implicit transaction, which ``CONCURRENTLY`` refuses. Pure.

    Not an SQL parser, on purpose: such a file holds simple statements (``CREATE INDEX
    CONCURRENTLY``, ``DROP INDEX CONCURRENTLY IF EXISTS``), each idempotent (it may be run again
    after a failure), one per line or ending its last line with ``;``; no ``$$`` bodies, no
    ``; -- comment`` after a statement, no ``;`` inside a string. Anything else belongs in a
    transactional file, which PostgreSQL parses whole."""
    found: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        if line.lstrip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            found.append("\n".join(current).strip())
            current = []
    rest = "\n".join(current).strip()
    return [*found, rest] if rest else found


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


async def migrate(
    pool: asyncpg.Pool,
    directory: Path = MIGRATIONS,
    *,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
    tries: int = LOCK_TRIES,
    pause_s: float = LOCK_PAUSE_S,
    timeout_s: float = MIGRATION_TIMEOUT_S,
    poll_s: float = LOCK_POLL_S,
) -> list[str]:
    """Apply every migration not applied yet; return their names. ``timeout_s`` bounds each
    statement and the wait for another process's migrations (:class:`MigrationBlocked`)."""
    applied: list[str] = []
    async with pool.acquire() as conn:
        try:
            await _take_lock(conn, timeout_s=timeout_s, poll_s=poll_s)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS herald_migrations (name text PRIMARY KEY, applied_at timestamptz "
                "NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM herald_migrations")}
            for path in await asyncio.to_thread(lambda: sorted(directory.glob("*.sql"))):
                if path.name in done:
                    continue
                sql = await asyncio.to_thread(path.read_text)
                try:
                    if sql.startswith(NO_TRANSACTION):
                        for statement in statements(sql):
                            await conn.execute(statement, timeout=timeout_s)
                        await conn.execute("INSERT INTO herald_migrations (name) VALUES ($1)", path.name)
                    else:
                        await _in_transaction(
                            conn,
                            path.name,
                            sql,
                            lock_timeout_s=lock_timeout_s,
                            tries=tries,
                            pause_s=pause_s,
                            timeout_s=timeout_s,
                        )
                except TimeoutError as exc:
                    raise MigrationBlocked(
                        f"migration {path.name} ran {timeout_s:g} s without finishing: a transaction "
                        "older than it (pg_stat_activity: state, xact_start, backend_xmin) holds it "
                        "back; end it, or wait it out, and start again"
                    ) from exc
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


async def _take_lock(conn: asyncpg.Connection, *, timeout_s: float, poll_s: float) -> None:
    """The migrate lock, asked for again every ``poll_s`` while another process holds it: no
    statement of ours waits meanwhile (one would hold a snapshot that the holder's
    ``CREATE INDEX CONCURRENTLY`` waits for: a deadlock)."""
    deadline = time.monotonic() + timeout_s
    logged = 0.0
    while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_ID):
        now = time.monotonic()
        if now >= deadline:
            raise MigrationBlocked(
                f"another process has held the migrate lock for over {timeout_s:g} s (pg_locks: "
                f"advisory {_LOCK_ID}; pg_stat_activity shows what it runs): start again once it ends"
            )
        if now - logged >= 60.0:
            log.info("waiting for another process's migrations (the migrate lock is held)")
            logged = now
        await asyncio.sleep(poll_s)


async def _in_transaction(
    conn: asyncpg.Connection,
    name: str,
    sql: str,
    *,
    lock_timeout_s: float,
    tries: int,
    pause_s: float,
    timeout_s: float,
) -> None:
    for n in range(1, tries + 1):
        try:
            async with conn.transaction():
                # SET LOCAL: the timeout ends with the transaction; the file may set its own after.
                await conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_s * 1000)}")
                await conn.execute(sql, timeout=timeout_s)
                await conn.execute("INSERT INTO herald_migrations (name) VALUES ($1)", name)
            return
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as exc:
            # A deadlock (a backfill's UPDATE ... FROM against a fallback batch's ordered row
            # locks) rolled the whole file back, as a lock timeout does: the same tries.
            if n == tries:
                raise MigrationBlocked(
                    f"migration {name} gave way to other transactions' locks {tries} times "
                    f"({lock_timeout_s:g} s each; last: {exc}); a long transaction holds its table "
                    "(pg_stat_activity): start again once it ends"
                ) from exc
            log.warning("migration %s: %s (try %d of %d); trying again", name, type(exc).__name__, n, tries)
            await asyncio.sleep(pause_s * 2 ** (n - 1))
