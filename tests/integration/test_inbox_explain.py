"""On 200k inbox rows, most of them read, get_unread and unread_count walk the partial index
``(user_id, created_at DESC, id DESC) WHERE read_at IS NULL`` (custom and generic plans), and
get_unread stays fast. Prints the measured latency (run with ``-s`` to see it)."""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from channels.in_app.inbox_pg import GET_UNREAD_FIRST_SQL, GET_UNREAD_NEXT_SQL, UNREAD_COUNT_SQL, InboxService
from consumers.devstack import DevStack
from tests.inbox_helpers import isolated_inbox

USERS = 1800  # x 100 rows, 95 read / 5 unread each
HEAVY_ROWS = 20_000  # one user with a long read history and 20 unread


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def big_inbox(pg_pool: asyncpg.Pool, stack: DevStack) -> AsyncIterator[asyncpg.Pool]:
    async with isolated_inbox(pg_pool, stack.database_url) as pool:
        await pool.execute(
            """
            INSERT INTO herald_inbox (user_id, notification_id, type, category, title, body, idempotency_key,
                                      created_at, read_at, expires_at)
            SELECT 'u' || (g % $1), 'n' || g, 'comment_reply', 'activity', 'title ' || g, 'body',
                   'k' || g, now() - (g || ' seconds')::interval,
                   CASE WHEN (g / $1) % 100 >= 5 THEN now() - interval '1 hour' END,
                   CASE WHEN g % 10 = 0 THEN now() + interval '7 days' END
              FROM generate_series(0, $1 * 100 - 1) AS g
            """,
            USERS,
        )
        await pool.execute(
            """
            INSERT INTO herald_inbox (user_id, notification_id, type, category, title, idempotency_key,
                                      created_at, read_at)
            SELECT 'heavy', 'h' || g, 'mention', 'activity', 'm ' || g, 'hk' || g,
                   now() - (g || ' seconds')::interval,
                   CASE WHEN g >= 20 THEN now() - interval '1 hour' END
              FROM generate_series(0, $1 - 1) AS g
            """,
            HEAVY_ROWS,
        )
        await pool.execute("ANALYZE herald_inbox")
        yield pool


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def partial_index(pool: asyncpg.Pool) -> str:
    name: str = await pool.fetchval(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 'herald_inbox'::regclass "
        "AND pg_get_expr(i.indpred, i.indrelid) = '(read_at IS NULL)'"
    )
    return name


async def plan_of(pool: asyncpg.Pool, sql: str, *args: object, generic: bool) -> list[dict[str, Any]]:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL plan_cache_mode = {'force_generic_plan' if generic else 'auto'}")
        raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    return list(nodes(json.loads(raw)[0]["Plan"]))


async def test_table_shape(big_inbox: asyncpg.Pool) -> None:
    total, read = await big_inbox.fetchrow(
        "SELECT count(*), count(*) FILTER (WHERE read_at IS NOT NULL) FROM herald_inbox"
    )
    assert total == USERS * 100 + HEAVY_ROWS == 200_000
    assert read / total > 0.9


@pytest.mark.parametrize("generic", [False, True], ids=["custom-plan", "generic-plan"])
@pytest.mark.parametrize("user", ["u7", "heavy"])
async def test_unread_queries_use_the_partial_index(
    big_inbox: asyncpg.Pool, generic: bool, user: str
) -> None:
    index = await partial_index(big_inbox)
    row = await big_inbox.fetchrow(
        "SELECT created_at, id FROM herald_inbox WHERE user_id = $1 AND read_at IS NULL "
        "ORDER BY created_at DESC LIMIT 1",
        user,
    )
    for sql, args in [
        (GET_UNREAD_FIRST_SQL, (user, "", 51)),
        (GET_UNREAD_NEXT_SQL, (user, "", 51, row["created_at"], row["id"])),
        (UNREAD_COUNT_SQL, (user, "")),
    ]:
        plan = await plan_of(big_inbox, sql, *args, generic=generic)
        kinds = [n["Node Type"] for n in plan]
        assert "Seq Scan" not in kinds, (sql, kinds)
        assert index in [n.get("Index Name") for n in plan], (sql, plan)
        assert "Sort" not in kinds or sql is UNREAD_COUNT_SQL, (sql, kinds)  # the index gives the order


def pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] if q < 100 else max(samples)


async def test_get_unread_latency(big_inbox: asyncpg.Pool) -> None:
    inbox = InboxService(big_inbox)
    rng = random.Random(7)
    users = [f"u{rng.randrange(USERS)}" for _ in range(1500)] + ["heavy"] * 500
    rng.shuffle(users)
    for u in users[:50]:  # warm the pool's prepared statements and the buffer cache
        await inbox.get_unread(u)
    samples, counts = [], []
    for u in users:
        t0 = time.perf_counter()
        page = await inbox.get_unread(u, limit=50)
        samples.append((time.perf_counter() - t0) * 1000)
        assert len(page.items) == (20 if u == "heavy" else 5)
        t0 = time.perf_counter()
        await inbox.unread_count(u)
        counts.append((time.perf_counter() - t0) * 1000)
    p50, p99 = pct(samples, 50), pct(samples, 99)
    c50, c99 = pct(counts, 50), pct(counts, 99)
    # The same query with index scans forbidden: what the partial index saves.
    without: list[float] = []
    async with big_inbox.acquire() as conn, conn.transaction():
        await conn.execute(
            "SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off; "
            "SET LOCAL enable_indexonlyscan = off"
        )
        for u in users[:30]:
            t0 = time.perf_counter()
            await conn.fetch(GET_UNREAD_FIRST_SQL + " -- planned under these settings", u, "", 51)
            without.append((time.perf_counter() - t0) * 1000)
    seq50 = statistics.median(without)
    print(
        f"\nget_unread on 200k rows ({len(samples)} calls, limit 50): p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {max(samples):.2f} ms; unread_count p50 {c50:.2f} ms, p99 {c99:.2f} ms; "
        f"same query without indexes (seq scan) p50 {seq50:.2f} ms"
    )
    assert p50 < 10 and p99 < 50  # generous: a shared 2-core machine
    assert seq50 > 5 * p50  # the partial index is what makes it fast
