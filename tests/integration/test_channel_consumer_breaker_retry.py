"""A provider's refusal that opens its breaker is the answer the fallback sees, not the
``circuit_open`` of the in-process retry behind it: a real Redis breaker, a scripted provider."""

from __future__ import annotations

import uuid

import redis.asyncio as redis_asyncio

from channels.base import RetryableDelivery
from consumers.channel.breaker import BreakerPolicy
from consumers.channel.breakers import Breakers
from consumers.channel.failover import FailoverAdapter
from consumers.infra.provider_settings import ProvidersSettings
from consumers.infra.settings import HeraldSettings
from consumers.scheduler.retries import NOT_ATTEMPTED
from schemas.models import Channel, OutcomeStatus
from tests.integration.test_channel_consumer import (
    ScriptedProvider,
    incoming,
    make_consumer,
    message,
    outcomes,
)

# One refusal opens the breaker for 15 s: longer than any in-process retry waits.
POLICY = BreakerPolicy(consecutive_failures=1, min_calls=100, open_s=15.0, half_open_probes=1)


async def test_a_refusal_that_opens_the_breaker_is_reported_as_a_real_try(
    settings: HeraldSettings, redis_client: redis_asyncio.Redis
) -> None:
    provider = ScriptedProvider(provider="fcm")
    m = message(f"u-{uuid.uuid4().hex[:6]}")
    provider.script[m.recipient] = [
        RetryableDelivery("fcm", "503", "unavailable", reason="provider_unavailable")
    ]
    breakers = Breakers(
        redis_client, channel="sms", policy=POLICY, namespace=f"t{uuid.uuid4().hex[:8]}:breaker"
    )
    chain = FailoverAdapter(
        Channel.SMS, {"fcm": provider}, providers=ProvidersSettings(sms=["fcm"]), breakers=breakers
    )
    consumer = make_consumer(settings, provider, inprocess_retry_max_s=0.5)
    consumer.adapter = chain
    (o,) = outcomes(await consumer.handle(incoming([m])))
    assert len(provider.calls) == 1  # the retry found the breaker open: the provider was not asked again
    assert o.status is OutcomeStatus.FAILED_RETRYABLE
    assert o.reason == "provider_unavailable" and o.reason not in NOT_ATTEMPTED
    # the refusal said none; the breaker's open time (15 s) is kept: a retry before it is wasted
    assert o.retry_after_ms is not None and 10_000 <= o.retry_after_ms <= 15_000
