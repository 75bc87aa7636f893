"""``herald run passthrough``: the no-op consumer as a process."""

from __future__ import annotations

from consumers.infra.resources import Resources
from consumers.runtime.passthrough import PassThrough
from consumers.runtime.process import ProcessOptions, ProcessSpec
from consumers.runtime.runner import Runner
from consumers.runtime.topics import dlq

__all__ = ["build"]


async def build(res: Resources, options: ProcessOptions) -> ProcessSpec:
    target = options.target or f"{res.topics.prefix}.passthrough"
    source = res.topics.events
    await res.create_topics([source, dlq(source), target])
    runner = Runner(
        PassThrough(target),
        topics=[source],
        group_id=options.group or "herald-passthrough",
        bootstrap_servers=res.settings.kafka_bootstrap_servers,
        producer=await res.producer(),
        settings=res.settings.runtime,
    )
    return ProcessSpec(runners=[runner])
