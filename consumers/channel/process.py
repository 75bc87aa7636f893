"""``herald run channel --channel email --lane priority``: the consumer of one channel and lane process."""

from __future__ import annotations

import argparse

from channels.templates import TemplateRenderer
from consumers.channel.consumer import ChannelConsumer
from consumers.channel.dedupe import Dedupe
from consumers.channel.registry import build_adapter
from consumers.cli.errors import CliError
from consumers.cli.run import ProcessSpec
from consumers.kafka import create_topics
from consumers.resources import Resources
from consumers.runtime import Runner
from consumers.topics import dlq
from schemas.models import Channel, Lane

__all__ = ["build", "build_consumer", "group_id"]


def group_id(channel: Channel, lane: Lane) -> str:
    return f"herald-channel-{channel.value}-{lane.value}"


def _parse(args: argparse.Namespace) -> tuple[Channel, Lane]:
    try:
        channel = Channel(args.channel)
    except ValueError:
        raise CliError(f"--channel must be one of: {', '.join(c.value for c in Channel)}") from None
    try:
        lane = Lane(args.lane or "priority")
    except ValueError:
        raise CliError(f"--lane must be one of: {', '.join(lane.value for lane in Lane)}") from None
    return channel, lane


async def build_consumer(res: Resources, channel: Channel, lane: Lane) -> ChannelConsumer:
    """The handler with its adapter, renderer and dedupe, built from settings."""
    settings = res.settings
    adapter = await build_adapter(channel, res)
    consumer = ChannelConsumer(
        channel=channel,
        lane=lane,
        adapter=adapter,
        topics=res.topics,
        settings=settings.channel,
        renderer=TemplateRenderer(settings.templates_dir, settings.default_locale),
        clock=res.clock,
    )
    consumer.dedupe = Dedupe(
        res.redis(),
        window_s=settings.channel.dedupe_window_s,
        namespace=f"{settings.topic_prefix}:dedupe",
        consumer=consumer.name,
    )
    return consumer


async def build(res: Resources, args: argparse.Namespace) -> ProcessSpec:
    channel, lane = _parse(args)
    source = res.topics.channel(channel, lane)
    await create_topics(res.settings, [source, dlq(source), res.topics.outcomes, dlq(res.topics.outcomes)])
    consumer = await build_consumer(res, channel, lane)
    runner: Runner[object] = Runner(
        consumer,  # type: ignore[arg-type]
        topics=[source],
        group_id=args.group or group_id(channel, lane),
        bootstrap_servers=res.settings.kafka_bootstrap_servers,
        producer=await res.producer(),
        settings=res.settings.runtime,
    )
    return ProcessSpec(runners=[runner], on_stop=consumer.adapter.close)
