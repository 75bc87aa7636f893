"""``herald run ledger`` against the real broker and PostgreSQL: outcomes, receipts and dead letters
become rows, a replay adds nothing, retention drops whole day partitions."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from consumers.infra.resources import Resources
from consumers.infra.settings import HeraldSettings
from consumers.ledger.process import build
from consumers.ledger.rows import partition_day, partition_name, row_from_outcome, row_from_receipt
from consumers.ledger.store import ActivityWriter
from consumers.runtime.handling import DeadLetter, dead_letter_headers
from consumers.runtime.process import ProcessOptions
from consumers.runtime.topics import Topics, dlq
from schemas.codec import default_codec
from schemas.models import Channel, OutcomeStatus
from tests.kafka_helpers import produce_raw, read_all, wait_until_consumed
from tests.ledger_helpers import message, outcome, receipt


async def _produce_with_headers(
    settings: HeraldSettings, topic: str, value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await (await producer.send(topic, value, headers=headers))
    finally:
        await producer.stop()


async def _rows(pool: asyncpg.Pool, user: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT kind, status, channel FROM herald_activity WHERE user_id = $1 ORDER BY recorded_at",
            user,
        )
    )


async def _run(settings: HeraldSettings, group: str, topics: list[str]) -> None:
    """Run the ledger process until its group has consumed ``topics`` to the end."""
    res = Resources(settings)
    spec = await build(res, ProcessOptions(group=group))
    tasks = [asyncio.create_task(r.run()) for r in spec.runners]
    try:
        await wait_until_consumed(settings, group, topics, timeout=60)
    finally:
        for r in spec.runners:
            r.stop()
        await asyncio.gather(*tasks)
        await res.close()


async def test_ledger_sinks_outcomes_receipts_and_dead_letters_once(
    settings: HeraldSettings, pg_pool: asyncpg.Pool
) -> None:
    topics = Topics(settings.topic_prefix)
    codec = default_codec()
    user = f"led-{uuid.uuid4().hex[:8]}"
    push = message(f"ev-{user}", user, Channel.PUSH)
    email = message(f"ev-{user}", user, Channel.EMAIL)
    records = [
        outcome(push, OutcomeStatus.SENT, after_s=1, provider="fcm"),
        outcome(push, OutcomeStatus.ESCALATED, after_s=300, reason="no_receipt"),
        outcome(email, OutcomeStatus.SENT, after_s=301, provider="ses"),
    ]
    await produce_raw(
        settings, topics.outcomes, [(push.notification_id.encode(), codec.encode(o)) for o in records]
    )
    # The same outcome twice (a producer retry) and a receipt.
    await produce_raw(settings, topics.outcomes, [(None, codec.encode(records[0]))])
    await produce_raw(settings, topics.receipts, [(None, codec.encode(receipt(email, after_s=302)))])
    # A dead letter the classifier wrote, and bytes the ledger itself cannot read.
    headers = dead_letter_headers(
        DeadLetter(f"reason-{user}", "Rejected", "unknown type"), topics.events, 0, 7, "herald-classifier"
    )
    await _produce_with_headers(settings, dlq(topics.events), b"\x00junk", headers)
    await produce_raw(settings, topics.outcomes, [(user.encode(), b"not avro")])

    watched = [topics.outcomes, topics.receipts, dlq(topics.events), dlq(topics.outcomes)]
    await _run(settings, f"{settings.topic_prefix}-ledger", watched)
    # The ledger dead-lettered the garbage to outcomes.dlq, which it reads too: a second round sinks it.
    await _run(settings, f"{settings.topic_prefix}-ledger", watched)
    first = await _rows(pg_pool, user)
    summary = [(r["kind"], r["status"], r["channel"]) for r in first]
    assert summary == [
        ("outcome", "sent", "push"),
        ("outcome", "escalated", "push"),
        ("outcome", "sent", "email"),
        ("receipt", "delivered", "email"),
    ]
    dead = await pg_pool.fetch(
        "SELECT reason, source_topic, topic FROM herald_activity WHERE kind = 'dead_letter' AND topic = ANY($1)",
        [dlq(topics.events), dlq(topics.outcomes)],
    )
    assert sorted((r["reason"], r["source_topic"]) for r in dead) == [
        ("malformed", topics.outcomes),
        (f"reason-{user}", topics.events),
    ]

    # A replay from the beginning (a new group) adds nothing.
    before = await pg_pool.fetchval("SELECT count(*) FROM herald_activity WHERE user_id = $1", user)
    await _run(settings, f"{settings.topic_prefix}-replay", watched)
    assert (
        await pg_pool.fetchval("SELECT count(*) FROM herald_activity WHERE user_id = $1", user) == before == 4
    )


async def test_retention_drops_whole_days_and_old_records_are_not_written(pg_pool: asyncpg.Pool) -> None:
    writer = ActivityWriter(pg_pool, retention_days=3)
    user = f"ret-{uuid.uuid4().hex[:8]}"
    old_day = datetime(2001, 5, 10, 12, tzinfo=UTC)  # days no other test writes
    rows = [
        row_from_outcome(
            outcome(message(f"ev{i}-{user}", user, at=old_day + timedelta(days=i)), OutcomeStatus.SENT)
        )
        for i in range(5)
    ]
    today = partition_day(old_day + timedelta(days=4))
    assert await writer.insert(rows, today) == 3  # days 0 and 1 are past a 3-day retention
    assert await writer.insert(rows, today) == 0
    names = await writer.partitions()
    assert {partition_name(partition_day(old_day + timedelta(days=i))) for i in (2, 3, 4)} <= set(names)

    dropped = await writer.apply_retention(today + timedelta(days=2))
    assert partition_name(partition_day(old_day + timedelta(days=2))) in dropped
    assert partition_name(partition_day(old_day + timedelta(days=3))) in dropped
    left: Any = await pg_pool.fetchval("SELECT count(*) FROM herald_activity WHERE user_id = $1", user)
    assert left == 1
    await writer.apply_retention(datetime.now(UTC).date())  # leaves the test days behind
    assert await pg_pool.fetchval("SELECT count(*) FROM herald_activity WHERE user_id = $1", user) == 0


async def test_a_dead_letter_postgresql_refuses_is_stored_bare_never_sent_to_a_dlq_of_a_dlq(
    settings: HeraldSettings, pg_pool: asyncpg.Pool
) -> None:
    """A raw producer's dead letter with a 2,000-character reason of 4-byte characters: its index row
    (topic, reason) is too large for PostgreSQL. It cannot be dead-lettered again (``.dlq.dlq`` never
    exists): its row is stored bare, and the next dead letter is stored in full."""
    topics = Topics(settings.topic_prefix)
    rand = random.Random(7)
    huge = "".join(chr(0x20000 + rand.randrange(40_000)) for _ in range(2000))
    source = dlq(topics.events)
    for reason, offset in ((huge, 3), (f"fine-{settings.topic_prefix}", 4)):
        headers = dead_letter_headers(DeadLetter(reason, "Rejected", "raw"), topics.events, 0, offset, "g")
        await _produce_with_headers(settings, source, b"\x00junk", headers)
    await _run(settings, f"{settings.topic_prefix}-ledger", [source])
    rows = await pg_pool.fetch(
        "SELECT reason, detail FROM herald_activity WHERE topic = $1 ORDER BY length(reason) DESC", source
    )
    assert len(rows) == 2  # each dead letter has its row
    bare, full = rows
    assert bare["reason"] == "?" * 64  # what always fits, the refusal in detail
    assert bare["detail"].startswith(
        "stored without its identifiers: activity store refused: ProgramLimitExceeded"
    )
    assert full["reason"] == f"fine-{settings.topic_prefix}"
    assert await read_all(settings, dlq(source)) == []


async def test_a_foreign_receipt_at_the_owners_time_does_not_hide_the_owners(pg_pool: asyncpg.Pool) -> None:
    # Any end-user token may post a receipt for any notification id, with the time it likes: the
    # forger's (dropped by the fallback as foreign) and the owner's are two rows, whichever came first.
    writer = ActivityWriter(pg_pool, retention_days=30)
    owner = f"own-{uuid.uuid4().hex[:8]}"
    push = message(f"ev-{owner}", owner, Channel.PUSH)
    mine = receipt(push)
    forged = dataclasses.replace(mine, user_id=f"forger-{owner}")
    other_tenant = dataclasses.replace(mine, tenant="acme")  # the same user id in another tenant
    today = partition_day(mine.at)
    rows = [row_from_receipt(r) for r in (forged, mine, other_tenant)]
    assert await writer.insert(rows[:1], today) == 1
    assert await writer.insert(rows, today) == 2
    assert await writer.insert(rows, today) == 0  # and a replay still adds nothing
    stored = await pg_pool.fetch(
        "SELECT user_id, tenant FROM herald_activity WHERE notification_id = $1 AND kind = 'receipt'",
        push.notification_id,
    )
    assert sorted((r["user_id"], r["tenant"] or "") for r in stored) == [
        (f"forger-{owner}", ""),
        (owner, ""),
        (owner, "acme"),
    ]
