"""``herald run scheduler``: releases due "publish" timers (scheduled sends, limiter retries) to their topics.

Other timer kinds (the classifier's quiet-hours deferrals, retries, escalations, digests) are fired
by the process that owns their logic and its consent check (the fallback consumer); this poller
takes only the kinds it has handlers for. Deferrals armed as ``publish`` by an older version are
still released here.
"""

from __future__ import annotations

from consumers.infra.resources import Resources
from consumers.runtime.process import ProcessOptions, ProcessSpec
from consumers.scheduler.store import Scheduler, TimerPoller

__all__ = ["build"]


async def build(res: Resources, options: ProcessOptions) -> ProcessSpec:
    pool = await res.pool()
    poller = TimerPoller(
        Scheduler(pool, res.clock, namespace=res.settings.topic_prefix),
        await res.producer(),
        res.settings.scheduler,
    )
    return ProcessSpec(loops=[poller.run])
