"""The classifier through the real broker, PostgreSQL and Redis.

1,000 mixed events → per-lane counts, an outcome for every suppression and deferral, timers
for deferred sends, DLQ for unknown types, and offsets committed only after produce acks.
The expected figures come from an independent model of the decision table written here.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumers.classifier.process import build_classifier
from consumers.emitter import build_event
from consumers.infra.clock import ManualClock
from consumers.infra.resources import Resources
from consumers.infra.settings import ClassifierSettings, HeraldSettings
from consumers.runtime.kafka import create_topics
from consumers.runtime.runner import Runner
from consumers.runtime.topics import Topics, dlq
from schemas.codec import default_codec
from schemas.models import ChannelMessage, DeliveryOutcome
from tests.conftest import make_settings
from tests.kafka_helpers import committed_offsets, read_all

# The decision table, restated independently of consumers/routing.yaml.
SPEC: dict[str, tuple[str, str, list[str], list[str]]] = {  # type → tier, category, channels, opt-in
    "security_alert": ("critical", "security", ["push", "sms", "email"], []),
    "payment_receipt": ("high", "payments", ["push"], []),
    "login_code": ("high", "auth", ["push"], []),
    "comment_reply": ("medium", "activity", ["in_app"], ["push"]),
    "activity.like": ("medium", "activity", ["in_app"], ["push"]),
    "marketing.weekly": ("low", "marketing", ["email"], []),
    "tips.daily": ("low", "tips", ["email"], []),
    "system.invoice.paid": ("system", "system", ["webhook"], []),
}
UNKNOWN = "bogus.type"
LIMITS = {"high": 1000, "medium": 1000, "low": 3, "system": 0}
OPTED_OUT = {("payments", "push"), ("activity", "in_app"), ("marketing", "email"), ("security", "sms")}
QUIET_ZONE = "Asia/Kathmandu"
GROUPS = ["full", "noaddr", "optout", "optin", "quiet", "owner", "spam", "unknown"]


@dataclass
class Model:
    """Expected outputs, computed per event in the order of each user's partition."""

    per_topic: Counter[str]
    outcomes: Counter[tuple[str, str]]
    outputs_per_event: list[int]
    dlq: int


def _model(events: list[tuple[str, str, str]], topics: Topics) -> Model:
    per_topic: Counter[str] = Counter()
    outcomes: Counter[tuple[str, str]] = Counter()
    admitted: Counter[tuple[str, str]] = Counter()
    outputs_per_event: list[int] = []
    dead = 0
    for etype, user, group in events:
        if etype == UNKNOWN:
            dead += 1
            outputs_per_event.append(0)
            continue
        tier, category, channels, opt_in = SPEC[etype]
        lane = "bulk" if tier == "low" else "priority"
        n = 0
        wanted = channels + [c for c in opt_in if group == "optin"]
        for channel in wanted:
            n += 1
            if group == "optout" and tier != "critical" and (category, channel) in OPTED_OUT:
                outcomes[("suppressed", "opted_out")] += 1
                continue
            if channel in ("email", "sms") and group in ("noaddr", "unknown"):
                outcomes[("suppressed", "no_address")] += 1
                continue
            if channel == "webhook" and group != "owner":
                outcomes[("suppressed", "no_endpoint")] += 1
                continue
            recipients = 2 if channel == "webhook" else 1  # owner: two matching endpoints
            n += recipients - 1
            for _ in range(recipients):
                limit = LIMITS.get(tier, 0) if tier != "critical" else 0
                if limit:
                    if admitted[(user, channel)] >= limit:
                        outcomes[("suppressed", "rate_limited")] += 1
                        continue
                    admitted[(user, channel)] += 1
                quiet = (
                    group == "quiet"
                    and tier in ("high", "medium", "low")
                    and channel in ("push", "sms", "email")
                )
                if quiet:
                    outcomes[("deferred", "quiet_hours")] += 1
                else:
                    per_topic[topics.channel(channel, lane)] += 1
        outputs_per_event.append(n)
    return Model(per_topic, outcomes, outputs_per_event, dead)


async def _seed_users(pool: asyncpg.Pool, prefix: str, now: datetime) -> dict[str, list[str]]:
    users = {g: [f"{prefix}-{g}-{i}" for i in range(2 if g == "spam" else 8)] for g in GROUPS}
    local = now.astimezone(ZoneInfo(QUIET_ZONE))
    start, end = (local - timedelta(hours=1)).time(), (local + timedelta(hours=1)).time()
    rows = []
    for g, ids in users.items():
        if g == "unknown":
            continue
        for uid in ids:
            email, phone = (None, None) if g == "noaddr" else (f"{uid}@example.com", "+15550100100")
            quiet = (start, end) if g == "quiet" else (None, None)
            rows.append((uid, email, phone, QUIET_ZONE if g == "quiet" else "UTC", "en", *quiet))
    await pool.executemany(
        "INSERT INTO herald_recipients (user_id, email, phone, timezone, locale, quiet_start, quiet_end) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        rows,
    )
    prefs = [(u, c, ch, False) for u in users["optout"] for c, ch in OPTED_OUT]
    prefs += [(u, "activity", "push", True) for u in users["optin"]]
    await pool.executemany(
        "INSERT INTO herald_preferences (user_id, category, channel, enabled) VALUES ($1, $2, $3, $4)", prefs
    )
    eps = []
    for u in users["owner"]:
        eps += [
            (f"{u}-all", u, ["*"], False),
            (f"{u}-inv", u, ["system.invoice.*"], False),
            (f"{u}-usr", u, ["system.user.*"], False),  # does not match
            (f"{u}-off", u, ["*"], True),  # disabled
        ]
    await pool.executemany(
        "INSERT INTO herald_webhook_endpoints (endpoint_id, owner_id, url, secrets, event_types, "
        "disabled_at) VALUES ($1, $2, 'http://127.0.0.1:9/hook', '{s}', $3, CASE WHEN $4 THEN now() END)",
        eps,
    )
    return users


def _settings(stack: Any) -> HeraldSettings:
    s = make_settings(stack)
    return make_settings(
        stack,
        topic_prefix=s.topic_prefix,
        classifier=ClassifierSettings(rate_limits_per_hour=LIMITS, rate_limit_prefix=f"rl-{s.topic_prefix}"),
    )


def _plan(users: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    rnd = random.Random(42)
    types = [*SPEC, UNKNOWN]
    plan: list[tuple[str, str, str]] = []
    for _ in range(1000):
        group = rnd.choice(GROUPS)
        etype = rnd.choice(types[:5] + ["marketing.weekly"] * 4) if group == "spam" else rnd.choice(types)
        plan.append((etype, rnd.choice(users[group]), group))
    return plan


async def _produce(settings: HeraldSettings, plan: list[tuple[str, str, str]]) -> list[Any]:
    """Produce the events; return their record metadata (partition, offset) in plan order."""
    topics = Topics(settings.topic_prefix)
    codec = default_codec()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topics.events, codec.encode(build_event(t, user_id=u, data={"i": i})), key=u.encode()
            )
            for i, (t, u, _) in enumerate(plan)
        ]
        return [await f for f in futures]
    finally:
        await producer.stop()


@dataclass
class RunResult:
    acked: int = 0
    commits: int = 0
    violations: list[str] = field(default_factory=list)


async def _run_classifier(
    settings: HeraldSettings, now: datetime, per_offset: dict[int, dict[int, int]], total: int
) -> RunResult:
    """Run the classifier in a real Runner until every event is committed, checking each commit."""
    topics = Topics(settings.topic_prefix)
    result = RunResult()

    # tansu's ListOffsets lags behind the log, so acknowledgements are counted at the producer:
    # the real broker's acks, observed on the real producer the runner uses.
    def _counter(n: int) -> Any:
        def _count(fut: asyncio.Future[Any]) -> None:
            if not fut.cancelled() and fut.exception() is None:
                result.acked += n

        return _count

    class CountingProducer(AIOKafkaProducer):  # type: ignore[misc]
        async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            fut: asyncio.Future[Any] = await super().send(*args, **kwargs)
            fut.add_done_callback(_counter(1))
            return fut

        async def send_batch(self, batch: Any, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            count = batch.record_count()
            fut: asyncio.Future[Any] = await super().send_batch(batch, *args, **kwargs)
            fut.add_done_callback(_counter(count))
            return fut

    class CheckingConsumer(AIOKafkaConsumer):  # type: ignore[misc]
        """At each commit: the outputs of every committed record must already be acknowledged."""

        async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
            assert offsets is not None
            needed = sum(
                n for tp, upto in offsets.items() for off, n in per_offset[tp.partition].items() if off < upto
            )
            result.commits += 1
            if result.acked < needed:
                result.violations.append(
                    f"commit {offsets}: {result.acked} outputs acknowledged, {needed} expected"
                )
            await super().commit(offsets)

    res = Resources(settings, clock=ManualClock(now))
    handler = await build_classifier(res)
    kafka = CountingProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=5)
    await kafka.start()
    group_id = f"{settings.topic_prefix}-classifier"
    runner: Runner[Any] = Runner(
        handler,
        topics=[topics.events],
        group_id=group_id,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        producer=kafka,
        settings=settings.runtime.model_copy(update={"max_batch": 200}),
        consumer_factory=CheckingConsumer,
    )
    task = asyncio.create_task(runner.run())
    try:
        for _ in range(300):
            done = await committed_offsets(settings, group_id, topics.events)
            if sum(done.values()) >= total:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"only {done} committed")
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)
        await kafka.stop()
        await res.close()
    return result


async def test_thousand_mixed_events_through_a_runner(stack: Any, pg_pool: asyncpg.Pool) -> None:
    settings = _settings(stack)
    topics = Topics(settings.topic_prefix)
    now = datetime.now(UTC).replace(microsecond=0)
    users = await _seed_users(pg_pool, settings.topic_prefix, now)
    plan = _plan(users)
    await create_topics(
        settings, [topics.events, *topics.channel_topics(), topics.outcomes, dlq(topics.events)]
    )
    placed = await _produce(settings, plan)
    model = _model(plan, topics)
    # expected outputs per source partition, by offset: for the at-least-once check at each commit
    per_offset: dict[int, dict[int, int]] = {}
    for meta, n, (t, _, _) in zip(placed, model.outputs_per_event, plan, strict=True):
        per_offset.setdefault(meta.partition, {})[meta.offset] = n + (1 if t == UNKNOWN else 0)

    run = await _run_classifier(settings, now, per_offset, len(plan))
    assert not run.violations, run.violations
    assert run.commits >= 2  # several batches, each checked
    assert run.acked == sum(model.outputs_per_event) + model.dlq  # every output, counted once
    await _check_outputs(settings, model, pg_pool, now)


async def _check_outputs(
    settings: HeraldSettings, model: Model, pg_pool: asyncpg.Pool, now: datetime
) -> None:
    topics = Topics(settings.topic_prefix)
    codec = default_codec()
    got_topics: Counter[str] = Counter()
    for t in topics.channel_topics():
        records = await read_all(settings, t)
        got_topics[t] = len(records)
        for r in records:
            m = codec.decode(r.value, ChannelMessage)
            assert r.key == (m.recipient if m.channel == "webhook" else m.user_id).encode()
            assert t == topics.channel(m.channel, m.lane)
    assert +got_topics == +model.per_topic
    assert (
        model.per_topic[topics.channel("email", "bulk")] > 0
        and model.per_topic[topics.channel("push", "priority")]
    )

    outcome_records = await read_all(settings, topics.outcomes)
    got = [codec.decode(r.value, DeliveryOutcome) for r in outcome_records]
    assert Counter((o.status.value, o.reason or "") for o in got) == model.outcomes
    for o, r in zip(got, outcome_records, strict=True):
        assert r.key == o.notification_id.encode()
    assert {"opted_out", "no_address", "no_endpoint", "rate_limited", "quiet_hours"} <= {
        o.reason for o in got
    }

    deferred = [o for o in got if o.status.value == "deferred"]
    timer_keys = [o.message.idempotency_key + ":deferred" for o in deferred if o.message is not None]
    rows = await pg_pool.fetch(
        "SELECT due_at, topic, state FROM herald_timers WHERE key = ANY($1)", timer_keys
    )
    assert len(rows) == len(deferred) > 0
    for row in rows:
        assert (
            row["state"] == "pending"
            and row["due_at"] > now
            and row["topic"].startswith(settings.topic_prefix)
        )

    dead = await read_all(settings, dlq(topics.events))
    assert len(dead) == model.dlq > 0
    assert {dict(r.headers)["herald-dlq-reason"] for r in dead} == {b"unknown_event_type"}
