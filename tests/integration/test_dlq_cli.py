"""``herald dlq`` and ``herald why`` over the activity store, against the real broker and PostgreSQL."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from consumers.cli.dlq import list_dlq, replay_cmd, show_one
from consumers.cli.main import build_parser
from consumers.cli.why import why
from consumers.emitter import build_event
from consumers.infra.clock import SystemClock
from consumers.infra.settings import HeraldSettings
from consumers.ledger.deadletters import read_dead_letters
from consumers.ledger.sink import LedgerSink
from consumers.ledger.store import ActivityWriter
from consumers.runtime.handling import DeadLetter, Incoming, dead_letter_headers
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import Topics, dlq
from schemas.codec import default_codec
from schemas.models import Channel, DomainEvent, OutcomeStatus
from tests.kafka_helpers import read_all
from tests.ledger_helpers import message, outcome


async def _dead_letter(settings: HeraldSettings, topic: str, value: bytes, reason: str, source: str) -> None:
    headers = [
        ("trace-id", b"t-1"),
        *dead_letter_headers(DeadLetter(reason, "Rejected", "x"), source, 0, 3, "g"),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await (await producer.send(topic, value, key=b"k1", headers=headers))
    finally:
        await producer.stop()


async def _sink(settings: HeraldSettings, pool: asyncpg.Pool, topic: str) -> None:
    """What `herald run ledger` does with these records (its handler, without waiting for a group)."""
    sink = LedgerSink(ActivityWriter(pool, 30), default_codec(), SystemClock())
    batch = [
        Incoming(r.topic, r.partition, r.offset, r.key, r.value or b"", r.headers, r.timestamp_ms)
        async for r in read_dead_letters(settings, topic)
    ]
    await sink.handle(batch)


async def test_list_show_replay_and_audit(
    settings: HeraldSettings, pg_pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    topics = Topics(settings.topic_prefix)
    events_dlq = dlq(topics.events)
    await create_topics(settings, [topics.events, events_dlq], partitions=1)
    user = f"dlq-{uuid.uuid4().hex[:8]}"
    event = build_event("comment_reply", user_id=user, data={"author": "Ana"})
    reason = f"poison_{user}"
    await _dead_letter(settings, events_dlq, default_codec().encode(event), reason, topics.events)
    await _dead_letter(settings, events_dlq, b"\x00\x01garbage", "malformed", topics.events)
    await _dead_letter(settings, events_dlq, default_codec().encode(event), reason, "elsewhere.payments")
    await _sink(settings, pg_pool, events_dlq)
    parser = build_parser()

    assert await list_dlq(settings, parser.parse_args(["dlq", "list"])) == 0
    listed = capsys.readouterr().out.splitlines()
    assert all(ln.startswith(events_dlq) for ln in listed)  # only this Herald's topics, not other prefixes'
    assert sorted(ln.split("  ")[1:3] for ln in listed) == [["malformed", "1"], [reason, "2"]]

    assert await show_one(settings, parser.parse_args(["dlq", "show", "events.dlq", "0", "0"])) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["schema"] == "DomainEvent" and shown["body"]["user_id"] == user and shown["reason"] == reason
    assert await show_one(settings, parser.parse_args(["dlq", "show", "events.dlq", "0", "1"])) == 0
    assert json.loads(capsys.readouterr().out)["body_hex"] == b"\x00\x01garbage".hex()

    args = parser.parse_args(["dlq", "replay", "events.dlq", "--reason", reason, "--actor", "ops:ana"])
    assert await replay_cmd(settings, args) == 0
    assert "1 replayed, 1 skipped" in capsys.readouterr().out  # the foreign source topic is refused
    (back,) = await read_all(settings, topics.events)
    assert default_codec().decode(back.value, DomainEvent).event_id == event.event_id and back.key == b"k1"
    headers = dict(back.headers)
    assert headers["trace-id"] == b"t-1" and headers["herald-replayed-from"] == f"{events_dlq}:0:0".encode()
    assert not any(k.startswith("herald-dlq-") for k in headers)
    audit = await pg_pool.fetchrow(
        "SELECT actor, target_topic, selector, records FROM herald_dlq_audit WHERE dlq_topic = $1", events_dlq
    )
    assert dict(audit) == {
        "actor": "ops:ana",
        "target_topic": topics.events,
        "selector": f"reason={reason}",
        "records": 1,
    }

    args = parser.parse_args(["dlq", "replay", "events.dlq", "--at", "0:1", "--actor", "ops:bo"])
    assert await replay_cmd(settings, args) == 0
    assert len(await read_all(settings, topics.events)) == 2
    with pytest.raises(Exception, match="exactly one"):
        await replay_cmd(
            settings, parser.parse_args(["dlq", "replay", "events.dlq", "--all", "--reason", "x"])
        )


async def test_why_reads_the_store_first(
    settings: HeraldSettings, pg_pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    user = f"why-{uuid.uuid4().hex[:8]}"
    push = message(f"ev-{user}", user, Channel.PUSH)
    email = message(f"ev-{user}", user, Channel.EMAIL)
    from consumers.ledger.rows import (
        DeadLetterCoordinates,
        partition_day,
        row_from_dead_letter,
        row_from_outcome,
    )

    rows = [
        row_from_outcome(outcome(push, OutcomeStatus.SENT, after_s=1, provider="fcm")),
        row_from_outcome(outcome(push, OutcomeStatus.ESCALATED, after_s=300, reason="no_receipt")),
        row_from_outcome(
            outcome(email, OutcomeStatus.FAILED_PERMANENT, after_s=301, error_code="MessageRejected")
        ),
    ]
    letter = row_from_dead_letter(
        DeadLetterCoordinates("h.events.dlq", 1, 4, int(push.occurred_at.timestamp() * 1000) + 400_000),
        dead_letter_headers(DeadLetter("poison", "Rejected", "boom"), "h.events", 0, 9, "herald-classifier"),
        {"event_id": push.event_id, "user_id": user, "notification_id": push.notification_id},
    )
    rows.append(letter)
    await ActivityWriter(pg_pool, 30).insert(rows, partition_day(push.occurred_at))
    parser = build_parser()
    assert await why(settings, parser.parse_args(["why", push.event_id, "--source", "store"])) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("  ")[1:3] for ln in lines[:3]] == [
        ["sent", "push"],
        ["escalated", "push"],
        ["failed_permanent", "email"],
    ]
    assert lines[3] == (
        "dead-lettered by herald-classifier reading h.events  reason=poison  at h.events.dlq partition 1 "
        "offset 4  (boom)"
    )
    assert (
        "provider=fcm" in lines[0] and "reason=no_receipt" in lines[1] and "error=MessageRejected" in lines[2]
    )
    assert await why(settings, parser.parse_args(["why", "nope", "--source", "store"])) == 1
    # Nothing in the store: the outcomes topic is read as before (it does not exist here: no outcomes).
    await create_topics(settings, [Topics(settings.topic_prefix).outcomes])
    capsys.readouterr()
    assert await why(settings, parser.parse_args(["why", "nope"])) == 1
    assert "no outcomes recorded" in capsys.readouterr().out


async def test_why_tells_tenants_apart_in_the_store(
    settings: HeraldSettings, pg_pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    # acme and the default tenant both used event id ev-…, for the same user id.
    import dataclasses

    from consumers.infra import keys
    from consumers.ledger.rows import partition_day, row_from_outcome, row_from_receipt
    from tests.ledger_helpers import receipt

    user = f"why-{uuid.uuid4().hex[:8]}"
    event_id = f"ev-{user}"
    ours = dataclasses.replace(message(event_id, user, Channel.PUSH), tenant=None)
    acme = dataclasses.replace(
        ours,
        notification_id=keys.notification_id(event_id, user, "acme"),
        idempotency_key=keys.idempotency_key(event_id, "push", ours.recipient, "acme"),
        tenant="acme",
    )
    rows = [
        row_from_outcome(outcome(ours, OutcomeStatus.SENT, after_s=1)),
        row_from_outcome(outcome(acme, OutcomeStatus.SENT, after_s=2)),
        row_from_receipt(receipt(acme, after_s=3)),
    ]
    await ActivityWriter(pg_pool, 30).insert(rows, partition_day(ours.occurred_at))
    parser = build_parser()

    async def lines(*extra: str) -> list[str]:
        assert await why(settings, parser.parse_args(["why", event_id, "--source", "store", *extra])) == 0
        return capsys.readouterr().out.strip().splitlines()

    every = await lines()
    assert ["tenant=acme" in ln for ln in every] == [
        False,
        True,
        True,
    ]  # the receipt takes its notification's
    assert len(await lines("--user", user)) == 1
    only = await lines("--user", user, "--tenant", "acme")
    assert len(only) == 2 and all("tenant=acme" in ln for ln in only)
    assert await why(settings, parser.parse_args(["why", event_id, "--tenant", "acme"])) == 2
    assert "--tenant needs --user" in capsys.readouterr().err
