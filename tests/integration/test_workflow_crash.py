"""Kill -9 the real executor (``herald run fallback``) between two steps: each step runs once."""

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
import yaml

from consumers.classifier.routing import load_routing
from consumers.devstack import DevStack
from consumers.infra.clock import SystemClock
from consumers.infra.keys import notification_id
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import Topics
from consumers.scheduler.store import Scheduler
from consumers.workflow.context import start_timer
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DomainEvent, Lane
from tests.conftest import make_settings
from tests.kafka_helpers import read_all

ROOT = Path(__file__).resolve().parents[2]
ROUTE = {
    "match": "crash.login",
    "tier": "high",
    "category": "auth",
    "template": "login_code",
    "steps": [{"send": ["sms"]}, {"wait": "3s"}, {"send": ["email"]}],
}


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "consumers.cli.main", "run", "fallback"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _runs(pool: asyncpg.Pool, nid: str) -> list[int]:
    rows = await pool.fetch(
        "SELECT step FROM herald_workflow_runs WHERE notification_id = $1 ORDER BY step", nid
    )
    return [r["step"] for r in rows]


async def _wait_runs(
    pool: asyncpg.Pool, nid: str, want: list[int], proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await _runs(pool, nid) == want:
            return
        if proc.poll() is not None:
            raise AssertionError(f"executor exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.02)
    raise AssertionError(f"steps {await _runs(pool, nid)} != {want} after 60s:\n{log.read_text()[-3000:]}")


async def test_kill_9_between_two_steps_runs_each_step_once(
    stack: DevStack, pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(yaml.safe_dump({"routes": [ROUTE]}))
    settings = make_settings(stack)
    topics = Topics(settings.topic_prefix)
    await create_topics(settings, [topics.outcomes, topics.receipts, *topics.channel_topics()])
    env = {
        **os.environ,
        **stack.env(),
        "HERALD_TOPIC_PREFIX": settings.topic_prefix,
        "HERALD_PARTITIONS": "2",
        "HERALD_METRICS_PORT": "0",
        "HERALD_METRICS_HOST": "127.0.0.1",
        "HERALD_CLASSIFIER__ROUTING_FILE": str(routing),
    }
    user = f"u-{uuid.uuid4().hex[:12]}"
    await pg_pool.execute(
        "INSERT INTO herald_recipients (user_id, email, phone) VALUES ($1, $2, $3)",
        user,
        "k@example.com",
        "+15555550123",
    )
    now = SystemClock().now()
    event = DomainEvent(event_id=str(uuid.uuid4()), type="crash.login", occurred_at=now, user_id=user)
    nid = notification_id(event.event_id, user)
    route = load_routing(routing).match("crash.login")
    assert route is not None
    await Scheduler(pg_pool, namespace=settings.topic_prefix).arm(
        [start_timer(nid, route, default_codec().encode(event), now, None)]
    )

    log = tmp_path / "executor.log"
    proc = _spawn(env, log)
    try:
        await _wait_runs(pg_pool, nid, [0, 1], proc, log)  # sent the SMS, now waiting 3 s
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc = _spawn(env, log)
        await _wait_runs(pg_pool, nid, [0, 1, 2], proc, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    codec = default_codec()
    sms = [
        codec.decode(r.value, ChannelMessage)
        for r in await read_all(settings, topics.channel(Channel.SMS, Lane.PRIORITY))
    ]
    email = [
        codec.decode(r.value, ChannelMessage)
        for r in await read_all(settings, topics.channel(Channel.EMAIL, Lane.PRIORITY))
    ]
    assert [m.notification_id for m in sms] == [nid]
    assert [m.notification_id for m in email] == [nid]
    fired = await pg_pool.fetch(
        "SELECT state FROM herald_timers WHERE kind = 'workflow_step' AND data->>'notification_id' = $1", nid
    )
    assert [r["state"] for r in fired] == ["fired", "fired"]
    assert (
        await pg_pool.fetchval("SELECT state FROM herald_workflows WHERE notification_id = $1", nid) == "done"
    )
