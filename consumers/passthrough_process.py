"""``herald run passthrough``: the no-op consumer as a process."""

from __future__ import annotations

import argparse

from consumers.cli.run import ProcessSpec
from consumers.kafka import create_topics
from consumers.passthrough import PassThrough
from consumers.resources import Resources
from consumers.runtime import Runner
from consumers.topics import dlq

__all__ = ["build"]


async def build(res: Resources, args: argparse.Namespace) -> ProcessSpec:
    target = args.target or f"{res.topics.prefix}.passthrough"
    source = res.topics.events
    await create_topics(res.settings, [source, dlq(source), target])
    runner = Runner(
        PassThrough(target),
        topics=[source],
        group_id=args.group or "herald-passthrough",
        bootstrap_servers=res.settings.kafka_bootstrap_servers,
        producer=await res.producer(),
        settings=res.settings.runtime,
    )
    return ProcessSpec(runners=[runner])
