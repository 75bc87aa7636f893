"""``herald run fallback``: the outcomes/receipts runner plus a timer poller.

The poller fires this consumer's own timer kinds (retries and the classifier's quiet-hours
deferrals among them, through the consent check) and ``publish`` (scheduled sends, limiter
retries, deferrals armed by an older version), so a deployment that runs only the fallback
process still releases every timer Herald arms.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import asyncpg

from consumers.fallback.context import FallbackContext
from consumers.fallback.critical import fire_critical_check, fire_critical_checks, relock_watches
from consumers.fallback.decisions import (
    KIND_CRITICAL_CHECK,
    KIND_DIGEST_ITEM,
    KIND_DIGEST_SEND,
    KIND_ESCALATE,
)
from consumers.fallback.digest import fire_digest_item, fire_digest_send
from consumers.fallback.escalation import fire_escalation
from consumers.fallback.handler import FallbackHandler
from consumers.fallback.retrying import fire_releases, fire_retry
from consumers.infra.resources import Resources
from consumers.runtime.handling import Output
from consumers.runtime.process import ProcessOptions, ProcessSpec
from consumers.runtime.runner import Runner
from consumers.runtime.topics import dlq
from consumers.scheduler.retries import KIND_RETRY
from consumers.scheduler.store import FireBatchHandler, FireHandler, Scheduler, Timer, TimerPoller
from consumers.scheduler.timer import KIND_DEFERRED_SEND, BatchLock
from consumers.workflow.context import KIND_STEP, WorkflowContext
from consumers.workflow.executor import fire_step
from consumers.workflow.preset_batch import fire_preset_steps, relock_states
from consumers.workflow.preset_run import fire_preset_step, is_preset, lock_state
from consumers.workflow.process import fire_handlers as workflow_handlers
from consumers.workflow.process import workflow_context
from schemas.codec import default_codec
from schemas.errors import ConfigurationError
from schemas.models import Channel, Lane

__all__ = ["GROUP_ID", "build", "fire_batch_handlers", "fire_batch_locks", "fire_handlers"]

GROUP_ID = "herald-fallback"


def fire_handlers(ctx: FallbackContext, wf: WorkflowContext | None = None) -> Mapping[str, FireHandler]:
    """The timer kinds this consumer arms, each bound to the shared context.

    ``workflow_step`` timers are the executor's: a preset's step (entered from a send's outcome)
    runs with this context, a route's own steps with ``wf`` (the routing table in use)."""

    def bind(fn: object) -> FireHandler:
        async def fire(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
            return await fn(ctx, timer, conn)  # type: ignore[operator,no-any-return]

        return functools.update_wrapper(fire, fn)  # type: ignore[arg-type]

    async def step(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
        # The state row locked with its route in one statement: a preset's step runs on it (not a
        # look at the route, then the lock); a route's own steps lock it again, in this transaction.
        row = await lock_state(conn, str(timer.data["notification_id"]))
        if row is not None and is_preset(row["route"]):
            return await fire_preset_step(ctx, timer, conn, row)
        if wf is None:
            raise ConfigurationError(f"workflow step {timer.key}: this poller has no routing table")
        return await fire_step(wf, timer, conn)

    return {
        KIND_STEP: step,
        KIND_ESCALATE: bind(fire_escalation),  # timers armed before the executor ran the high preset
        KIND_DIGEST_ITEM: bind(fire_digest_item),
        KIND_DIGEST_SEND: bind(fire_digest_send),
        KIND_CRITICAL_CHECK: bind(fire_critical_check),
        KIND_RETRY: bind(fire_retry),
        KIND_DEFERRED_SEND: bind(fire_retry),  # the same check: quiet hours end, the user may have opted out
    }


def fire_batch_handlers(ctx: FallbackContext) -> Mapping[str, FireBatchHandler]:
    """The kinds a poll fires together: the presets' steps (a route's own steps, which these leave
    out, fire one by one through :func:`fire_handlers`), retries and quiet-hours deferrals (one
    contacts query for all of a poll's: 07:00 in a zone releases many at once), and critical
    checks (their watch rows locked in ``notification_id`` order, :mod:`consumers.fallback.locking`)."""

    async def steps(timers: Sequence[Timer], conn: asyncpg.Connection) -> Mapping[str, Sequence[Output]]:
        return await fire_preset_steps(ctx, timers, conn)

    async def releases(timers: Sequence[Timer], conn: asyncpg.Connection) -> Mapping[str, Sequence[Output]]:
        return await fire_releases(ctx, timers, conn)

    async def checks(timers: Sequence[Timer], conn: asyncpg.Connection) -> Mapping[str, Sequence[Output]]:
        return await fire_critical_checks(ctx, timers, conn)

    # In this order (the poller fires batches in the order given): the state rows the steps lock
    # before the critical watches the checks lock, as a fallback batch takes them.
    return {KIND_STEP: steps, KIND_RETRY: releases, KIND_DEFERRED_SEND: releases, KIND_CRITICAL_CHECK: checks}


def fire_batch_locks() -> Mapping[str, BatchLock]:
    """What an undone batch of :func:`fire_batch_handlers` locks again before its timers fire one
    by one: the state rows, or the critical watch rows, in ``notification_id`` order, as the batch
    and the fallback consumer's batches take them (:mod:`consumers.fallback.locking`)."""
    return {KIND_STEP: relock_states, KIND_CRITICAL_CHECK: relock_watches}


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
    handlers = {**workflow_handlers(wf), **fire_handlers(ctx, wf)}
    poller = TimerPoller(
        scheduler,
        producer,
        settings.scheduler,
        handlers=handlers,
        batch_handlers=fire_batch_handlers(ctx),
        batch_locks=fire_batch_locks(),
    )
    return ProcessSpec(runners=[runner], loops=[poller.run, reloader.run])
