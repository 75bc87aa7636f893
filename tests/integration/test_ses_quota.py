"""One SES quota for every email process, measured with real processes against moto.

Four ``herald run channel --channel email`` processes (two per lane) share one account rate. The
send rate is read from the ``sent`` outcomes' ``recorded_at`` in the window where both lanes are
busy: together they stay within the account's rate ± 10 %, and the priority lane keeps its
reserved share while the bulk lane floods.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import redis.asyncio as redis_asyncio

from consumers.channel.process import group_id
from consumers.channel.quota import SharedQuota
from consumers.devstack import DevStack
from consumers.devstack.processes import free_port
from consumers.infra.keys import idempotency_key, notification_id
from consumers.infra.settings import HeraldSettings
from consumers.runtime import metrics
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier, utcnow
from tests.fakes.moto_api import ensure_identity
from tests.kafka_helpers import produce_raw, read_all
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[2]
CODEC = default_codec()
RATE = 12.0  # low enough for a loaded 2-core machine to sustain: the point is the ceiling
SHARE = 0.3


def _email(lane: Lane, i: int) -> ChannelMessage:
    user = f"q-{uuid.uuid4().hex[:8]}"
    event_id = str(uuid.uuid4())
    to = f"{user}@example.org"
    return ChannelMessage(
        notification_id=notification_id(event_id, user),
        event_id=event_id,
        event_type="payment_receipt",
        user_id=user,
        channel=Channel.EMAIL,
        lane=lane,
        tier=Tier.LOW if lane is Lane.BULK else Tier.HIGH,
        category="payments",
        recipient=to,
        template="payment_receipt",
        locale="en",
        idempotency_key=idempotency_key(event_id, Channel.EMAIL.value, to),
        occurred_at=utcnow() - timedelta(seconds=1),
        payload=json.dumps({"amount": f"{i}.00", "currency": "EUR", "merchant": "Shop"}),
    )


def _spawn(
    stack: DevStack, settings: HeraldSettings, lane: Lane, port: int, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **stack.env(),
        "HERALD_TOPIC_PREFIX": settings.topic_prefix,
        "HERALD_PARTITIONS": str(settings.partitions),
        "HERALD_METRICS_PORT": str(port),
        "HERALD_EMAIL__MAX_SEND_RATE": str(RATE),
        "HERALD_EMAIL__PRIORITY_SHARE": str(SHARE),
        "HERALD_CHANNEL__CONCURRENCY": "16",
        "HERALD_RUNTIME__SESSION_TIMEOUT_MS": "6000",
        "HERALD_RUNTIME__HEARTBEAT_INTERVAL_MS": "500",
        "HERALD_RUNTIME__POLL_TIMEOUT_MS": "100",
        "HERALD_RUNTIME__MAX_BATCH": "50",
    }
    cmd = [
        sys.executable,
        "-m",
        "consumers.cli.main",
        "run",
        "channel",
        "--channel",
        "email",
        "--lane",
        lane.value,
    ]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("ab"))


async def _sent_times(settings: HeraldSettings, want: int, timeout: float) -> dict[Lane, list[float]]:
    deadline = time.monotonic() + timeout
    times: dict[Lane, list[float]] = {Lane.PRIORITY: [], Lane.BULK: []}
    while time.monotonic() < deadline:
        times = {Lane.PRIORITY: [], Lane.BULK: []}
        for r in await read_all(settings, Topics(settings.topic_prefix).outcomes):
            o = CODEC.decode(r.value, DeliveryOutcome)
            if o.status is OutcomeStatus.SENT and o.lane is not None:
                times[o.lane].append(o.recorded_at.timestamp())
        if sum(len(t) for t in times.values()) >= want:
            return times
        await asyncio.sleep(1.0)
    raise AssertionError(f"only {sum(len(t) for t in times.values())} of {want} sent in {timeout}s")


async def _each_holds_one_partition(members: list[tuple[Lane, int]]) -> bool:
    """Every process holds one partition of its lane's topic (two members, two partitions): both
    groups settled with all four, none revoked or rejoining (``herald_assigned_partitions``)."""
    async with httpx.AsyncClient(timeout=2) as client:
        for lane, port in members:
            needle = f'herald_assigned_partitions{{group="{group_id(Channel.EMAIL, lane)}"}} '
            try:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.HTTPError:
                return False  # not serving yet
            held = [line for line in text.splitlines() if line.startswith(needle)]
            if not held or float(held[0].rsplit(" ", 1)[1]) != 1:
                return False
    return True


async def _produce(settings: HeraldSettings, lane: Lane, messages: list[ChannelMessage]) -> None:
    topic = Topics(settings.topic_prefix).channel(Channel.EMAIL, lane)
    await produce_raw(settings, topic, [(m.user_id.encode(), CODEC.encode(m)) for m in messages])


async def _load_times(settings: HeraldSettings, keys: set[str]) -> dict[Lane, list[float]]:
    times: dict[Lane, list[float]] = {Lane.PRIORITY: [], Lane.BULK: []}
    for r in await read_all(settings, Topics(settings.topic_prefix).outcomes):
        o = CODEC.decode(r.value, DeliveryOutcome)
        if o.status is OutcomeStatus.SENT and o.lane is not None and o.idempotency_key in keys:
            times[o.lane].append(o.recorded_at.timestamp())
    return times


async def test_email_processes_share_one_account_rate_and_priority_keeps_its_share(
    stack: DevStack, settings: HeraldSettings, tmp_path: Path
) -> None:
    assert stack.moto_url
    await ensure_identity(stack.moto_url)
    log = tmp_path / "email.log"
    lanes = (Lane.BULK, Lane.BULK, Lane.PRIORITY, Lane.PRIORITY)
    members = [(lane, free_port()) for lane in lanes]
    procs = [_spawn(stack, settings, lane, port, log) for lane, port in members]
    try:
        # Warm up: every process in its group and partitions settled before the measured load.
        warm = {lane: [_email(lane, i) for i in range(8)] for lane in (Lane.BULK, Lane.PRIORITY)}
        for lane, ms in warm.items():
            await _produce(settings, lane, ms)
        await _sent_times(settings, 16, timeout=240)
        # Sent mail proves one member per lane, not two: wait for both groups to settle, or a late
        # joiner's rebalance pauses a lane inside the measured window.
        await until(
            lambda: _each_holds_one_partition(members), what="each process holding a partition", timeout=120
        )
        bulk = [_email(Lane.BULK, i) for i in range(150)]
        priority = [_email(Lane.PRIORITY, i) for i in range(75)]
        await _produce(settings, Lane.BULK, bulk)
        await _produce(settings, Lane.PRIORITY, priority)
        times = await _sent_times(settings, 16 + len(bulk) + len(priority), timeout=240)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
    times = await _load_times(settings, {m.idempotency_key for m in bulk + priority})  # warm-up excluded
    start = max(min(t) for t in times.values()) + 1.0  # both lanes under way
    end = min(max(t) for t in times.values()) - 0.5  # until the first lane runs dry
    assert end - start >= 4.0, (
        f"both lanes busy together for only {end - start:.1f}s ({log.read_text()[-2000:]})"
    )
    rates = {lane: sum(start <= x < end for x in t) / (end - start) for lane, t in times.items()}
    total = sum(rates.values())
    print(
        f"account-wide {total:.1f}/s (limit {RATE}); priority {rates[Lane.PRIORITY]:.1f}/s, bulk {rates[Lane.BULK]:.1f}/s"
    )
    assert abs(total - RATE) <= 0.1 * RATE, rates
    assert rates[Lane.PRIORITY] >= 0.9 * SHARE * RATE, rates  # its reserve, however hard bulk pushes
    assert rates[Lane.BULK] <= 1.1 * (1 - SHARE) * RATE, rates  # bulk never takes the reserve


async def test_redis_down_each_process_paces_to_its_part_of_the_rate(settings: HeraldSettings) -> None:
    dead = redis_asyncio.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    quota = SharedQuota(
        dead, rate=40.0, lane=Lane.PRIORITY, priority_share=0.3, expected_replicas=4, key="herald:test:quota"
    )
    counter = metrics.SES_QUOTA_FALLBACK.labels("priority")
    before = counter._value.get()
    started = time.monotonic()
    for _ in range(21):  # 10/s locally (40 / 4), no burst: one token in hand, then 20 more take ~2 s
        await quota.acquire()
    elapsed = time.monotonic() - started
    assert 1.8 <= elapsed <= 2.6, elapsed
    assert counter._value.get() == before + 21
