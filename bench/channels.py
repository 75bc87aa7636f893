"""Channel-consumer overhead: email and push consumers against an instant no-op provider vs pass-through."""

from __future__ import annotations

import json

from bench.common import Timing, preload, process_gc
from bench.passthrough import raw_passthrough
from bench.run import Bench, Row, console
from bench.timed import time_runner
from channels.base import ChannelAdapter
from channels.dry_run import DryRunAdapter
from channels.templates import TemplateRenderer
from consumers.channel.cancelled import CancelCheck
from consumers.channel.consumer import ChannelConsumer
from consumers.channel.ledger import DeliveryLedger
from consumers.infra.keys import idempotency_key, notification_id
from consumers.infra.resources import Resources
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import dlq
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, Lane, Tier, utcnow

__all__ = ["channel_messages", "phase", "run_consumer"]

_TEMPLATES = {
    Channel.EMAIL: ("payment_receipt", {"amount": "12.50", "currency": "EUR", "merchant": "Shop"}),
    Channel.PUSH: ("comment_reply", {"author": "Ana", "post_title": "Roadmap", "excerpt": "Agreed"}),
}

_UNIQUE = {Channel.EMAIL: "amount", Channel.PUSH: "excerpt"}


def channel_messages(
    channel: Channel, n: int, users: int = 20_000, *, lane: Lane = Lane.PRIORITY, tier: Tier = Tier.HIGH
) -> list[tuple[bytes, bytes]]:
    template, data = _TEMPLATES[channel]
    codec = default_codec()
    now = utcnow()
    out = []
    for i in range(n):
        user = f"u{i % users}"
        event_id = f"bench-{channel.value}-{i}"
        recipient = f"{user}@example.com" if channel is Channel.EMAIL else user
        msg = ChannelMessage(
            notification_id=notification_id(event_id, user),
            event_id=event_id,
            event_type=template,
            user_id=user,
            channel=channel,
            lane=lane,
            tier=tier,
            category="bench",
            recipient=recipient,
            template=template,
            locale="pt-BR" if i % 3 == 0 else "en",
            idempotency_key=idempotency_key(event_id, channel.value, recipient),
            occurred_at=now,
            # Unique per message: the renderer reuses a rendering for equal payloads (a broadcast),
            # and a transactional stream must not be measured on that best case.
            payload=json.dumps({**data, _UNIQUE[channel]: f"{data[_UNIQUE[channel]]} #{i}"}),
        )
        out.append((user.encode(), codec.encode(msg)))
    return out


async def run_consumer(
    res: Resources,
    channel: Channel,
    source: str,
    total: int,
    group: str,
    *,
    timeout: float,
    adapter: ChannelAdapter | None = None,
) -> Timing:
    """The channel consumer over ``total`` messages of ``source``, through ``adapter`` (default:
    the instant dry-run provider), for at most ``timeout`` seconds."""
    consumer = ChannelConsumer(
        channel=channel,
        lane=Lane.PRIORITY,
        adapter=adapter or DryRunAdapter(channel),
        topics=res.topics,
        settings=res.settings.channel,
        renderer=TemplateRenderer(res.settings.templates_dir, res.settings.default_locale),
        clock=res.clock,
    )
    consumer.ledger = DeliveryLedger(
        res.redis(), ttl_s=3600, namespace=f"{res.settings.topic_prefix}:delivery", consumer=consumer.name
    )
    # As `herald run channel` builds it: the cancellation check on the ledger's client.
    consumer.cancel_check = CancelCheck(
        res.redis(), consumer=consumer.name, prefix=f"{res.settings.topic_prefix}:cancel"
    )
    return await time_runner(
        consumer,
        topic=source,
        group=group,
        total=total,
        producer=await res.producer(),
        settings=res.settings,
        timeout=timeout,
    )


async def phase(b: Bench) -> None:
    with process_gc():
        await _phase(b)


async def _phase(b: Bench) -> None:
    n = min(b.events, 50_000)
    for channel in (Channel.EMAIL, Channel.PUSH):
        s = b.settings()
        res = Resources(s)
        try:
            source = res.topics.channel(channel, Lane.PRIORITY)
            await create_topics(s, [source, dlq(source), res.topics.outcomes])
            with console.status(f"preloading {n:,} {channel.value} messages"):
                await preload(s, source, channel_messages(channel, n), 4)
            with console.status(f"raw pass-through of {channel.value} messages"):
                raw = await raw_passthrough(
                    s, source, f"{source}.raw", n, f"{s.topic_prefix}-raw", timeout=b.timeout(n)
                )
            with console.status(f"{channel.value} consumer, no-op provider"):
                t = await run_consumer(
                    res, channel, source, n, f"{s.topic_prefix}-{channel.value}", timeout=b.timeout(n)
                )
        finally:
            await res.close()
        added_ms = (1 / t.rate - 1 / raw.rate) * 1000
        note = f"+{added_ms:.3f} ms/message wall over pass-through ({raw.rate:,.0f} msg/s), render included"
        if t.cpu_s is not None and raw.cpu_s is not None:
            added_cpu_ms = (t.cpu_s - raw.cpu_s) / n * 1000
            note = f"+{added_cpu_ms:.3f} ms CPU/message over raw pass-through; {note}"
            b.extra.setdefault("channel_added_cpu_ms", {})[channel.value] = added_cpu_ms
        b.add_timing(
            Row(
                f"{channel.value} consumer, no-op provider",
                t.rate,
                "msg/s",
                "raw",
                t.rate / raw.rate,
                goal="≤ +0.08 ms CPU/message" if channel is Channel.EMAIL else "",
                note=note,
            ),
            t,
            f"{channel.value} consumer",
        )
