"""The in-app inbox on real PostgreSQL: idempotent create, keyset pages, per-user scoping,
read receipts on real Kafka, the in_app adapter and the janitor."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio

from channels.base import Content
from channels.in_app.inbox import InAppAdapter
from channels.in_app.inbox_pg import InboxService, decode_cursor, encode_cursor
from consumers.devstack import DevStack
from consumers.inbox.archive import partition_for
from consumers.inbox.janitor import (
    InboxJanitor,
    Sweep,
)
from consumers.inbox.reads import InboxReads
from consumers.infra.clock import ManualClock
from consumers.infra.settings import HeraldSettings, InAppSettings
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import ChannelMessage, Receipt, ReceiptStatus, Tier
from tests.inbox_helpers import isolated_inbox
from tests.kafka_helpers import wait_for_records


@pytest_asyncio.fixture(loop_scope="session")
async def inbox(pg_pool: asyncpg.Pool) -> InboxService:
    return InboxService(pg_pool)


def uid() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


async def add(inbox: InboxService, user: str, n: int = 1, **kw: object) -> list[uuid.UUID]:
    ids = []
    for i in range(n):
        row_id, created = await inbox.create(
            user_id=user,
            notification_id=str(uuid.uuid4()),
            type_="comment_reply",
            category="activity",
            title=f"title {i}",
            body=f"body {i}",
            idempotency_key="msg_" + uuid.uuid4().hex,
            data={"i": i},
            **kw,  # type: ignore[arg-type]
        )
        assert created
        ids.append(row_id)
    return ids


async def test_create_is_idempotent(inbox: InboxService, pg_pool: asyncpg.Pool) -> None:
    user, key = uid(), "msg_" + uuid.uuid4().hex
    args = dict(
        user_id=user,
        notification_id="n",
        type_="mention",
        category="activity",
        title="t",
        body="b",
        idempotency_key=key,
    )
    first = await inbox.create(**args)  # type: ignore[arg-type]
    again = await inbox.create(**args)  # type: ignore[arg-type]
    assert first[1] and not again[1] and first[0] == again[0]
    assert await pg_pool.fetchval("SELECT count(*) FROM herald_inbox WHERE idempotency_key = $1", key) == 1
    assert await inbox.unread_count(user) == 1


async def test_pages_are_keyset_and_stable_under_inserts(inbox: InboxService) -> None:
    user = uid()
    ids = await add(inbox, user, 25)
    page1 = await inbox.get_unread(user, limit=10)
    assert [i.id for i in page1.items] == ids[::-1][:10]  # newest first
    assert page1.items[0].data == {"i": 24} and page1.next_cursor
    await add(inbox, user, 5)  # new rows arrive while the user scrolls: no duplicates, no gaps
    page2 = await inbox.get_unread(user, limit=10, cursor=page1.next_cursor)
    page3 = await inbox.get_unread(user, limit=10, cursor=page2.next_cursor)
    assert [i.id for i in page2.items + page3.items] == ids[::-1][10:]
    assert page3.next_cursor is None and len(page3.items) == 5


async def test_pages_break_created_at_ties_by_id(inbox: InboxService, pg_pool: asyncpg.Pool) -> None:
    user = uid()
    ids = await add(inbox, user, 7)
    await pg_pool.execute("UPDATE herald_inbox SET created_at = '2026-01-01Z' WHERE user_id = $1", user)
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await inbox.get_unread(user, limit=3, cursor=cursor)
        seen += [i.id for i in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))


def test_cursor_roundtrip_and_garbage() -> None:
    now, id_ = datetime.now(UTC), uuid.uuid4()
    assert decode_cursor(encode_cursor(now, id_)) == (now, id_)
    for bad in ["", "!!!", "bm90IGEgY3Vyc29y", encode_cursor(now, id_)[:-8]]:
        with pytest.raises(ValueError):
            decode_cursor(bad)


async def test_mark_read_is_scoped_per_user(inbox: InboxService) -> None:
    alice, bob = uid(), uid()
    a_ids, b_ids = await add(inbox, alice, 3), await add(inbox, bob, 2)
    read = await inbox.mark_read(alice, [a_ids[0], b_ids[0]])  # bob's id is silently ignored
    assert [r.id for r in read] == [a_ids[0]] and read[0].user_id == alice
    assert await inbox.unread_count(alice) == 2 and await inbox.unread_count(bob) == 2
    assert await inbox.mark_read(bob, a_ids) == []
    again = await inbox.mark_read(alice, [a_ids[0]])  # re-reading returns the row with its first read time
    assert again[0].read_at == read[0].read_at
    everything = await inbox.mark_all_read(alice)
    assert sorted(r.id for r in everything) == sorted(a_ids[1:])
    assert await inbox.unread_count(alice) == 0 and (await inbox.get_unread(alice)).items == []
    assert await inbox.unread_count(bob) == 2


async def test_expired_rows_are_hidden(inbox: InboxService) -> None:
    user = uid()
    await add(inbox, user, 2, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    keep = await add(inbox, user, 1, expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert await inbox.unread_count(user) == 1
    assert [i.id for i in (await inbox.get_unread(user)).items] == keep


async def test_reads_publish_receipts(inbox: InboxService, settings: HeraldSettings) -> None:
    topics = Topics(settings.topic_prefix)
    await create_topics(settings, [topics.receipts])
    producer = make_producer(settings)
    await producer.start()
    try:
        reads = InboxReads(inbox, producer, topics)
        user = uid()
        ids = await add(inbox, user, 3)
        rows = await reads.mark_read(user, ids[:1])
        rows += await reads.mark_all_read(user)
        records = await wait_for_records(settings, topics.receipts, 3)
    finally:
        await producer.stop()
    codec = default_codec()
    receipts = [codec.decode(r.value, Receipt) for r in records]
    assert sorted(r.notification_id for r in receipts) == sorted(r.notification_id for r in rows)
    assert {(r.status, r.source, r.channel, r.user_id) for r in receipts} == {
        (ReceiptStatus.READ, "inbox", "in_app", user)
    }
    assert {rec.key.decode() for rec in records} == {r.notification_id for r in rows}


def in_app_message(user: str, **kw: object) -> ChannelMessage:
    fields: dict[str, object] = dict(
        notification_id=str(uuid.uuid4()),
        event_id=str(uuid.uuid4()),
        event_type="comment_reply",
        user_id=user,
        channel="in_app",
        lane="priority",
        tier=Tier.MEDIUM,
        category="activity",
        recipient=user,
        template="comment_reply",
        locale="en",
        idempotency_key="msg_" + uuid.uuid4().hex,
        occurred_at=datetime.now(UTC),
        payload=json.dumps({"author": "Ana", "post_title": "Kafka"}),
    )
    fields.update(kw)
    return ChannelMessage(**fields)  # type: ignore[arg-type]


async def test_in_app_adapter_creates_one_row_per_key(inbox: InboxService) -> None:
    adapter = InAppAdapter(inbox)
    user = uid()
    m = in_app_message(user)
    content = Content(title="Ana replied", text="on Kafka")
    first = await adapter.deliver(m, content, idempotency_key=m.idempotency_key)
    again = await adapter.deliver(m, content, idempotency_key=m.idempotency_key)
    assert first.ok and again.ok and first.provider == "inbox"
    assert first.provider_message_id == again.provider_message_id and again.detail == "already in the inbox"
    [item] = (await inbox.get_unread(user)).items
    assert (item.title, item.body, item.type, item.category) == (
        "Ana replied",
        "on Kafka",
        "comment_reply",
        "activity",
    )
    assert item.notification_id == m.notification_id and item.data == {"author": "Ana", "post_title": "Kafka"}
    empty = await adapter.deliver(in_app_message(user), Content(title="  "), idempotency_key="k")
    assert (empty.status, empty.reason) == ("failed_permanent", "empty_title")


async def test_janitor_archives_old_read_and_expired_rows_in_batches(
    pg_pool: asyncpg.Pool, stack: DevStack
) -> None:
    async with isolated_inbox(pg_pool, stack.database_url) as pool:
        inbox = InboxService(pool)
        user = uid()
        now = datetime.now(UTC)
        old_read = await add(inbox, user, 7)
        recent_read = await add(inbox, user, 2)
        unread_old = await add(inbox, user, 2)
        expired = await add(inbox, user, 3, expires_at=now - timedelta(minutes=1))
        await inbox.mark_read(user, old_read + recent_read + expired[:1])
        await pool.execute(
            "UPDATE herald_inbox SET read_at = $2 WHERE id = ANY($1::uuid[])",
            old_read,
            now - timedelta(days=31),
        )
        await pool.execute(
            "UPDATE herald_inbox SET created_at = $2 WHERE id = ANY($1::uuid[])",
            unread_old,
            now - timedelta(days=400),
        )
        before = {r["id"]: dict(r) for r in await pool.fetch("SELECT * FROM herald_inbox")}
        janitor = InboxJanitor(pool, InAppSettings(retention_days=30, janitor_batch=3), ManualClock(now))
        result = await janitor.sweep(now)
        left = {r["id"] for r in await pool.fetch("SELECT id FROM herald_inbox")}
        assert left == set(recent_read + unread_old)  # unread rows are never swept, however old
        assert (result.read_archived, result.expired_archived) == (7, 3)
        assert result.batches == 3 + 2  # batches of 3: 3+3+1 read, then 3+0 expired
        # moved, not deleted: every swept row is in this month's archive partition, unchanged
        archived = await pool.fetch(f"SELECT * FROM {partition_for(now).name}")
        assert {r["id"] for r in archived} == set(old_read + expired)
        for r in archived:
            row = dict(r)
            assert row.pop("archived_at") == now and row == before[r["id"]]
        assert await janitor.sweep(now) == Sweep(0, 0, 2)


async def test_archive_partitions_past_their_retention_are_dropped(
    pg_pool: asyncpg.Pool, stack: DevStack
) -> None:
    async with isolated_inbox(pg_pool, stack.database_url) as pool:
        inbox = InboxService(pool)
        then = datetime(2025, 1, 15, tzinfo=UTC)
        ids = await add(inbox, uid(), 2, expires_at=then - timedelta(minutes=1))
        settings = InAppSettings(archive_retention_days=60)
        janitor = InboxJanitor(pool, settings, ManualClock(then))
        assert (await janitor.sweep(then)).expired_archived == 2
        assert (
            await pool.fetchval("SELECT count(*) FROM herald_inbox_archive WHERE id = ANY($1::uuid[])", ids)
            == 2
        )
        # 60 days after the end of January the January partition goes, whole
        assert (await janitor.sweep(datetime(2025, 4, 1, tzinfo=UTC))).partitions_dropped == 0
        later = datetime(2025, 4, 2, tzinfo=UTC)
        assert (await janitor.sweep(later)).partitions_dropped == 1
        assert await pool.fetchval("SELECT count(*) FROM herald_inbox_archive") == 0
        assert await pool.fetchval("SELECT to_regclass($1)", partition_for(then).name) is None


async def test_janitor_run_loop_stops(pg_pool: asyncpg.Pool, stack: DevStack) -> None:
    async with isolated_inbox(pg_pool, stack.database_url) as pool:
        inbox = InboxService(pool)
        now = datetime.now(UTC)
        await add(inbox, uid(), 2, expires_at=now - timedelta(seconds=1))
        janitor = InboxJanitor(pool, InAppSettings(janitor_interval_s=30), ManualClock(now))
        stopping = asyncio.Event()
        task = asyncio.create_task(janitor.run(stopping))
        for _ in range(100):
            if await pool.fetchval("SELECT count(*) FROM herald_inbox") == 0:
                break
            await asyncio.sleep(0.02)
        stopping.set()
        await asyncio.wait_for(task, 2)  # does not wait out the 30 s interval
        assert await pool.fetchval("SELECT count(*) FROM herald_inbox") == 0


async def test_janitor_deletes_early_receipts_that_waited_an_hour(
    pg_pool: asyncpg.Pool, stack: DevStack
) -> None:
    # Any end-user token may post a receipt for an id nothing ever sends: it must not stay forever.
    async with isolated_inbox(pg_pool, stack.database_url) as pool:
        now = datetime.now(UTC)
        old, fresh = f"n-{uuid.uuid4().hex}", f"n-{uuid.uuid4().hex}"
        for nid, received in ((old, now - timedelta(minutes=61)), (fresh, now - timedelta(minutes=59))):
            await pool.execute(
                "INSERT INTO herald_early_receipts (notification_id, status, user_id, at, source, received_at) "
                "VALUES ($1, 'delivered', 'u', $2, 'api', $2)",
                nid,
                received,
            )
        await InboxJanitor(pool, InAppSettings(), ManualClock(now), receipt_window_days=30).sweep(now)
        left = "SELECT notification_id FROM herald_early_receipts WHERE notification_id = ANY($1::text[])"
        assert [r["notification_id"] for r in await pool.fetch(left, [old, fresh])] == [fresh]
