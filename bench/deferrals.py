"""Releasing quiet-hours deferrals at the window's end: ``publish`` vs ``deferred_send``, one by one and batched.

``python -m bench.deferrals --timers 20000`` starts an embedded stack, seeds that many users (a
17:00-18:00 window in Asia/Kathmandu, activity push switched on) and, per variant, arms one
deferral each as the classifier does (the encoded ChannelMessage, keyed by user), all due at
18:00, then drains them with one poller and prints timers released per second and the process
CPU per timer (``time.process_time``: PostgreSQL's and the broker's CPU are not in it):

* ``publish``: the timer kind deferrals were before ``deferred_send``, produced as it is.
* ``one``: ``deferred_send`` through the fallback's consent check, one contacts query per timer.
* ``batch``: the same, a poll's timers together (one contacts query per poll).

Each variant has its own timer namespace; run them alternately (``--order``) to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bench.common import stack_settings
from consumers.devstack import DevStack
from consumers.fallback.context import FallbackContext
from consumers.fallback.process import fire_batch_handlers, fire_handlers
from consumers.infra.clock import ManualClock
from consumers.infra.db import migrate
from consumers.infra.keys import idempotency_key, notification_id
from consumers.infra.resources import Resources
from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import Topics
from consumers.scheduler.store import Scheduler, Timer, TimerPoller
from consumers.scheduler.timer import deferred_timer, publish_timer
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, Lane, Tier

__all__ = ["VARIANTS", "main", "release"]

VARIANTS = ("publish", "one", "batch")
RELEASE = datetime(2025, 6, 1, 12, 15, tzinfo=UTC)  # 18:00 in Kathmandu
_CODEC = default_codec()


def _timer(variant: str, user: str, topic: str) -> Timer:
    event_id = str(uuid.uuid4())
    message = ChannelMessage(
        notification_id=notification_id(event_id, user),
        event_id=event_id,
        event_type="comment_reply",
        user_id=user,
        channel=Channel.PUSH,
        lane=Lane.PRIORITY,
        tier=Tier.MEDIUM,
        category="activity",
        recipient=user,
        template="comment_reply",
        locale="en",
        idempotency_key=idempotency_key(event_id, "push", user),
        occurred_at=RELEASE - timedelta(minutes=20),
        timezone="Asia/Kathmandu",
        payload='{"text": "hi there"}',
        not_before=RELEASE,
    )
    key, payload = message.idempotency_key + ":deferred", _CODEC.encode(message)
    if variant == "publish":
        return publish_timer(key, RELEASE, topic, user.encode(), payload)
    return deferred_timer(key, RELEASE, topic, user.encode(), payload, data={"opt_in": True})


async def release(
    settings: HeraldSettings, variant: str, tag: str, users: Sequence[str]
) -> tuple[float, float]:
    """Arm one deferral per user in namespace ``prefix-tag`` and drain them: (released/s, CPU µs/timer)."""
    res = Resources(settings)
    try:
        pool = await res.pool()
        producer = await res.producer()
        topics = Topics(settings.topic_prefix)
        clock = ManualClock(RELEASE)
        scheduler = Scheduler(pool, clock, namespace=f"{settings.topic_prefix}-{tag}")
        topic = topics.channel(Channel.PUSH, Lane.PRIORITY)
        timers = [_timer(variant, u, topic) for u in users]
        for i in range(0, len(timers), 5000):
            await scheduler.arm(timers[i : i + 5000])
        ctx = FallbackContext(
            scheduler=scheduler, topics=topics, codec=_CODEC, settings=settings.fallback, clock=clock
        )
        poller = TimerPoller(
            scheduler,
            producer,
            settings.scheduler,
            handlers=fire_handlers(ctx) if variant != "publish" else None,
            batch_handlers=fire_batch_handlers(ctx) if variant == "batch" else None,
        )
        cpu0, t0 = time.process_time(), time.perf_counter()
        fired = 0
        while (k := await poller.release_due()) > 0:
            fired += k
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if fired != len(users):
            raise RuntimeError(f"{variant}: released {fired} of {len(users)}")
        return fired / wall, cpu / fired * 1e6
    finally:
        await res.close()


async def _seed(settings: HeraldSettings, users: Sequence[str]) -> None:
    res = Resources(settings)
    try:
        pool = await res.pool()
        await migrate(pool)
        await create_topics(settings, [Topics(settings.topic_prefix).channel(Channel.PUSH, Lane.PRIORITY)])
        await pool.executemany(
            "INSERT INTO herald_recipients (user_id, timezone, quiet_start, quiet_end) "
            "VALUES ($1, 'Asia/Kathmandu', '17:00', '18:00')",
            [(u,) for u in users],
        )
        await pool.executemany(
            "INSERT INTO herald_preferences (user_id, category, channel, enabled) "
            "VALUES ($1, 'activity', 'push', true)",
            [(u,) for u in users],
        )
    finally:
        await res.close()


async def _main(args: argparse.Namespace) -> None:
    with DevStack(with_moto=False) as stack:
        settings = stack_settings(stack, "bd")
        users = [f"d{i}-{uuid.uuid4().hex[:6]}" for i in range(args.timers)]
        await _seed(settings, users)
        for i, variant in enumerate(args.order.split(",")):
            rate, us = await release(settings, variant, f"{variant}{i}", users)
            print(f"{variant:8s} {args.timers:,} deferrals: {rate:,.0f} released/s, {us:.0f} µs CPU/timer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=20_000)
    parser.add_argument("--order", default="publish,one,batch,batch,one,publish", help=f"of {VARIANTS}")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
