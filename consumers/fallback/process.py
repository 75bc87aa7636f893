"""``herald run fallback``: the outcomes/receipts runner plus a timer poller.

The poller fires this consumer's own timer kinds and ``publish`` (deferred sends of the
classifier and retries), so a deployment that runs only the fallback process still
releases every timer Herald arms.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import asyncpg

from consumers.fallback.context import FallbackContext
from consumers.fallback.critical import fire_critical_check
from consumers.fallback.decisions import (
    KIND_CRITICAL_CHECK,
    KIND_DIGEST_ITEM,
    KIND_DIGEST_SEND,
    KIND_ESCALATE,
)
from consumers.fallback.digest import fire_digest_item, fire_digest_send
from consumers.fallback.escalation import fire_escalation
from consumers.fallback.handler import FallbackHandler
from consumers.fallback.retrying import fire_retry
from consumers.infra.resources import Resources
from consumers.runtime.handling import Output
from consumers.runtime.process import ProcessOptions, ProcessSpec
from consumers.runtime.runner import Runner
from consumers.runtime.topics import dlq
from consumers.scheduler.retries import KIND_RETRY
from consumers.scheduler.store import FireHandler, Scheduler, Timer, TimerPoller
from consumers.workflow.process import fire_handlers as workflow_handlers
from consumers.workflow.process import workflow_context
from schemas.codec import default_codec
from schemas.models import Channel, Lane

__all__ = ["GROUP_ID", "build", "fire_handlers"]

GROUP_ID = "herald-fallback"


def fire_handlers(ctx: FallbackContext) -> Mapping[str, FireHandler]:
    """The timer kinds this consumer arms, each bound to the shared context."""

    def bind(fn: object) -> FireHandler:
        async def fire(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
            return await fn(ctx, timer, conn)  # type: ignore[operator,no-any-return]

        return functools.update_wrapper(fire, fn)  # type: ignore[arg-type]

    return {
        KIND_ESCALATE: bind(fire_escalation),
        KIND_DIGEST_ITEM: bind(fire_digest_item),
        KIND_DIGEST_SEND: bind(fire_digest_send),
        KIND_CRITICAL_CHECK: bind(fire_critical_check),
        KIND_RETRY: bind(fire_retry),
    }


async def build(res: Resources, options: ProcessOptions) -> ProcessSpec:
    settings = res.settings
    topics = res.topics
    await res.create_topics(
        [
            topics.outcomes,
            dlq(topics.outcomes),
            topics.receipts,
            dlq(topics.receipts),
            topics.channel(Channel.EMAIL, Lane.PRIORITY),
        ],
    )
    pool = await res.pool()
    producer = await res.producer()
    scheduler = Scheduler(pool, res.clock, namespace=settings.topic_prefix)
    codec = default_codec()
    wf, reloader = await workflow_context(res, scheduler, codec)
    ctx = FallbackContext(
        scheduler=scheduler,
        topics=topics,
        codec=codec,
        settings=settings.fallback,
        clock=res.clock,
        default_locale=settings.default_locale,
        quiet_channels=frozenset(settings.classifier.quiet_hours_channels),
    )
    runner = Runner(
        FallbackHandler(ctx, pool, workflows=wf),
        topics=[topics.outcomes, topics.receipts],
        group_id=options.group or GROUP_ID,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        producer=producer,
        settings=settings.runtime,
    )
    handlers = {**fire_handlers(ctx), **workflow_handlers(wf)}
    poller = TimerPoller(scheduler, producer, settings.scheduler, handlers=handlers)
    return ProcessSpec(runners=[runner], loops=[poller.run, reloader.run])
