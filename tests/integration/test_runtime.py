"""The consume→handle→produce loop against the real broker: DLQ, commits, outages."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from consumers.emitter import build_event
from consumers.infra.settings import HeraldSettings
from consumers.runtime.handling import DeadLetter, Incoming, Output, Result
from consumers.runtime.kafka import create_topics, make_producer
from consumers.runtime.passthrough import PassThrough
from consumers.runtime.runner import Runner
from consumers.runtime.topics import Topics, dlq
from schemas.codec import MAGIC, default_codec
from schemas.errors import DependencyUnavailable
from tests.kafka_helpers import committed_offsets, produce_raw, wait_for_records


async def _run_until(
    runner: Runner[object], done: asyncio.Future[None] | None = None, timeout: float = 40
) -> None:
    task = asyncio.create_task(runner.run())
    try:
        if done is not None:
            await asyncio.wait_for(done, timeout)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)


def _event(i: int) -> bytes:
    return default_codec().encode(build_event("comment_reply", user_id=f"u{i}", data={"i": i}))


async def test_poison_bytes_go_to_dlq_with_reason_and_the_partition_moves_on(
    settings: HeraldSettings,
) -> None:
    topics = Topics(settings.topic_prefix)
    target = f"{settings.topic_prefix}.out"
    await create_topics(settings, [topics.events, dlq(topics.events), target], partitions=1)
    unknown_fingerprint = MAGIC + b"\x00" * 8 + b"\x02"
    await produce_raw(
        settings,
        topics.events,
        [
            (b"a", _event(1)),
            (b"b", b"\x00garbage"),
            (b"c", unknown_fingerprint),
            (b"d", _event(2)[:-4]),  # truncated Avro
            (b"e", _event(3)),
        ],
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        runner = Runner(
            PassThrough(target),
            topics=[topics.events],
            group_id=f"{settings.topic_prefix}-g",
            bootstrap_servers=settings.kafka_bootstrap_servers,
            producer=producer,
            settings=settings.runtime,
        )
        task = asyncio.create_task(runner.run())
        out = await wait_for_records(settings, target, 2)
        dead = await wait_for_records(settings, dlq(topics.events), 3)
        runner.stop()
        await asyncio.wait_for(task, 20)
    finally:
        await producer.stop()
    assert [r.key for r in out] == [b"a", b"e"]
    reasons = {r.key: dict(r.headers)["herald-dlq-reason"] for r in dead}
    assert reasons == {b"b": b"malformed", b"c": b"unknown_schema", b"d": b"malformed"}
    headers = dict(dead[0].headers)
    assert headers["herald-source-topic"] == topics.events.encode()
    assert headers["herald-source-offset"] == b"1"
    assert headers["herald-dlq-error-class"] == b"DecodeError"
    assert dead[0].value == b"\x00garbage"  # the original bytes are kept
    assert await committed_offsets(settings, f"{settings.topic_prefix}-g", topics.events) == {0: 5}


class _Flaky:
    """Fails with DependencyUnavailable a few times (a dependency outage), rejects one record, forwards the rest."""

    name = "flaky"

    def __init__(self, target: str, failures: int) -> None:
        self.target = target
        self.failures = failures
        self.calls = 0

    def decode(self, raw: bytes) -> bytes:
        return raw

    async def handle(self, batch: Sequence[Incoming[bytes]]) -> Sequence[Result]:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise DependencyUnavailable("database down")
        results: list[Result] = []
        for item in batch:
            if item.value == b"boom":
                raise ValueError("cannot handle boom")  # isolated to this record by the runtime
            if item.value == b"reject":
                results.append(DeadLetter("unknown_event_type", "UnknownEventType", "no route"))
            else:
                results.append([Output(self.target, item.value, item.key)])
        return results


async def test_retryable_errors_are_retried_and_failures_isolated_to_one_record(
    settings: HeraldSettings,
) -> None:
    source, target = f"{settings.topic_prefix}.in", f"{settings.topic_prefix}.out"
    await create_topics(settings, [source, dlq(source), target], partitions=1)
    await produce_raw(settings, source, [(b"1", b"ok1"), (b"2", b"boom"), (b"3", b"reject"), (b"4", b"ok2")])
    producer = make_producer(settings)
    await producer.start()
    handler = _Flaky(target, failures=3)
    try:
        runner: Runner[bytes] = Runner(
            handler,
            topics=[source],
            group_id=f"{settings.topic_prefix}-f",
            bootstrap_servers=settings.kafka_bootstrap_servers,
            producer=producer,
            settings=settings.runtime.model_copy(update={"handler_retry_base_s": 0.01}),
        )
        task = asyncio.create_task(runner.run())
        out = await wait_for_records(settings, target, 2)
        dead = await wait_for_records(settings, dlq(source), 2)
        runner.stop()
        await asyncio.wait_for(task, 20)
    finally:
        await producer.stop()
    assert [r.value for r in out] == [b"ok1", b"ok2"]
    by_value = {r.value: dict(r.headers) for r in dead}
    assert by_value[b"boom"]["herald-dlq-reason"] == b"handler_error"
    assert by_value[b"boom"]["herald-dlq-error-class"] == b"ValueError"
    assert by_value[b"reject"]["herald-dlq-reason"] == b"unknown_event_type"
    assert handler.calls >= 4  # three failed tries, then success
