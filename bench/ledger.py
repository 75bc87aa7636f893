"""The activity store: rows/s the ledger sinks vs the runtime's no-op pass-through over the same
outcomes (one run, one broker), and the console's timeline query p99 on a large store."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.common import preload
from bench.passthrough import NoOp
from bench.timed import time_runner
from consumers.infra import keys
from consumers.infra.clock import SystemClock
from consumers.infra.db import connect_pool, migrate
from consumers.ledger.sink import LedgerSink
from consumers.ledger.store import ActivityWriter
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.topics import dlq
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier

__all__ = ["generate_store", "outcome_records", "phase", "phase_timeline"]

_STATUSES = [OutcomeStatus.SENT, OutcomeStatus.SENT, OutcomeStatus.FAILED_RETRYABLE, OutcomeStatus.SUPPRESSED]


def outcome_records(n: int, seed: int = 11) -> list[tuple[bytes, bytes]]:
    """``n`` encoded DeliveryOutcomes as channel consumers write them (keyed by notification id)."""
    rnd = random.Random(seed)
    codec = default_codec()
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        event_id, user = str(uuid.UUID(int=rnd.getrandbits(128))), f"u{rnd.randrange(20_000)}"
        channel = rnd.choice(list(Channel))
        m = ChannelMessage(
            notification_id=keys.notification_id(event_id, user),
            event_id=event_id,
            event_type="comment_reply",
            user_id=user,
            channel=channel,
            lane=Lane.PRIORITY,
            tier=Tier.HIGH,
            category="social",
            recipient=f"{user}@example.com",
            template="comment_reply",
            locale="en",
            idempotency_key=keys.idempotency_key(event_id, channel.value, user),
            occurred_at=now - timedelta(seconds=rnd.randrange(3600)),
        )
        status = _STATUSES[i % len(_STATUSES)]
        o = DeliveryOutcome.about(
            m,
            status,
            outcome_id=keys.outcome_id(m.idempotency_key, status.value),
            recorded_at=m.occurred_at + timedelta(seconds=1),
            provider="bench",
        )
        out.append((m.notification_id.encode(), codec.encode(o)))
    return out


async def phase(b: Any) -> None:
    from bench.run import Row, console

    s = b.settings()
    source = f"{s.topic_prefix}.outcomes"
    n = b.events
    with console.status(f"preloading {n:,} outcomes"):
        await preload(s, source, outcome_records(n), 4)
    await create_topics(s, [dlq(source), f"{source}.noop"])
    producer = make_producer(s)
    await producer.start()
    pool = await connect_pool(s.database_url, max_size=4)
    try:
        await migrate(pool)
        with console.status("runtime, no-op handler"):
            noop = await time_runner(
                NoOp(f"{source}.noop"),
                topic=source,
                group=f"{s.topic_prefix}-noop",
                total=n,
                producer=producer,
                settings=s,
                timeout=b.timeout(n),
            )
        before = await pool.fetchval("SELECT count(*) FROM herald_activity")
        with console.status("ledger → PostgreSQL"):
            sink = LedgerSink(ActivityWriter(pool, s.ledger.retention_days), default_codec(), SystemClock())
            led = await time_runner(
                sink,
                topic=source,
                group=f"{s.topic_prefix}-ledger",
                total=n,
                producer=producer,
                settings=s,
                timeout=b.timeout(n),
            )
        added = await pool.fetchval("SELECT count(*) FROM herald_activity") - before
    finally:
        await pool.close()
        await producer.stop()
    b.add(Row("runtime no-op over outcomes", noop.rate, "msg/s"))
    b.add(
        Row(
            "ledger: outcomes sunk into PostgreSQL",
            led.rate,
            "rows/s",
            "no-op",
            led.rate / noop.rate,
            note=f"({added:,} new rows)",
        )
    )


_GENERATE = """
INSERT INTO herald_activity (anchor_at, dedupe_key, status, attempt, kind, recorded_at, event_id,
                             notification_id, user_id, event_type, tier, channel, provider)
SELECT t.at, 'bench_' || $4 || '_' || t.n,
       (ARRAY['sent', 'delivered', 'failed_retryable', 'escalated'])[g % 4 + 1], 1, 'outcome',
       t.at + (g % 4) * interval '5 second',
       'ev_' || $4 || '_' || t.n, 'n_' || $4 || '_' || t.n, 'u' || (t.n % 200000),
       'comment_reply', 'high', (ARRAY['push', 'email', 'sms', 'in_app'])[g % 4 + 1], 'bench'
  FROM generate_series($2::bigint, $2::bigint + $5 - 1) AS g,
       LATERAL (SELECT g / 4 AS n,
                       $1::timestamptz - ((g / 4) % $3) * interval '1 day'
                                       - ((g / 4) % 86000) * interval '1 second' AS at) AS t
"""


async def generate_store(pool: asyncpg.Pool, rows: int, days: int, tag: str, writer: ActivityWriter) -> float:
    """Fill the store with ``rows`` outcomes over ``days`` days (4 per notification); returns seconds."""
    today = datetime.now(UTC).date()
    await writer.ensure_partitions([today - timedelta(days=d) for d in range(days + 1)])
    started = time.perf_counter()
    anchor = datetime.now(UTC)
    chunk = 200_000
    for start in range(0, rows, chunk):
        await pool.execute(_GENERATE, anchor, start, days, tag, min(chunk, rows - start), timeout=3600)
    await pool.execute("ANALYZE herald_activity", timeout=3600)
    return time.perf_counter() - started


async def phase_timeline(b: Any) -> None:
    """The timeline query p99 over a store of HERALD_BENCH_ACTIVITY_ROWS outcomes (default 10M)."""
    import os

    from bench.run import Row, console
    from consumers.ledger.queries import ActivityReader

    rows = int(os.environ.get("HERALD_BENCH_ACTIVITY_ROWS", "10000000"))
    s = b.settings()
    pool = await connect_pool(s.database_url, max_size=4)
    try:
        await migrate(pool)
        writer = ActivityWriter(pool, s.ledger.retention_days)
        tag = uuid.uuid4().hex[:6]
        with console.status(f"generating {rows:,} outcomes"):
            took = await generate_store(pool, rows, min(29, s.ledger.retention_days - 1), tag, writer)
        b.add(Row("activity store: generate", rows / took, "rows/s", note=f"({rows:,} rows in {took:.0f}s)"))
        reader = ActivityReader(pool)
        rnd = random.Random(5)
        samples = []
        for _ in range(1000):
            nid = f"n_{tag}_{rnd.randrange(rows // 4)}"
            t0 = time.perf_counter()
            found, _ = await reader.timeline(nid)
            samples.append(time.perf_counter() - t0)
            assert found, nid
        samples.sort()
        p50, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]
        b.add(
            Row(
                "console timeline query p99",
                p99 * 1000,
                "ms",
                note=f"(p50 {p50 * 1000:.2f} ms, {rows:,} rows, 1000 lookups)",
            )
        )
        b.extra["activity_rows"] = rows
        # No clean-up: the bench's dev stack is thrown away, and deleting 10M rows would take longer
        # than generating them.
    finally:
        await pool.close()
