"""Email failover SES → SMTP behind breakers shared in Redis: real moto (behind a fault proxy),
a real SMTP server, a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as redis_asyncio
from prometheus_client import REGISTRY

from channels.aws import open_client
from channels.base import Content
from channels.email.ses import SesEmailAdapter
from channels.email.smtp import SmtpEmailAdapter, SmtpSettings
from channels.pacing import TokenBucket
from consumers.channel.breaker import BreakerPolicy, Circuit, Result
from consumers.channel.breakers import Breakers
from consumers.channel.failover import FailoverAdapter
from consumers.channel.registry import build_adapter
from consumers.devstack import DevStack
from consumers.devstack.smtp_sink import SmtpSink, Stage
from consumers.infra.provider_settings import ProvidersSettings
from consumers.infra.resources import Resources
from consumers.infra.settings import HeraldSettings
from schemas.models import Channel, Lane, OutcomeStatus, Tier
from tests.conftest import make_settings
from tests.fakes.fault_proxy import SES_5XX, SES_PAUSED, SES_REJECT, FaultProxy, stall
from tests.fakes.moto_api import aws_options, ensure_identity
from tests.integration.test_channel_consumer import incoming, outcomes
from tests.integration.test_email_ses import consumer_for, email_message
from tests.integration.test_email_smtp import adapter_for

CONTENT = Content(subject="Hello", text="plain body")
POLICY = BreakerPolicy(consecutive_failures=3, min_calls=100, open_s=0.6, half_open_probes=2)
EMAIL = ProvidersSettings(email=["ses", "smtp"])


@pytest.fixture
def proxy(stack: DevStack) -> Iterator[FaultProxy]:
    assert stack.moto_url
    with FaultProxy(stack.moto_url) as p:
        yield p


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink(security="none") as s:
        yield s


@pytest_asyncio.fixture
async def ses(stack: DevStack, proxy: FaultProxy) -> AsyncIterator[SesEmailAdapter]:
    assert stack.moto_url
    await ensure_identity(stack.moto_url)
    client, exit_stack = await open_client("sesv2", aws_options(proxy.url, read_timeout_s=0.5))
    yield SesEmailAdapter(
        client, from_address="noreply@example.com", bucket=TokenBucket(10_000), close=exit_stack.aclose
    )
    await exit_stack.aclose()


@pytest_asyncio.fixture
async def smtp(sink: SmtpSink) -> AsyncIterator[SmtpEmailAdapter]:
    a = adapter_for(sink)
    yield a
    await a.close()


@dataclass
class Rig:
    ses: SesEmailAdapter
    smtp: SmtpEmailAdapter
    sink: SmtpSink
    proxy: FaultProxy
    redis: redis_asyncio.Redis
    ns: str


@pytest_asyncio.fixture
async def rig(
    ses: SesEmailAdapter, smtp: SmtpEmailAdapter, sink: SmtpSink, proxy: FaultProxy, redis_client: Any
) -> Rig:
    return Rig(ses, smtp, sink, proxy, redis_client, f"t{uuid.uuid4().hex[:8]}:breaker")


def breakers(redis: redis_asyncio.Redis, namespace: str, **kw: Any) -> Breakers:
    return Breakers(redis, channel="email", policy=POLICY, namespace=namespace, **kw)


def failover(rig: Rig, b: Breakers, providers: ProvidersSettings = EMAIL) -> FailoverAdapter:
    return FailoverAdapter(Channel.EMAIL, {"ses": rig.ses, "smtp": rig.smtp}, providers=providers, breakers=b)


def gauge(provider: str) -> float | None:
    return REGISTRY.get_sample_value(
        "herald_provider_circuit_state", {"channel": "email", "provider": provider}
    )


async def test_ses_5xx_fails_over_at_once_then_the_breaker_skips_ses(rig: Rig) -> None:
    rig.proxy.inject(SES_5XX, times=100)
    adapter = failover(rig, breakers(rig.redis, rig.ns))
    for i in range(6):
        o = await adapter.deliver(email_message(f"u{i}"), CONTENT, idempotency_key=f"k{i}")
        assert (o.status, o.provider) == ("sent", "smtp")  # never lost, never a retry
    assert len(rig.proxy.requests) == 3  # the breaker opened after 3: SES was not asked again
    assert len(rig.sink.messages()) == 6
    assert (await adapter.breakers.state("ses")).circuit is Circuit.OPEN
    assert gauge("ses") == Circuit.OPEN.gauge


async def test_ses_recovers_half_open_probes_close_it(rig: Rig, stack: DevStack) -> None:
    rig.proxy.inject(SES_5XX, times=3)
    adapter = failover(rig, breakers(rig.redis, rig.ns))
    for i in range(3):
        await adapter.deliver(email_message(f"u{i}"), CONTENT, idempotency_key=f"k{i}")
    assert (await adapter.breakers.state("ses")).circuit is Circuit.OPEN
    await asyncio.sleep(POLICY.open_s)
    providers = [
        (await adapter.deliver(email_message(f"r{i}"), CONTENT, idempotency_key=f"r{i}")).provider
        for i in range(3)
    ]
    assert providers == ["ses", "ses", "ses"]  # two probes, then closed
    assert (await adapter.breakers.state("ses")).circuit is Circuit.CLOSED
    assert gauge("ses") == Circuit.CLOSED.gauge


async def test_replicas_share_the_breaker(rig: Rig, stack: DevStack) -> None:
    rig.proxy.inject(SES_5XX, times=3)
    a = failover(rig, breakers(rig.redis, rig.ns))
    for i in range(3):
        await a.deliver(email_message(f"a{i}"), CONTENT, idempotency_key=f"a{i}")
    other = redis_asyncio.Redis.from_url(stack.redis_url)  # another replica: its own client and state
    try:
        b = failover(rig, breakers(other, rig.ns))
        before = len(rig.proxy.requests)
        o = await b.deliver(email_message("b"), CONTENT, idempotency_key="b")
        assert o.provider == "smtp" and len(rig.proxy.requests) == before  # B never tried SES
    finally:
        await other.aclose()


async def test_a_timeout_does_not_fail_over(rig: Rig) -> None:
    rig.proxy.inject(stall(2.0))  # SES may have accepted it: sending it by SMTP too could duplicate it
    adapter = failover(rig, breakers(rig.redis, rig.ns))
    o = await adapter.deliver(email_message("t"), CONTENT, idempotency_key="t")
    assert (o.status, o.provider, o.reason) == ("failed_retryable", "ses", "provider_timeout")
    assert rig.sink.messages() == []


async def test_a_paused_ses_account_fails_over_and_opens_the_breaker(rig: Rig) -> None:
    # Our account's state, not the message's: every mail would be lost if it counted as permanent.
    rig.proxy.inject(SES_PAUSED, times=100)
    adapter = failover(rig, breakers(rig.redis, rig.ns))
    for i in range(5):
        o = await adapter.deliver(email_message(f"c{i}"), CONTENT, idempotency_key=f"c{i}")
        assert (o.status, o.provider) == ("sent", "smtp")
    assert len(rig.proxy.requests) == 3  # the breaker opened after 3 refusals
    assert (await adapter.breakers.state("ses")).circuit is Circuit.OPEN
    assert len(rig.sink.messages()) == 5


async def test_permanent_errors_neither_fail_over_nor_trip(rig: Rig) -> None:
    rig.proxy.inject(SES_REJECT, times=10)
    adapter = failover(rig, breakers(rig.redis, rig.ns))
    for i in range(5):
        o = await adapter.deliver(email_message(f"p{i}"), CONTENT, idempotency_key=f"p{i}")
        assert (o.status, o.provider, o.provider_code) == ("failed_permanent", "ses", "MessageRejected")
    assert (await adapter.breakers.state("ses")).circuit is Circuit.CLOSED
    assert rig.sink.messages() == []


async def test_smtp_refusing_to_relay_fails_over_to_ses_and_opens_its_breaker(rig: Rig) -> None:
    # Our relay configuration, not the recipients': no mail is failed for good while SES is healthy.
    rig.sink.fault(554, stage="rcpt", count=-1, reply="5.7.1 <someone@example.org>: Relay access denied")
    adapter = failover(rig, breakers(rig.redis, rig.ns), ProvidersSettings(email=["smtp", "ses"]))
    for i in range(5):
        o = await adapter.deliver(email_message(f"r{i}"), CONTENT, idempotency_key=f"r{i}")
        assert (o.status, o.provider) == ("sent", "ses")
    assert (await adapter.breakers.state("smtp")).circuit is Circuit.OPEN  # after 3 refusals
    assert len(rig.proxy.requests) == 5 and rig.sink.messages() == []


async def test_a_tenant_sender_survives_failover_to_smtp(rig: Rig, sink: SmtpSink) -> None:
    tenant_from = {"acme": "Acme <hi@acme.example>"}
    rig.ses.tenant_from = dict(tenant_from)
    smtp = adapter_for(sink, tenant_from=tenant_from)
    rig.proxy.inject(SES_5XX, times=1)
    adapter = FailoverAdapter(
        Channel.EMAIL, {"ses": rig.ses, "smtp": smtp}, providers=EMAIL, breakers=breakers(rig.redis, rig.ns)
    )
    m = email_message("acme")
    m.tenant = "acme"
    try:
        o = await adapter.deliver(m, CONTENT, idempotency_key="acme")
    finally:
        await smtp.close()
    assert (o.status, o.provider) == ("sent", "smtp")
    (r,) = sink.messages()
    assert (r.mail_from, r.message["From"]) == ("hi@acme.example", "Acme <hi@acme.example>")


def acme_message(user: str) -> Any:
    m = email_message(user)
    m.tenant = "acme"
    return m


TENANT_REFUSALS: list[tuple[int, Stage, str]] = [
    (553, "mail", "5.7.1 <hi@acme.example>: Sender address rejected: not owned by user herald"),
    (553, "rcpt", "5.7.1 <hi@acme.example>: Sender address rejected: not owned by user herald"),
    (550, "rcpt", "5.7.64 TenantAttribution; Relay Access Denied"),
    (554, "data", "5.7.1 Relay access denied"),
]


async def test_a_tenant_sender_the_relay_refuses_goes_to_ses_and_the_breaker_ignores_it(
    rig: Rig, stack: DevStack
) -> None:
    # The relay is not set up for acme.example, or is down for everyone: its words do not say. For
    # acme's mail that is acme's sender at this provider: SES, where acme is verified, sends, and
    # the smtp breaker neither opens (one tenant must not fail every tenant over) nor counts it a
    # success (a tenant's flood would reset the count of our own refusals).
    assert stack.moto_url
    await ensure_identity(stack.moto_url, "acme.example")
    tenant_from = {"acme": "Acme <hi@acme.example>"}
    rig.ses.tenant_from = dict(tenant_from)
    smtp = adapter_for(rig.sink, tenant_from=tenant_from)
    chain = ProvidersSettings(email=["smtp", "ses"])
    adapter = FailoverAdapter(
        Channel.EMAIL, {"ses": rig.ses, "smtp": smtp}, providers=chain, breakers=breakers(rig.redis, rig.ns)
    )
    relay_denied = "5.7.1 <someone@example.org>: Relay access denied"
    try:
        rig.sink.fault(554, stage="rcpt", reply=relay_denied, count=2)  # our own sender, twice
        for i in range(2):
            o = await adapter.deliver(email_message(f"own{i}"), CONTENT, idempotency_key=f"own{i}")
            assert (o.status, o.provider) == ("sent", "ses")
        for i, (code, stage, reply) in enumerate(TENANT_REFUSALS * 2):  # more than the 3 that open it
            rig.sink.fault(code, stage=stage, reply=reply)
            o = await adapter.deliver(acme_message(f"acme{i}"), CONTENT, idempotency_key=f"acme{i}")
            assert (o.status, o.provider) == ("sent", "ses")
        assert (await adapter.breakers.state("smtp")).circuit is Circuit.CLOSED
        # Our third refusal in a row: the tenant's eight in between neither counted nor reset it.
        rig.sink.fault(554, stage="rcpt", reply=relay_denied)
        o = await adapter.deliver(email_message("own2"), CONTENT, idempotency_key="own2")
        assert (o.status, o.provider) == ("sent", "ses")
        assert (await adapter.breakers.state("smtp")).circuit is Circuit.OPEN
    finally:
        await smtp.close()
    assert rig.sink.messages() == [] and len(rig.proxy.requests) == 11


async def test_a_tenant_sender_refused_by_the_last_provider_is_retried(rig: Rig) -> None:
    # Refused everywhere it was tried, the tenant's mail is retried on the schedule, not failed for
    # good: the refusal may have been our relay's own outage. Not counted by the breaker either.
    smtp = adapter_for(rig.sink, tenant_from={"acme": "Acme <hi@acme.example>"})
    b = breakers(rig.redis, rig.ns)
    only_smtp = FailoverAdapter(
        Channel.EMAIL, {"smtp": smtp}, providers=ProvidersSettings(email=["smtp"]), breakers=b
    )
    try:
        for i in range(4):
            rig.sink.fault(550, stage="mail", reply="5.7.1 Sender address rejected")
            o = await only_smtp.deliver(acme_message(f"a{i}"), CONTENT, idempotency_key=f"a{i}")
            assert (o.status, o.provider, o.reason) == ("failed_retryable", "smtp", "tenant_sender_config")
            assert not o.ambiguous
        assert (await b.state("smtp")).circuit is Circuit.CLOSED
    finally:
        await smtp.close()


async def test_a_tenant_sender_refused_while_the_other_breaker_is_open_waits_for_it(rig: Rig) -> None:
    # SES is skipped (its breaker open) and SMTP refuses acme's sender: SES may well take it once
    # it is back, so the answer is the walk's all-open one, with SES's wait.
    smtp = adapter_for(rig.sink, tenant_from={"acme": "Acme <hi@acme.example>"})
    b = breakers(rig.redis, rig.ns)
    for _ in range(3):
        await b.record("ses", Result.RETRYABLE)
    adapter = FailoverAdapter(Channel.EMAIL, {"ses": rig.ses, "smtp": smtp}, providers=EMAIL, breakers=b)
    rig.sink.fault(550, stage="rcpt", reply="5.7.64 TenantAttribution; Relay Access Denied")
    try:
        o = await adapter.deliver(acme_message("a"), CONTENT, idempotency_key="a")
    finally:
        await smtp.close()
    assert (o.status, o.reason) == ("failed_retryable", "circuit_open")
    assert o.retry_after is not None and 0 < o.retry_after <= POLICY.open_s
    assert o.detail is not None and "smtp refused the tenant's sender" in o.detail
    assert rig.proxy.requests == [] and (await b.state("smtp")).circuit is Circuit.CLOSED


async def test_every_provider_open_takes_the_retry_path(rig: Rig) -> None:
    b = breakers(rig.redis, rig.ns)
    for provider in ("ses", "smtp"):
        for _ in range(3):
            await b.record(provider, Result.RETRYABLE)
    o = await failover(rig, b).deliver(email_message("x"), CONTENT, idempotency_key="x")
    assert (o.status, o.reason, o.provider_code) == ("failed_retryable", "circuit_open", "circuit_open")
    assert o.retry_after is not None and 0 < o.retry_after <= POLICY.open_s
    assert rig.proxy.requests == [] and rig.sink.messages() == []


async def test_redis_down_falls_back_to_a_local_breaker(rig: Rig) -> None:
    dead = redis_asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.1)
    try:
        rig.proxy.inject(SES_5XX, times=100)
        adapter = failover(rig, breakers(dead, rig.ns, timeout_s=0.2))
        for i in range(5):
            o = await adapter.deliver(email_message(f"d{i}"), CONTENT, idempotency_key=f"d{i}")
            assert o.provider == "smtp" and o.ok
        assert len(rig.proxy.requests) == 3  # the local breaker opened after 3, as the shared one would
    finally:
        await dead.aclose()


async def test_a_tier_route_puts_smtp_first(rig: Rig) -> None:
    providers = ProvidersSettings(
        email=["ses", "smtp"], by_tier={Tier.CRITICAL: {Channel.EMAIL: ["smtp", "ses"]}}
    )
    adapter = failover(rig, breakers(rig.redis, rig.ns), providers)
    critical = email_message("c")
    critical.tier = Tier.CRITICAL
    assert (await adapter.deliver(critical, CONTENT, idempotency_key="c")).provider == "smtp"
    assert (await adapter.deliver(email_message("h"), CONTENT, idempotency_key="h")).provider == "ses"


async def test_the_registry_builds_a_chain_only_for_several_providers(
    stack: DevStack, sink: SmtpSink
) -> None:
    smtp_settings = SmtpSettings(host="127.0.0.1", port=sink.port, security="none")
    chained = make_settings(stack, providers=EMAIL, smtp=smtp_settings)
    single = make_settings(stack, providers=ProvidersSettings(email=["smtp"]), smtp=smtp_settings)
    a = await build_adapter(Channel.EMAIL, Resources(chained), Lane.PRIORITY)
    b = await build_adapter(Channel.EMAIL, Resources(single), Lane.PRIORITY)
    try:
        assert isinstance(a, FailoverAdapter) and list(a.adapters) == ["ses", "smtp"]
        assert isinstance(b, SmtpEmailAdapter)
    finally:
        await a.close()
        await b.close()


async def test_outcome_records_the_provider_that_delivered(rig: Rig, settings: HeraldSettings) -> None:
    rig.proxy.inject(SES_5XX, times=1)
    consumer = consumer_for(settings, failover(rig, breakers(rig.redis, rig.ns)))  # type: ignore[arg-type]
    (o,) = outcomes(await consumer.handle(incoming([email_message("o")])))
    assert (o.status, o.provider) == (OutcomeStatus.SENT, "smtp")


async def test_sms_sns_throttled_fails_over_to_twilio(
    stack: DevStack, proxy: FaultProxy, redis_client: Any
) -> None:
    from channels.sms.sns import SnsSmsAdapter
    from consumers.devstack.twilio_fake import TwilioFake
    from tests.fakes.fault_proxy import SNS_THROTTLE
    from tests.integration.test_sms_sns import sms_message
    from tests.integration.test_sms_twilio import adapter_for as twilio_adapter

    client, exit_stack = await open_client("sns", aws_options(proxy.url))
    with TwilioFake() as twilio:
        sns = SnsSmsAdapter(client, bucket=TokenBucket(1000), close=exit_stack.aclose)
        tw = twilio_adapter(twilio)
        b = Breakers(redis_client, channel="sms", policy=POLICY, namespace=f"t{uuid.uuid4().hex[:8]}")
        adapter = FailoverAdapter(
            Channel.SMS,
            {"sns": sns, "twilio": tw},
            providers=ProvidersSettings(sms=["sns", "twilio"]),
            breakers=b,
        )
        proxy.inject(SNS_THROTTLE, times=1)
        try:
            first = await adapter.deliver(sms_message("s1"), Content(text="code 1"), idempotency_key="s1")
            second = await adapter.deliver(sms_message("s2"), Content(text="code 2"), idempotency_key="s2")
        finally:
            await adapter.close()
    assert (first.provider, first.ok, second.provider, second.ok) == ("twilio", True, "sns", True)
    assert [m["body"] for m in twilio.messages()] == ["code 1"]


async def test_a_closed_breaker_does_not_cost_a_redis_round_trip_per_call(rig: Rig, stack: DevStack) -> None:
    """Successes are folded into the shared state in batches; a closed breaker admits from what it saw."""

    async def calls() -> int:
        stats = await rig.redis.info("commandstats")
        return sum(
            int(v["calls"])
            for k, v in stats.items()
            if k in ("cmdstat_get", "cmdstat_evalsha", "cmdstat_eval")
        )

    b = breakers(rig.redis, rig.ns, sync_s=0.5)
    before = await calls()
    for _ in range(200):
        assert await b.admit("smtp")
        await b.record("smtp", Result.SUCCESS)
    await b.flush("smtp")
    used = await calls() - before
    assert used < 20, used
    state = await b.state("smtp")
    assert state.circuit is Circuit.CLOSED and state.calls == 200  # every success counted
    for _ in range(3):  # failures are written at once: the breaker opens on the third
        await b.record("smtp", Result.RETRYABLE)
    other = breakers(rig.redis, rig.ns)
    assert not await other.admit("smtp")
