"""Kill -9 the real ``herald run fallback`` process between arming and firing: one escalation."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg

from consumers.devstack import DevStack
from consumers.fallback.decisions import escalation_email_key
from consumers.infra.clock import SystemClock
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import Topics
from consumers.workflow.context import step_timer
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier
from tests.conftest import make_settings
from tests.integration.fallback_harness import channel_message, outcome_of
from tests.kafka_helpers import produce_raw, read_all, wait_for_records, wait_until_consumed, wait_until_quiet

ROOT = Path(__file__).resolve().parents[2]
_now = SystemClock().now
DELAY_S = 4.0


def _spawn(env: dict[str, str], group: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "consumers.cli.main", "run", "fallback", "--group", group],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _timer_state(pool: asyncpg.Pool, key: str) -> str | None:
    value = await pool.fetchval("SELECT state FROM herald_timers WHERE key = $1", key)
    return None if value is None else str(value)


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def _wait_state(
    pool: asyncpg.Pool, key: str, state: str, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await _timer_state(pool, key) == state:
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"fallback exited with {proc.returncode}:\n{await asyncio.to_thread(_tail, log)}"
            )
        await asyncio.sleep(0.05)
    raise AssertionError(f"timer {key} not {state} after 60s:\n{await asyncio.to_thread(_tail, log)}")


async def test_kill_9_between_arming_and_firing_escalates_exactly_once(
    stack: DevStack, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    settings = make_settings(stack)
    topics = Topics(settings.topic_prefix)
    group = f"{settings.topic_prefix}-fallback"
    env = {
        **os.environ,
        **stack.env(),
        "HERALD_TOPIC_PREFIX": settings.topic_prefix,
        "HERALD_PARTITIONS": "2",
        "HERALD_METRICS_PORT": "0",
        "HERALD_METRICS_HOST": "127.0.0.1",
        "HERALD_FALLBACK__HIGH_ESCALATION_DELAY_S": str(DELAY_S),
        "HERALD_SCHEDULER__POLL_INTERVAL_S": "0.05",
        "HERALD_RUNTIME__SESSION_TIMEOUT_MS": "6000",
        "HERALD_RUNTIME__HEARTBEAT_INTERVAL_MS": "500",
        "HERALD_RUNTIME__POLL_TIMEOUT_MS": "100",
    }
    email_topic = topics.channel(Channel.EMAIL, Lane.PRIORITY)
    await create_topics(settings, [topics.outcomes, topics.receipts, email_topic])
    user = f"u-{uuid.uuid4().hex[:10]}"
    await pg_pool.execute(
        "INSERT INTO herald_recipients (user_id, email) VALUES ($1, $2)", user, f"{user}@x.org"
    )
    push = channel_message(user, Channel.PUSH, Tier.HIGH, occurred_at=_now())
    await produce_raw(
        settings,
        topics.outcomes,
        [
            (
                push.notification_id.encode(),
                default_codec().encode(outcome_of(push, OutcomeStatus.SENT, at=_now())),
            )
        ],
    )
    key = step_timer(push.notification_id, 2, _now(), None).key  # the high preset's escalate step
    log = tmp_path / "fallback.log"

    first = _spawn(env, group, log)
    try:
        await _wait_state(pg_pool, key, "pending", first, log)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    armed_at = time.monotonic()
    assert await read_all(settings, email_topic) == []
    assert await _timer_state(pg_pool, key) == "pending"

    second = _spawn(env, group, log)
    try:
        await _wait_state(pg_pool, key, "fired", second, log)
        assert time.monotonic() - armed_at >= DELAY_S - 1.0  # fired on its schedule, not at restart
        await wait_for_records(settings, email_topic, 1, timeout=10)
        # The restarted consumer replays the uncommitted outcome, if any; once it has committed all it
        # was given and nothing more is being written, there is still one email.
        await wait_until_consumed(settings, group, [topics.outcomes, topics.receipts])
        await wait_until_quiet(settings, [email_topic, topics.outcomes])
        emails = await read_all(settings, email_topic)
        assert len(emails) == 1
        email = default_codec().decode(emails[0].value, ChannelMessage)
        assert email.idempotency_key == escalation_email_key(push.idempotency_key)
        escalated = [
            o
            for o in (
                default_codec().decode(r.value, DeliveryOutcome)
                for r in await read_all(settings, topics.outcomes)
            )
            if o.status == OutcomeStatus.ESCALATED
        ]
        assert len(escalated) == 1
        assert (
            await pg_pool.fetchval(
                "SELECT count(*) FROM herald_escalations WHERE push_key = $1", push.idempotency_key
            )
            == 1
        )
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(20)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait(5)
    assert second.returncode == 0, log.read_text()[-3000:]
