"""Emails/s through the email channel consumer: SES v2 on moto vs an instant no-op provider, one run.

    .venv/bin/python -m bench.email_throughput [--messages 3000] [--paced 70]

Both runs use the same embedded stack, the same preloaded ChannelMessages (a third in pt-BR),
the real runtime (Kafka in, outcomes out, commit after acks), Jinja2 rendering and Redis
delivery ledger; only the adapter differs. The SES run paces to ``--rate`` (default: unpaced, 10k/s)
so it measures the consumer and moto; ``--paced N`` adds a run at SES's default 14/s.
The clock starts at the first poll that returned records and stops when the commits cover
every message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from bench.common import Timing, preload, stack_settings
from bench.timed import timed_consumer_factory, until_done
from channels.aws import AwsSettings
from channels.base import ChannelAdapter, Content, Outcome
from channels.email.mime import build_mime
from channels.email.ses import DEFAULT_MAX_SEND_RATE, SesEmailAdapter
from channels.pacing import TokenBucket
from channels.templates import TemplateRenderer
from consumers.channel.builders.aws import open_aws_client
from consumers.channel.consumer import ChannelConsumer
from consumers.channel.ledger import DeliveryLedger
from consumers.devstack import DevStack
from consumers.infra.keys import idempotency_key, notification_id
from consumers.infra.resources import Resources
from consumers.infra.settings import HeraldSettings, RuntimeSettings
from consumers.runtime.kafka import create_topics
from consumers.runtime.runner import Runner
from consumers.runtime.topics import dlq
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, Lane, Tier, utcnow

__all__ = ["NoOpEmail", "email_messages", "measure"]


class NoOpEmail:
    """An instant provider: what the consumer costs without any provider."""

    channel = Channel.EMAIL
    provider = "noop"

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        return Outcome.sent(self.provider, idempotency_key)

    async def close(self) -> None:
        return None


def email_messages(n: int, users: int = 5000) -> list[tuple[bytes, bytes]]:
    """``n`` encoded payment-receipt emails over ``users`` users, a third in pt-BR."""
    codec = default_codec()
    now = utcnow()
    out = []
    for i in range(n):
        user, event_id = f"u{i % users}", f"bench-email-{i}"
        recipient = f"{user}@example.org"
        msg = ChannelMessage(
            notification_id=notification_id(event_id, user),
            event_id=event_id,
            event_type="payment_receipt",
            user_id=user,
            channel=Channel.EMAIL,
            lane=Lane.PRIORITY,
            tier=Tier.HIGH,
            category="payments",
            recipient=recipient,
            template="payment_receipt",
            locale="pt-BR" if i % 3 == 0 else "en",
            idempotency_key=idempotency_key(event_id, "email", recipient),
            occurred_at=now,
            payload=json.dumps({"amount": f"{i % 100}.50", "currency": "EUR", "merchant": "Corner Café"}),
        )
        out.append((user.encode(), codec.encode(msg)))
    return out


def _settings(stack: DevStack, tag: str) -> HeraldSettings:
    assert stack.moto_url
    return stack_settings(
        stack,
        f"be{tag}",
        metrics_port=0,
        runtime=RuntimeSettings(session_timeout_ms=6000, heartbeat_interval_ms=500, poll_timeout_ms=100),
        aws=AwsSettings(
            endpoint_url=stack.moto_url,
            access_key_id="testing",
            secret_access_key="testing",
        ),
    )


async def _verify_sender(settings: HeraldSettings) -> None:
    client, stack = await open_aws_client("sesv2", settings)
    try:
        names = {i["IdentityName"] for i in (await client.list_email_identities()).get("EmailIdentities", [])}
        if "example.com" not in names:
            await client.create_email_identity(EmailIdentity="example.com")
    finally:
        await stack.aclose()


def _timeout(n: int, rate: float) -> float:
    """A run's bound, scaled by a rate measured (or paced) on this machine: ten times the time
    the messages would take at it, plus a minute for the group's start; a busy machine is slow,
    not broken."""
    return 60.0 + 10.0 * n / max(rate, 1.0)


async def _run(stack: DevStack, tag: str, n: int, make_adapter: Any, rate: float) -> Timing:
    settings = _settings(stack, tag)
    res = Resources(settings)
    adapter: ChannelAdapter = await make_adapter(settings)
    try:
        source = res.topics.channel(Channel.EMAIL, Lane.PRIORITY)
        await create_topics(settings, [source, dlq(source), res.topics.outcomes])
        await preload(settings, source, email_messages(n), 4)
        consumer = ChannelConsumer(
            channel=Channel.EMAIL,
            lane=Lane.PRIORITY,
            adapter=adapter,
            topics=res.topics,
            settings=settings.channel,
            renderer=TemplateRenderer(settings.templates_dir, settings.default_locale),
        )
        consumer.ledger = DeliveryLedger(
            res.redis(), ttl_s=3600, namespace=f"{settings.topic_prefix}:delivery", consumer=consumer.name
        )
        timed = timed_consumer_factory(n)
        runner: Runner[object] = Runner(
            consumer,  # type: ignore[arg-type]
            topics=[source],
            group_id=f"{settings.topic_prefix}-g",
            bootstrap_servers=settings.kafka_bootstrap_servers,
            producer=await res.producer(),
            settings=settings.runtime,
            consumer_factory=timed,
        )
        task = asyncio.create_task(runner.run())
        try:
            await until_done(
                timed.done, task, _timeout(n, rate), f"email consumer ({tag}) over {n:,} messages"
            )
            end = time.perf_counter()
        finally:
            runner.stop()
            await task
        assert timed.first_at is not None
        return Timing(end - timed.first_at, n)
    finally:
        await adapter.close()
        await res.close()


def _ses(rate: float) -> Any:
    async def make(settings: HeraldSettings) -> SesEmailAdapter:
        await _verify_sender(settings)
        client, stack = await open_aws_client("sesv2", settings)
        return SesEmailAdapter(
            client, from_address=settings.email.from_address, bucket=TokenBucket(rate), close=stack.aclose
        )

    return make


async def _noop(settings: HeraldSettings) -> NoOpEmail:
    return NoOpEmail()


async def _raw_ses(stack: DevStack, n: int, concurrency: int = 64) -> Timing:
    """The provider alone: prebuilt MIME, aioboto3 SendEmail to moto, same concurrency, no Kafka."""
    settings = _settings(stack, "r")
    await _verify_sender(settings)
    client, aws = await open_aws_client("sesv2", settings)
    raw = build_mime(
        from_address=settings.email.from_address,
        to="raw@example.org",
        subject="Receipt",
        text="You paid 12.50 EUR",
        html="<p>You paid 12.50 EUR</p>",
        headers={},
    )
    left = iter(range(n))

    async def worker() -> None:
        for _ in left:
            await client.send_email(
                FromEmailAddress=settings.email.from_address, Content={"Raw": {"Data": raw}}
            )

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Timing(time.perf_counter() - started, n)
    finally:
        await aws.aclose()


async def measure(stack: DevStack, n: int, rate: float, paced: int) -> dict[str, float]:
    out: dict[str, float] = {}
    raw = (await _raw_ses(stack, min(n, 1000))).rate
    out["raw_aioboto3_to_moto_per_s"] = raw
    # The no-op run is bounded by moto's raw rate too: slower than SES alone would be a wedge.
    noop = await _run(stack, "n", n, _noop, raw)
    out["noop_emails_per_s"] = noop.rate
    ses = await _run(stack, "s", n, _ses(rate), min(rate, raw))
    out["ses_moto_emails_per_s"] = ses.rate
    if paced:
        p = await _run(stack, "p", paced, _ses(DEFAULT_MAX_SEND_RATE), DEFAULT_MAX_SEND_RATE)
        out["ses_moto_paced_14_per_s"] = p.rate
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=10_000.0, help="SES pacing for the main run (msg/s)")
    parser.add_argument("--paced", type=int, default=0, help="also run N messages paced at 14/s")
    args = parser.parse_args()
    with DevStack() as stack:
        results = asyncio.run(measure(stack, args.messages, args.rate, args.paced))
    results["messages"] = args.messages
    results["ratio_ses_over_noop"] = results["ses_moto_emails_per_s"] / results["noop_emails_per_s"]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
