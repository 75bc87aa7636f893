"""Email over SES v2 against moto: what moto accepted is read back, faults come from a real proxy."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from channels.aws import AwsSettings, open_client
from channels.base import Content
from channels.email.ses import SesEmailAdapter
from channels.pacing import TokenBucket
from channels.templates import TemplateRenderer
from consumers.channel.builders.email import build_ses as build_email
from consumers.channel.consumer import ChannelConsumer
from consumers.channel.process import build as build_process
from consumers.devstack import DevStack
from consumers.infra.resources import Resources
from consumers.infra.settings import ChannelConsumerSettings, EmailSettings, HeraldSettings
from consumers.runtime.process import ProcessOptions
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier
from tests.conftest import make_settings
from tests.fakes.fault_proxy import (
    RESET_AFTER_SEND,
    SES_5XX,
    SES_REJECT,
    SES_THROTTLE,
    Fault,
    FaultProxy,
    stall,
)
from tests.fakes.moto_api import aws_options, ensure_identity, sent_mail
from tests.integration.test_channel_consumer import incoming, message, outcomes
from tests.kafka_helpers import produce_raw, wait_for_records

FROM = "Herald <noreply@example.com>"
CONTENT = Content(subject="Hello", text="plain body")


@pytest.fixture
def moto(stack: DevStack) -> str:
    assert stack.moto_url, "the dev stack starts moto"
    return stack.moto_url


@pytest.fixture
def proxy(moto: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto) as p:
        yield p


@pytest_asyncio.fixture
async def adapter(moto: str, proxy: FaultProxy) -> AsyncIterator[SesEmailAdapter]:
    await ensure_identity(moto)
    client, stack = await open_client("sesv2", aws_options(proxy.url, read_timeout_s=1.0))
    yield SesEmailAdapter(
        client,
        from_address=FROM,
        bucket=TokenBucket(1000),
        unsubscribe_url="https://example.com/unsub?u={user_id}&c={category}",
        unsubscribe_mailto="mailto:unsubscribe@example.com",
        close=stack.aclose,
    )
    await stack.aclose()


def email_message(user: str, *, lane: Lane = Lane.PRIORITY, locale: str = "en", **kw: Any) -> ChannelMessage:
    m = message(
        user,
        channel=Channel.EMAIL,
        template="payment_receipt",
        locale=locale,
        payload={"amount": "12.50", "currency": "EUR", "merchant": "Café <Lisboa>"},
        recipient=f"{user}-{uuid.uuid4().hex[:6]}@example.org",
        **kw,
    )
    m.lane = lane
    if lane is Lane.BULK:
        m.tier, m.category = Tier.LOW, "marketing"
    return m


def consumer_for(settings: HeraldSettings, adapter: SesEmailAdapter, **cfg: Any) -> ChannelConsumer:
    return ChannelConsumer(
        channel=Channel.EMAIL,
        lane=Lane.PRIORITY,
        adapter=adapter,
        topics=Topics(settings.topic_prefix),
        settings=ChannelConsumerSettings(**{"inprocess_retries": 2, "inprocess_retry_max_s": 0.05, **cfg}),
        renderer=TemplateRenderer(settings.templates_dir, settings.default_locale),
    )


async def test_mail_is_rendered_sent_and_read_back_from_moto(
    settings: HeraldSettings, adapter: SesEmailAdapter, moto: str
) -> None:
    priority, bulk = email_message("u-prio", locale="pt-BR"), email_message("u-bulk", lane=Lane.BULK)
    o1, o2 = outcomes(await consumer_for(settings, adapter).handle(incoming([priority, bulk])))
    assert (o1.status, o2.status) == (OutcomeStatus.SENT, OutcomeStatus.SENT)
    (p,) = await sent_mail(moto, priority.recipient)
    (b,) = await sent_mail(moto, bulk.recipient)
    assert p["Subject"] == "Recibo: 12.50 EUR em Café <Lisboa>"  # pt-BR fell back to pt
    assert b["Subject"] == "Receipt: 12.50 EUR at Café <Lisboa>"
    html, text = b.get_body(("html",)), b.get_body(("plain",))
    assert html is not None and text is not None
    assert "Café &lt;Lisboa&gt;" in html.get_content()  # autoescaped HTML ...
    assert "Café <Lisboa>" in text.get_content()  # ... but not the text part
    assert p["X-Herald-Idempotency-Key"] == priority.idempotency_key
    assert o1.provider == "ses" and o1.provider_message_id
    # RFC 8058 one-click unsubscribe on bulk mail only
    assert p["List-Unsubscribe"] is None and p["List-Unsubscribe-Post"] is None
    assert (
        b["List-Unsubscribe"]
        == "<https://example.com/unsub?u=u-bulk&c=marketing>, <mailto:unsubscribe@example.com>"
    )
    assert b["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_unverified_sender_is_a_permanent_message_rejected(settings: HeraldSettings, moto: str) -> None:
    client, stack = await open_client("sesv2", aws_options(moto))
    try:
        unverified = SesEmailAdapter(
            client, from_address="someone@unverified-domain.test", bucket=TokenBucket(100)
        )
        (o,) = outcomes(await consumer_for(settings, unverified).handle(incoming([email_message("u-unv")])))
    finally:
        await stack.aclose()
    assert (o.status, o.error_code) == (OutcomeStatus.FAILED_PERMANENT, "MessageRejected")


async def test_throttling_is_retried_in_process_then_sent_once(
    settings: HeraldSettings, adapter: SesEmailAdapter, proxy: FaultProxy, moto: str
) -> None:
    proxy.inject(SES_THROTTLE, times=2)
    m = email_message("u-throttle")
    (o,) = outcomes(await consumer_for(settings, adapter).handle(incoming([m])))
    assert o.status is OutcomeStatus.SENT and o.attempt == 1
    assert [r.fault is not None for r in proxy.requests] == [True, True, False]
    assert len(await sent_mail(moto, m.recipient)) == 1


@pytest.mark.parametrize(
    "case",
    [
        (SES_THROTTLE, "TooManyRequestsException", OutcomeStatus.FAILED_RETRYABLE),
        (SES_5XX, "ServiceUnavailable", OutcomeStatus.FAILED_RETRYABLE),
        (stall(2.0), "ReadTimeoutError", OutcomeStatus.FAILED_RETRYABLE),
        (SES_REJECT, "MessageRejected", OutcomeStatus.FAILED_PERMANENT),
    ],
    ids=["throttle", "5xx", "timeout", "rejected"],
)
async def test_provider_faults_are_classified(
    settings: HeraldSettings,
    adapter: SesEmailAdapter,
    proxy: FaultProxy,
    moto: str,
    case: tuple[Fault, str, OutcomeStatus],
) -> None:
    fault, code, status = case
    proxy.inject(fault, times=10)
    m = email_message("u-fault", attempt=2)
    (o,) = outcomes(await consumer_for(settings, adapter, inprocess_retries=1).handle(incoming([m])))
    assert (o.status, o.error_code, o.attempt) == (status, code, 2)
    assert o.message is not None and o.message.idempotency_key == m.idempotency_key
    calls = 2 if status is OutcomeStatus.FAILED_RETRYABLE else 1  # permanent errors are not retried
    assert len(proxy.requests) == calls
    assert await sent_mail(moto, m.recipient) == []


async def test_a_timeout_is_ambiguous_for_a_medium_email_and_a_dead_endpoint_is_not(
    settings: HeraldSettings, adapter: SesEmailAdapter, proxy: FaultProxy, moto: str
) -> None:
    # SES may have taken a request it did not answer: for a medium email a second copy is worse
    # than none, so it is reported ambiguous after one call, as a send in flight at a crash.
    proxy.inject(stall(2.0), times=10)
    m = email_message("u-stall", tier=Tier.MEDIUM)
    (o,) = outcomes(await consumer_for(settings, adapter, inprocess_retries=2).handle(incoming([m])))
    assert (o.status, o.reason, o.error_code) == (
        OutcomeStatus.FAILED_PERMANENT,
        "ambiguous",
        "ReadTimeoutError",
    )
    assert len(proxy.requests) == 1
    # Nothing listens on the port: the request never left, so it is a plain refusal, retried.
    with FaultProxy(moto) as gone:
        url = gone.url
    client, stack = await open_client("sesv2", aws_options(url, connect_timeout_s=0.5))
    try:
        dead = SesEmailAdapter(client, from_address=FROM, bucket=TokenBucket(100))
        refused = await dead.deliver(m, CONTENT, idempotency_key=m.idempotency_key)
    finally:
        await stack.aclose()
    assert (refused.status, refused.reason, refused.provider_code) == (
        "failed_retryable",
        "provider_unavailable",
        "EndpointConnectionError",
    )


async def test_a_reset_after_ses_took_the_request_is_ambiguous_not_a_refusal(
    settings: HeraldSettings, adapter: SesEmailAdapter, proxy: FaultProxy, moto: str
) -> None:
    # aiobotocore reports a reset while awaiting the answer as EndpointConnectionError, as it does
    # a refused connect: read as provider_unavailable it failed over to SMTP, a second copy.
    m = email_message("u-reset", tier=Tier.MEDIUM)
    proxy.inject(RESET_AFTER_SEND)
    direct = await adapter.deliver(m, CONTENT, idempotency_key=m.idempotency_key)
    assert (direct.status, direct.reason) == ("failed_retryable", "provider_timeout")
    assert len(await sent_mail(moto, m.recipient)) == 1  # SES did send it
    proxy.clear()
    proxy.inject(RESET_AFTER_SEND, times=10)
    (o,) = outcomes(await consumer_for(settings, adapter, inprocess_retries=2).handle(incoming([m])))
    assert (o.status, o.reason) == (OutcomeStatus.FAILED_PERMANENT, "ambiguous")
    assert len(proxy.requests) == 1 and len(await sent_mail(moto, m.recipient)) == 2


async def test_a_tenants_unverified_mail_from_is_permanent_for_it_and_config_for_ours(
    adapter: SesEmailAdapter, proxy: FaultProxy
) -> None:
    unverified = Fault(
        400,
        (("Content-Type", "application/json"), ("x-amzn-ErrorType", "MailFromDomainNotVerifiedException")),
        b'{"message": "MAIL FROM domain not verified"}',
    )
    adapter.tenant_from = {"acme": "Acme <hi@acme.example>"}
    proxy.inject(unverified, times=2)
    acme, ours = email_message("u-acme"), email_message("u-ours")
    acme.tenant = "acme"
    a = await adapter.deliver(acme, CONTENT, idempotency_key=acme.idempotency_key)
    o = await adapter.deliver(ours, CONTENT, idempotency_key=ours.idempotency_key)
    assert (a.status, a.reason) == ("failed_retryable", "tenant_sender_config")  # the breaker ignores it
    assert (o.status, o.reason) == ("failed_retryable", "provider_config")


async def test_sends_are_paced_by_one_bucket_shared_by_all_tasks(
    settings: HeraldSettings, moto: str, adapter: SesEmailAdapter
) -> None:
    adapter.bucket = TokenBucket(20)  # burst 20, then 20/s
    batch = [email_message(f"u-pace-{i}") for i in range(30)]
    started = time.monotonic()
    results = outcomes(await consumer_for(settings, adapter, concurrency=30).handle(incoming(batch)))
    elapsed = time.monotonic() - started
    assert all(o.status is OutcomeStatus.SENT for o in results)
    assert elapsed >= 0.45  # 10 sends past the burst at 20/s


async def test_builder_falls_back_to_14_per_second_when_get_account_fails(stack: DevStack, moto: str) -> None:
    aws = AwsSettings(endpoint_url=moto, access_key_id="testing", secret_access_key="testing")
    res = Resources(make_settings(stack, aws=aws))
    default = await build_email(res)
    overridden = await build_email(
        Resources(make_settings(stack, aws=aws, email=EmailSettings(max_send_rate=250)))
    )
    try:
        assert default.bucket.rate == 14.0  # moto answers GetAccount with 404
        assert overridden.bucket.rate == 250.0
    finally:
        await default.close()
        await overridden.close()


async def test_email_process_end_to_end_in_two_locales(stack: DevStack, moto: str) -> None:
    await ensure_identity(moto)
    aws = AwsSettings(endpoint_url=moto, access_key_id="testing", secret_access_key="testing")
    settings = make_settings(stack, aws=aws, email=EmailSettings(max_send_rate=500))
    topics = Topics(settings.topic_prefix)
    messages = [email_message("u-e2e-en"), email_message("u-e2e-pt", locale="pt")]
    codec = default_codec()
    await produce_raw(
        settings,
        topics.channel(Channel.EMAIL, Lane.PRIORITY),
        [(m.user_id.encode(), codec.encode(m)) for m in messages],
    )
    res = Resources(settings)
    args = ProcessOptions(channel="email", lane="priority", group=f"{settings.topic_prefix}-email")
    spec = await build_process(res, args)
    (runner,) = spec.runners
    task = asyncio.create_task(runner.run())
    try:
        records = await wait_for_records(settings, topics.outcomes, 2, timeout=40)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)
        assert spec.on_stop is not None
        await spec.on_stop()
        await res.close()
    got = {codec.decode(r.value, DeliveryOutcome).user_id: r for r in records}
    assert {u: codec.decode(r.value, DeliveryOutcome).status for u, r in got.items()} == {
        "u-e2e-en": OutcomeStatus.SENT,
        "u-e2e-pt": OutcomeStatus.SENT,
    }
    assert got["u-e2e-en"].key == messages[0].notification_id.encode()
    (en,) = await sent_mail(moto, messages[0].recipient)
    (pt,) = await sent_mail(moto, messages[1].recipient)
    assert (en["Subject"], pt["Subject"]) == (
        "Receipt: 12.50 EUR at Café <Lisboa>",
        "Recibo: 12.50 EUR em Café <Lisboa>",
    )
