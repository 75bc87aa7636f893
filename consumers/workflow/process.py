"""The workflow executor's parts for a process: its timer kinds, its context, its reload loop.

The fallback process hosts the executor (``herald run fallback``): its poller fires the
workflow timers next to the retries and the presets' escalations and digests, and its runner
reads the receipts that end a ``wait until``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from consumers.classifier.handler import decide_config
from consumers.classifier.lookup import ProfileCache
from consumers.classifier.process import load_table
from consumers.classifier.reload import RoutingReloader
from consumers.infra.resources import Resources
from consumers.runtime.handling import Output
from consumers.scheduler.store import FireHandler, Scheduler, Timer
from consumers.workflow.context import KIND_DIGEST_SEND, KIND_STEP, WorkflowContext
from consumers.workflow.digest import fire_digest
from consumers.workflow.executor import fire_step
from schemas.codec import Codec

__all__ = ["fire_handlers", "workflow_context"]


def fire_handlers(wf: WorkflowContext) -> Mapping[str, FireHandler]:
    async def step(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
        return await fire_step(wf, timer, conn)

    async def digest(timer: Timer, conn: asyncpg.Connection) -> Sequence[Output]:
        return await fire_digest(wf, timer, conn)

    return {KIND_STEP: step, KIND_DIGEST_SEND: digest}


async def workflow_context(
    res: Resources, scheduler: Scheduler, codec: Codec
) -> tuple[WorkflowContext, RoutingReloader]:
    """The executor's context over this process's resources, and the loop that reloads its table."""
    settings = res.settings
    pool = await res.pool()
    c = settings.classifier
    wf = WorkflowContext(
        table=load_table(settings),
        decide=decide_config(settings, codec),
        pool=pool,
        scheduler=scheduler,
        clock=res.clock,
        profiles=ProfileCache(pool, ttl_s=c.lookup_cache_ttl_s, max_size=c.lookup_cache_size),
    )
    return wf, RoutingReloader(lambda: load_table(settings), wf.use_table)
