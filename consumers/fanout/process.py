"""``herald run fanout``: reads ``herald.events``, fans topic events out to ``herald.events.fanout``.

A process of its own (not inside the classifier or the API): a broadcast to a million
subscribers takes its time here without holding the classifier's partitions, and the cursor in
PostgreSQL lets any replica pick a half-done broadcast up where it stopped.
"""

from __future__ import annotations

from consumers.fanout.handler import Fanout
from consumers.infra.resources import Resources
from consumers.runtime.kafka import create_topics
from consumers.runtime.process import ProcessOptions, ProcessSpec
from consumers.runtime.runner import Runner
from consumers.runtime.topics import dlq
from schemas.codec import default_codec

__all__ = ["build"]


async def build(res: Resources, options: ProcessOptions) -> ProcessSpec:
    topics = res.topics
    await create_topics(res.settings, [topics.events, dlq(topics.events), topics.fanout, dlq(topics.fanout)])
    producer = await res.producer()
    handler = Fanout(
        await res.pool(), producer, default_codec(), topics.fanout, chunk=res.settings.fanout_chunk
    )
    runner = Runner(
        handler,
        topics=[topics.events],
        group_id=options.group or "herald-fanout",
        bootstrap_servers=res.settings.kafka_bootstrap_servers,
        producer=producer,
        settings=res.settings.runtime,
    )
    return ProcessSpec(runners=[runner])
