"""``herald run classifier`` / ``herald run scheduler`` builds, and ``herald why`` over real outcomes."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from consumers.classifier.handler import Classifier
from consumers.classifier.process import build
from consumers.cli.main import build_parser
from consumers.cli.why import why
from consumers.emitter import build_event
from consumers.infra.clock import ManualClock
from consumers.infra.resources import Resources
from consumers.infra.settings import ClassifierSettings, HeraldSettings
from consumers.runtime.handling import DeadLetter, Incoming, dead_letter_headers
from consumers.runtime.kafka import create_topics
from consumers.runtime.process import ProcessOptions
from consumers.runtime.topics import Topics, dlq
from consumers.scheduler.process import build as build_scheduler
from schemas.codec import default_codec
from schemas.errors import ConfigurationError
from tests.kafka_helpers import produce_raw


async def test_build_validates_the_routing_table_at_start(settings: HeraldSettings, tmp_path: Path) -> None:
    bad = tmp_path / "routing.yaml"
    bad.write_text("routes:\n  - {match: x, tier: urgent, category: c, channels: [push], template: t}\n")
    res = Resources(settings.model_copy(update={"classifier": ClassifierSettings(routing_file=bad)}))
    try:
        with pytest.raises(ConfigurationError, match="bad tier 'urgent'"):
            await build(res, ProcessOptions(group=None))
    finally:
        await res.close()


async def test_build_makes_one_runner_and_the_topics(settings: HeraldSettings) -> None:
    res = Resources(settings)
    try:
        spec = await build(res, ProcessOptions(group=None))
        (runner,) = spec.runners
        assert isinstance(runner.handler, Classifier)
        assert runner.group_id == "herald-classifier" and runner.topics == [res.topics.events]
        sched = await build_scheduler(res, ProcessOptions())
        assert len(sched.loops) == 1 and not sched.runners
    finally:
        await res.close()


async def test_why_prints_every_decision_for_an_event(
    settings: HeraldSettings, pg_pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    user = f"why-{uuid.uuid4().hex[:8]}"
    await pg_pool.execute(
        "INSERT INTO herald_recipients (user_id, email) VALUES ($1, $2)", user, f"{user}@example.com"
    )
    await pg_pool.execute(
        "INSERT INTO herald_preferences (user_id, category, channel, enabled) VALUES ($1, 'security', 'sms', "
        "false)",
        user,
    )
    res = Resources(settings, clock=ManualClock())
    try:
        spec = await build(res, ProcessOptions(group=None))
        handler: Any = spec.runners[0].handler
        event = build_event("security_alert", user_id=user)  # critical: opt-out ignored, no phone
        other = build_event("payment_receipt", user_id=user)
        results = await handler.handle(
            [Incoming("e", 0, i, None, e, (), 0) for i, e in enumerate([event, other])]
        )
    finally:
        await res.close()
    topics = Topics(settings.topic_prefix)
    await create_topics(settings, [topics.outcomes])
    outcomes = [
        (o.key, o.value)
        for r in results
        if not isinstance(r, DeadLetter)
        for o in r
        if o.topic == topics.outcomes
    ]
    await produce_raw(settings, topics.outcomes, outcomes)

    args = build_parser().parse_args(["why", event.event_id])
    assert await why(settings, args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert (
        len(lines) == 1 and "suppressed" in lines[0] and "sms" in lines[0] and "reason=no_address" in lines[0]
    )
    assert await why(settings, build_parser().parse_args(["why", event.event_id, "--user", user])) == 0
    assert capsys.readouterr().out.strip().splitlines() == lines
    assert await why(settings, build_parser().parse_args(["why", "no-such-event"])) == 1


async def test_why_tells_when_the_event_went_to_a_dead_letter_topic(
    settings: HeraldSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    res = Resources(settings, clock=ManualClock())
    try:
        spec = await build(res, ProcessOptions(group=None))
        handler: Any = spec.runners[0].handler
        event = build_event("no_such_event_type", user_id=f"why-{uuid.uuid4().hex[:8]}")
        (letter,) = await handler.handle([Incoming(res.topics.events, 0, 7, None, event, (), 0)])
    finally:
        await res.close()
    assert isinstance(letter, DeadLetter)
    # What the runner writes for a dead letter: the event's bytes and the reason in headers.
    topic = dlq(Topics(settings.topic_prefix).events)
    await create_topics(settings, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        headers = dead_letter_headers(letter, Topics(settings.topic_prefix).events, 0, 7, "herald-classifier")
        await producer.send_and_wait(topic, default_codec().encode(event), headers=headers)
    finally:
        await producer.stop()

    assert await why(settings, build_parser().parse_args(["why", event.event_id])) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert "dead-lettered by herald-classifier" in line and "reason=unknown_event_type" in line
    assert f"at {topic} partition" in line and "offset" in line


async def test_why_finds_a_dead_letter_whose_schema_it_does_not_know(
    settings: HeraldSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    # A producer on a contract Herald does not ship: the runner dead-letters it as unknown_schema,
    # and `herald why` still finds it by the event id every contract starts with.
    event = build_event("order_shipped", user_id=f"why-{uuid.uuid4().hex[:8]}")
    data = bytearray(default_codec().encode(event))
    data[2:10] = bytes(8)
    topic = dlq(Topics(settings.topic_prefix).events)
    await create_topics(settings, Topics(settings.topic_prefix).all())
    letter = DeadLetter("unknown_schema", "DecodeError", "no contract has fingerprint 0000000000000000")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        headers = dead_letter_headers(letter, Topics(settings.topic_prefix).events, 0, 9, "herald-classifier")
        await producer.send_and_wait(topic, bytes(data), headers=headers)
    finally:
        await producer.stop()

    assert await why(settings, build_parser().parse_args(["why", event.event_id])) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert "reason=unknown_schema" in line and f"at {topic} partition" in line
