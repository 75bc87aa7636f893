"""A channel consumer whose Redis stalls (connections open, nothing answers, as a black-holed route
or a half-open socket does), then heals: every Redis call of the batch (cancellation check, ledger
lookup, claims, ``done`` marks, the owner heartbeat) gives up within its timeout, the batch is
delivered without the ledger, and once Redis answers again the same client is back on the ledger
by itself, with nobody restarted.

The client is the product's own (:meth:`Resources.redis`), so the timeouts it sets are what is
tested; a real Redis sits behind :class:`~tests.fakes.latency_proxy.LatencyProxy`."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
import redis.asyncio as redis_asyncio
from pydantic import SecretStr

from channels.templates import TemplateRenderer
from consumers.channel.cancelled import CancelCheck
from consumers.channel.consumer import ChannelConsumer
from consumers.channel.ledger import DeliveryLedger, LedgerState
from consumers.infra.resources import Resources
from consumers.infra.settings import ChannelConsumerSettings, HeraldSettings
from consumers.runtime.topics import Topics
from schemas.models import Lane, OutcomeStatus
from tests.fakes.latency_proxy import LatencyProxy
from tests.integration.test_channel_consumer import ScriptedProvider, incoming, message, outcomes
from tests.waiting import until

pytestmark = pytest.mark.timeout(180)

BATCH = 12
STALL_BOUND_S = 30.0  # a batch of 12 under a stall: seconds of timeouts, never a hang


def _target(url: str) -> tuple[str, int]:
    host_port = url.split("//", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, port = host_port.rsplit(":", 1)
    return host, int(port)


def _consumer(
    settings: HeraldSettings, client: redis_asyncio.Redis, provider: ScriptedProvider
) -> ChannelConsumer:
    cfg = ChannelConsumerSettings(concurrency=8)
    consumer = ChannelConsumer(
        channel=provider.channel,
        lane=Lane.PRIORITY,
        adapter=provider,
        topics=Topics(settings.topic_prefix),
        settings=cfg,
        renderer=TemplateRenderer(settings.templates_dir, settings.default_locale),
    )
    consumer.ledger = DeliveryLedger(
        client,
        ttl_s=cfg.ledger_ttl_s,
        namespace=f"{settings.topic_prefix}:delivery",
        consumer=consumer.name,
        owner_ttl_s=3.0,
    )
    consumer.cancel_check = CancelCheck(
        client, consumer=consumer.name, prefix=f"{settings.topic_prefix}:cancel"
    )
    return consumer


async def _done_in_redis(direct: redis_asyncio.Redis, ledger: DeliveryLedger, keys: list[str]) -> bool:
    values = await direct.mget([ledger._key(k) for k in keys])
    done = str(LedgerState.DONE).encode()
    return all(isinstance(v, bytes) and v.startswith(done) for v in values)


async def test_a_stalled_redis_costs_seconds_and_the_consumer_recovers_by_itself(
    settings: HeraldSettings,
) -> None:
    direct = redis_asyncio.Redis.from_url(settings.redis_url.get_secret_value())
    with LatencyProxy(_target(settings.redis_url.get_secret_value())) as proxy:
        res = Resources(settings.model_copy(update={"redis_url": SecretStr(f"redis://{proxy.address}/0")}))
        provider = ScriptedProvider()
        consumer = _consumer(settings, res.redis(), provider)
        ledger = consumer.ledger
        assert ledger is not None
        stopping = asyncio.Event()
        heartbeat = asyncio.create_task(ledger.heartbeat(stopping))
        owner_key = ledger._owner_key(ledger.owner)
        run = uuid.uuid4().hex[:8]
        try:
            healthy = [message(f"stall-{run}-h{i}") for i in range(BATCH)]
            assert {o.status for o in outcomes(await consumer.handle(incoming(healthy)))} == {
                OutcomeStatus.SENT
            }
            assert await _done_in_redis(direct, ledger, [m.idempotency_key for m in healthy])

            proxy.set(stall=True)
            stalled = [message(f"stall-{run}-s{i}") for i in range(BATCH)]
            t0 = time.monotonic()
            async with asyncio.timeout(STALL_BOUND_S):
                during = outcomes(await consumer.handle(incoming(stalled)))
            took = time.monotonic() - t0
            # Delivered without the ledger (at-least-once), each Redis call bounded by its timeout.
            assert {o.status for o in during} == {OutcomeStatus.SENT}, [o.reason for o in during]
            assert len(provider.calls) == 2 * BATCH
            assert took >= 1.0  # the stall was felt: the Redis calls waited out their timeouts

            proxy.set()
            # The same client, nobody restarted: the ledger records sends again, the heartbeat too.
            deadline = time.monotonic() + 20
            recovered = False
            attempt = 0
            while time.monotonic() < deadline and not recovered:
                attempt += 1
                after = [message(f"stall-{run}-a{attempt}-{i}") for i in range(BATCH)]
                async with asyncio.timeout(STALL_BOUND_S):
                    got = outcomes(await consumer.handle(incoming(after)))
                assert {o.status for o in got} == {OutcomeStatus.SENT}
                recovered = await _done_in_redis(direct, ledger, [m.idempotency_key for m in after])
                if not recovered:
                    await asyncio.sleep(0.5)
            assert recovered, "the ledger did not come back after Redis healed"
            await direct.delete(owner_key)

            async def owner_back() -> bool:
                return bool(await direct.exists(owner_key))

            # Refreshed every owner_ttl_s / 3: back well before a live owner's key could lapse.
            await until(owner_back, what="the owner heartbeat resumed", timeout=ledger.owner_ttl_s)
        finally:
            proxy.set()
            stopping.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(heartbeat, 10)
            await res.close()
            await direct.aclose()
