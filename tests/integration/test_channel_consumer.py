"""The generic channel consumer against real Redis (delivery ledger) and a scripted provider.

The provider here is a fake at the adapter boundary (the ``ChannelAdapter`` contract), so the
consumer's own logic (ordering, concurrency, retries, ledger, outcomes) is what is tested.
The email and SMS tests run the same consumer against moto.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis.asyncio as redis_asyncio

from channels.base import Content, Outcome, PermanentDelivery, RetryableDelivery
from channels.templates import TemplateRenderer
from consumers.channel.cancelled import CancelCheck
from consumers.channel.consumer import ChannelConsumer
from consumers.channel.ledger import DeliveryLedger, LedgerState
from consumers.infra.keys import idempotency_key, notification_id, outcome_id
from consumers.infra.settings import ChannelConsumerSettings, HeraldSettings
from consumers.runtime import metrics
from consumers.runtime.handling import DeadLetter, Incoming, Output, Result
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier, utcnow

CODEC = default_codec()


def message(
    user: str,
    *,
    channel: Channel = Channel.SMS,
    template: str = "login_code",
    locale: str = "en",
    payload: dict[str, object] | None = None,
    event_id: str | None = None,
    attempt: int = 1,
    expires_in_s: float | None = None,
    recipient: str | None = None,
    tier: Tier = Tier.HIGH,
) -> ChannelMessage:
    event_id = event_id or str(uuid.uuid4())
    recipient = recipient or ("+15555550100" if channel is Channel.SMS else f"{user}@example.org")
    now = utcnow()
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # Avro timestamp-millis
    return ChannelMessage(
        notification_id=notification_id(event_id, user),
        event_id=event_id,
        event_type=template,
        user_id=user,
        channel=channel,
        lane=Lane.PRIORITY,
        tier=tier,
        category="auth",
        recipient=recipient,
        template=template,
        locale=locale,
        idempotency_key=idempotency_key(event_id, channel.value, recipient),
        occurred_at=now - timedelta(seconds=1),
        payload=json.dumps(payload if payload is not None else {"code": "1"}),
        attempt=attempt,
        expires_at=None if expires_in_s is None else now + timedelta(seconds=expires_in_s),
    )


def incoming(messages: Sequence[ChannelMessage], topic: str = "t") -> list[Incoming[ChannelMessage]]:
    return [Incoming(topic, 0, i, m.user_id.encode(), m, (), 0) for i, m in enumerate(messages)]


def outcomes(results: Sequence[Result]) -> list[DeliveryOutcome]:
    out = []
    for r in results:
        assert not isinstance(r, DeadLetter), r
        (o,) = r
        assert isinstance(o, Output)
        out.append(CODEC.decode(o.value, DeliveryOutcome))
    return out


@dataclass
class ScriptedProvider:
    """Answers per recipient from a script; records calls with timing."""

    channel: Channel = Channel.SMS
    provider: str = "scripted"
    delay_s: float = 0.0
    script: dict[str, list[Outcome | Exception]] = field(default_factory=dict)
    calls: list[tuple[str, str, float, float]] = field(default_factory=list)  # (user, text, start, end)
    in_flight: int = 0
    max_in_flight: int = 0

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        start = time.monotonic()
        try:
            await asyncio.sleep(self.delay_s)
            answers = self.script.get(message.recipient)
            answer: Outcome | Exception = answers.pop(0) if answers else Outcome.sent(self.provider, "pm-1")
            if isinstance(answer, Exception):
                raise answer
            return answer
        finally:
            self.in_flight -= 1
            self.calls.append((message.user_id, content.text or "", start, time.monotonic()))

    async def close(self) -> None:
        pass


def make_consumer(
    settings: HeraldSettings, adapter: ScriptedProvider, *, redis_url: str | None = None, **channel: Any
) -> ChannelConsumer:
    cfg = ChannelConsumerSettings(
        **{"concurrency": 8, "inprocess_retries": 2, "inprocess_retry_max_s": 0.05, **channel}
    )
    consumer = ChannelConsumer(
        channel=adapter.channel,
        lane=Lane.PRIORITY,
        adapter=adapter,
        topics=Topics(settings.topic_prefix),
        settings=cfg,
        renderer=TemplateRenderer(settings.templates_dir, settings.default_locale),
    )
    client = redis_asyncio.Redis.from_url(
        redis_url or settings.redis_url.get_secret_value(), socket_timeout=0.5, socket_connect_timeout=0.5
    )
    consumer.ledger = DeliveryLedger(
        client,
        ttl_s=cfg.ledger_ttl_s,
        namespace=f"{settings.topic_prefix}:delivery",
        consumer=consumer.name,
    )
    # On the ledger's client, as in production: the batch's two Redis reads share one MGET.
    consumer.cancel_check = CancelCheck(
        client, consumer=consumer.name, prefix=f"{settings.topic_prefix}:cancel"
    )
    return consumer


async def test_keys_run_concurrently_but_one_user_stays_in_order(settings: HeraldSettings) -> None:
    provider = ScriptedProvider(delay_s=0.02)
    consumer = make_consumer(settings, provider, concurrency=4)
    batch = [message(f"u{i % 10}", payload={"code": f"{i}"}) for i in range(60)]
    results = outcomes(await consumer.handle(incoming(batch)))
    assert [o.status for o in results] == [OutcomeStatus.SENT] * 60
    # ten users, four slots: the slots fill (behaviour, not a wall-clock bound a busy machine breaks)
    assert provider.max_in_flight == 4
    for user in {m.user_id for m in batch}:
        calls = [c for c in provider.calls if c[0] == user]
        expected = [
            f"Your sign-in code is {m.data()['code']}. Never share it." for m in batch if m.user_id == user
        ]
        assert [c[1] for c in calls] == expected  # offset order per key
        assert all(a[3] <= b[2] for a, b in itertools.pairwise(calls))  # never overlapping


async def test_outcome_carries_the_message_keyed_by_notification_id(settings: HeraldSettings) -> None:
    consumer = make_consumer(settings, ScriptedProvider())
    m = message("u-outcome", attempt=3)
    (result,) = await consumer.handle(incoming([m]))
    assert not isinstance(result, DeadLetter)
    (out,) = result
    assert out.topic == f"{settings.topic_prefix}.outcomes"
    assert out.key == m.notification_id.encode()
    o = CODEC.decode(out.value, DeliveryOutcome)
    assert (o.status, o.provider, o.provider_message_id) == (OutcomeStatus.SENT, "scripted", "pm-1")
    assert o.attempt == 3
    assert o.outcome_id == outcome_id(m.idempotency_key, "sent", 3)
    assert o.message == m and o.idempotency_key == m.idempotency_key and o.channel is Channel.SMS


async def test_duplicates_within_the_window_are_not_sent_twice(settings: HeraldSettings) -> None:
    provider = ScriptedProvider()
    consumer = make_consumer(settings, provider)
    m = message("u-dup")
    first = outcomes(await consumer.handle(incoming([m])))
    second = outcomes(await consumer.handle(incoming([m, m])))
    assert len(provider.calls) == 1
    assert [o.status for o in first + second] == [OutcomeStatus.SENT] * 3
    assert {o.outcome_id for o in first + second} == {first[0].outcome_id}  # same decision, same id
    assert second[0].provider_message_id == "pm-1" and "duplicate" in (second[0].detail or "")


async def test_failures_are_not_remembered_so_a_retry_sends(settings: HeraldSettings) -> None:
    m = message("u-fail-then-ok")
    failure = Outcome("failed_retryable", "scripted", provider_code="503")
    provider = ScriptedProvider(script={m.recipient: [failure] * 3})
    consumer = make_consumer(settings, provider)
    (failed,) = outcomes(await consumer.handle(incoming([m])))
    assert failed.status is OutcomeStatus.FAILED_RETRYABLE and failed.error_code == "503"
    assert len(provider.calls) == 3  # first try + 2 in-process retries
    (ok,) = outcomes(await consumer.handle(incoming([m])))
    assert ok.status is OutcomeStatus.SENT and len(provider.calls) == 4


async def test_redis_down_degrades_the_ledger_but_still_delivers(settings: HeraldSettings) -> None:
    provider = ScriptedProvider()
    consumer = make_consumer(settings, provider, redis_url="redis://127.0.0.1:1/0")
    counter = metrics.DEPENDENCY_ERRORS.labels("redis", consumer.name)
    before = counter._value.get()
    (o,) = outcomes(await consumer.handle(incoming([message("u-noredis")])))
    assert o.status is OutcomeStatus.SENT and len(provider.calls) == 1
    # the cancellation check and the ledger lookup (one MGET, each counts), claim and done
    assert counter._value.get() == before + 4


async def test_ledger_claims_by_compare_and_set_and_remembers_done_for_its_ttl(
    settings: HeraldSettings,
) -> None:
    client = redis_asyncio.Redis.from_url(settings.redis_url.get_secret_value())
    ns = f"{settings.topic_prefix}:dd"
    mine = DeliveryLedger(client, ttl_s=120, namespace=ns, consumer="a")
    other = DeliveryLedger(client, ttl_s=120, namespace=ns, consumer="b")
    try:
        assert await mine.claim("k1", None)
        assert not await other.claim("k1", None)  # it changed since "b" looked: b must not send
        await other.release("k1")  # not b's claim: nothing happens
        (entry,) = (await other.lookup(["k1"])).values()
        assert (entry.state, entry.owner) == (LedgerState.IN_FLIGHT, mine.owner)
        await mine.done("k1", "pm-1")
        assert (await mine.lookup(["k1", "k2"]))["k1"].provider_id == "pm-1"
        assert 100 < await client.ttl(f"{ns}:ledger:k1") <= 120
        assert await mine.claim("k2", None)
        await mine.release("k2")  # a failed attempt: the retry may send
        assert await mine.lookup(["k2"]) == {}
    finally:
        await client.aclose()


async def test_in_process_retry_recovers_a_transient_error(settings: HeraldSettings) -> None:
    m = message("u-transient")
    throttled = RetryableDelivery("scripted", "Throttling", "slow down")
    provider = ScriptedProvider(script={m.recipient: [throttled]})
    consumer = make_consumer(settings, provider)
    (o,) = outcomes(await consumer.handle(incoming([m])))
    assert o.status is OutcomeStatus.SENT and o.attempt == 1 and len(provider.calls) == 2


async def test_long_retry_after_is_left_to_the_fallback_consumer(settings: HeraldSettings) -> None:
    m = message("u-retry-after", attempt=2)
    provider = ScriptedProvider(
        script={m.recipient: [Outcome("failed_retryable", "scripted", provider_code="429", retry_after=30.0)]}
    )
    consumer = make_consumer(settings, provider)
    (o,) = outcomes(await consumer.handle(incoming([m])))
    assert len(provider.calls) == 1  # no sleeping for 30 s in the consumer
    assert (o.status, o.attempt, o.retry_after_ms) == (OutcomeStatus.FAILED_RETRYABLE, 2, 30_000)
    assert o.error_code == "429"
    assert o.message is not None and o.message.idempotency_key == m.idempotency_key


async def test_permanent_errors_carry_the_provider_code(settings: HeraldSettings) -> None:
    m = message("u-perm")
    provider = ScriptedProvider(
        script={
            m.recipient: [PermanentDelivery("scripted", "InvalidParameter", "bad", reason="invalid_address")]
        }
    )
    consumer = make_consumer(settings, provider)
    (o,) = outcomes(await consumer.handle(incoming([m])))
    assert (o.status, o.error_code, o.reason) == (
        OutcomeStatus.FAILED_PERMANENT,
        "InvalidParameter",
        "invalid_address",
    )
    assert len(provider.calls) == 1


async def test_stale_messages_are_suppressed_without_a_provider_call(settings: HeraldSettings) -> None:
    provider = ScriptedProvider()
    consumer = make_consumer(settings, provider)
    (o,) = outcomes(await consumer.handle(incoming([message("u-stale", expires_in_s=-1)])))
    assert (o.status, o.reason) == (OutcomeStatus.SUPPRESSED, "stale") and provider.calls == []


async def test_template_errors_fail_permanently_with_a_clear_reason(settings: HeraldSettings) -> None:
    provider = ScriptedProvider()
    consumer = make_consumer(settings, provider)
    missing, unknown = message("u-t1", payload={}), message("u-t2", template="no_such_template")
    o1, o2 = outcomes(await consumer.handle(incoming([missing, unknown])))
    assert (o1.status, o1.reason) == (OutcomeStatus.FAILED_PERMANENT, "template_error")
    assert "code" in (o1.detail or "") and "sms.txt.j2" in (o1.detail or "")
    assert (o2.status, o2.reason) == (OutcomeStatus.FAILED_PERMANENT, "template_error")
    assert "no_such_template" in (o2.detail or "")
    assert provider.calls == []


@dataclass
class SelfRendering(ScriptedProvider):
    """Like the webhook adapter: builds its own body, no Jinja2 templates."""

    channel: Channel = Channel.WEBHOOK

    def render(self, message: ChannelMessage) -> Content:
        return Content(text=f"own:{message.event_type}")


async def test_an_adapter_with_render_bypasses_templates(settings: HeraldSettings) -> None:
    provider = SelfRendering()
    consumer = make_consumer(settings, provider)
    m = message("endpoint-1", channel=Channel.WEBHOOK, template="", recipient="ep-1")
    (o,) = outcomes(await consumer.handle(incoming([m])))
    assert o.status is OutcomeStatus.SENT and provider.calls[0][1] == "own:"


async def test_an_adapter_bug_costs_one_message_not_the_batch(settings: HeraldSettings) -> None:
    bad = message("u-bug")
    provider = ScriptedProvider(script={bad.recipient: [RuntimeError("adapter bug")]})
    consumer = make_consumer(settings, provider)
    good = message("u-fine", recipient="+15555550199")
    o_bad, o_good = outcomes(await consumer.handle(incoming([bad, good])))
    assert (o_bad.status, o_bad.reason) == (OutcomeStatus.FAILED_RETRYABLE, "internal_error")
    assert o_good.status is OutcomeStatus.SENT


async def test_a_message_on_the_wrong_channel_topic_is_dead_lettered(settings: HeraldSettings) -> None:
    consumer = make_consumer(settings, ScriptedProvider())
    (r,) = await consumer.handle(incoming([message("u-x", channel=Channel.EMAIL)]))
    assert isinstance(r, DeadLetter) and r.reason == "wrong_channel"


async def test_a_duplicate_inside_one_batch_is_sent_once(settings: HeraldSettings) -> None:
    provider = ScriptedProvider()
    m = message("u-dup-batch")
    first, second = outcomes(await make_consumer(settings, provider).handle(incoming([m, m])))
    assert len(provider.calls) == 1
    assert (first.status, second.status) == (OutcomeStatus.SENT, OutcomeStatus.SENT)
    assert first.outcome_id == second.outcome_id
    # remembered in Redis, not in the consumer: a fresh process sees it too
    fresh = ScriptedProvider()
    (again,) = outcomes(await make_consumer(settings, fresh).handle(incoming([m])))
    assert again.status is OutcomeStatus.SENT and fresh.calls == []


async def test_a_batch_past_its_deadline_hands_the_rest_to_the_fallback(settings: HeraldSettings) -> None:
    # Scaled so a loaded machine's scheduling delays stay small beside the bound (measured ~0.6 s).
    provider = ScriptedProvider(delay_s=0.2)
    consumer = make_consumer(settings, provider, batch_deadline_s=0.5)
    batch = [message("u-slow-endpoint", payload={"code": str(i)}) for i in range(10)]
    started = time.monotonic()
    results = outcomes(await consumer.handle(incoming(batch)))
    assert time.monotonic() - started < 1.6  # not 10 x 0.2 s
    sent = sum(o.status is OutcomeStatus.SENT for o in results)
    assert 1 <= sent <= 4 and len(provider.calls) == sent
    assert all(o.status is OutcomeStatus.SENT for o in results[:sent])  # attempted in order while in time
    rest = {(o.status, o.reason) for o in results[sent:]}
    assert rest == {(OutcomeStatus.FAILED_RETRYABLE, "batch_deadline")}


async def test_a_failing_recipient_hands_its_later_messages_to_the_fallback_at_once(
    settings: HeraldSettings,
) -> None:
    failing = message("u-down", payload={"code": "1"})
    unavailable = Outcome("failed_retryable", "scripted", provider_code="503", reason="provider_503")
    provider = ScriptedProvider(script={failing.recipient: [unavailable] * 10}, delay_s=0.01)
    later = [message("u-down", payload={"code": str(i)}) for i in range(2, 5)]
    healthy = message("u-fine", payload={"code": "9"}, recipient="+15555550199")
    consumer = make_consumer(settings, provider, inprocess_budget_s=0.5)
    results = outcomes(await consumer.handle(incoming([failing, *later, healthy])))
    # The first message used its attempts (1 + 2 in-process retries); the rest of that recipient's
    # messages were not attempted: they wait in the fallback's backoff, not in this batch.
    assert results[0].status is OutcomeStatus.FAILED_RETRYABLE and results[0].error_code == "503"
    assert [(o.status, o.reason) for o in results[1:4]] == [
        (OutcomeStatus.FAILED_RETRYABLE, "recipient_backoff")
    ] * 3
    assert results[4].status is OutcomeStatus.SENT
    assert sum(1 for user, *_ in provider.calls if user == "u-down") == 3


async def test_in_process_retries_stop_at_the_budget(settings: HeraldSettings) -> None:
    m = message("u-slow-fail")
    unavailable = Outcome("failed_retryable", "scripted", provider_code="503", reason="provider_503")
    provider = ScriptedProvider(script={m.recipient: [unavailable] * 10}, delay_s=0.2)
    consumer = make_consumer(settings, provider, inprocess_retries=10, inprocess_budget_s=0.5)
    started = time.monotonic()
    (o,) = outcomes(await consumer.handle(incoming([m])))
    assert o.status is OutcomeStatus.FAILED_RETRYABLE
    assert time.monotonic() - started < 1.3  # not 11 x 0.2 s of attempts plus sleeps
    assert 2 <= len(provider.calls) <= 4
