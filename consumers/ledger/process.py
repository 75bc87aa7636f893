"""``herald run ledger``: outcomes, receipts and every dead-letter topic → the activity store."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from consumers.infra.resources import Resources
from consumers.ledger.rows import partition_day
from consumers.ledger.sink import LedgerSink
from consumers.ledger.store import OUTAGES, ActivityWriter
from consumers.runtime import metrics
from consumers.runtime.kafka import create_topics
from consumers.runtime.process import BackgroundLoop, ProcessOptions, ProcessSpec
from consumers.runtime.runner import Runner
from consumers.runtime.topics import dlq
from schemas.codec import default_codec

__all__ = ["build", "ledger_topics"]

log = logging.getLogger(__name__)


def ledger_topics(res: Resources) -> list[str]:
    """What the ledger reads: outcomes, receipts, and the dead-letter topic of every Herald topic
    (the ledger's own input DLQs included, so nothing it refuses goes unseen)."""
    t = res.topics
    return [t.outcomes, t.receipts, *(name for name in t.all() if name.endswith(".dlq"))]


def retention_loop(res: Resources, writer: ActivityWriter) -> BackgroundLoop:
    async def retention(stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await writer.apply_retention(partition_day(res.clock.now()))
            except (*OUTAGES, asyncpg.PostgresError) as exc:  # lock timeouts and outages: next round
                metrics.DEPENDENCY_ERRORS.labels("postgres", "ledger").inc()
                log.warning("activity store retention: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), res.settings.ledger.retention_interval_s)

    return retention


async def build(res: Resources, options: ProcessOptions) -> ProcessSpec:
    topics = ledger_topics(res)
    # Dead letters of the outcomes and receipts topics are read here too; ours go to <topic>.dlq.
    await create_topics(res.settings, sorted({*topics, *(dlq(t) for t in topics if not t.endswith(".dlq"))}))
    writer = ActivityWriter(await res.pool(), res.settings.ledger.retention_days)
    runner = Runner(
        LedgerSink(writer, default_codec(), res.clock),
        topics=topics,
        group_id=options.group or "herald-ledger",
        bootstrap_servers=res.settings.kafka_bootstrap_servers,
        producer=await res.producer(),
        settings=res.settings.runtime,
    )
    return ProcessSpec(runners=[runner], loops=[retention_loop(res, writer)])
