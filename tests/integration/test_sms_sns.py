"""SMS over SNS Publish against moto, with faults and request capture from the fault proxy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs

import pytest
import pytest_asyncio

from channels.aws import AwsSettings, open_client
from channels.pacing import TokenBucket
from channels.sms.sns import SnsSmsAdapter
from channels.templates import TemplateRenderer
from consumers.channel.builders.sms import build_sns as build_sms
from consumers.channel.consumer import ChannelConsumer
from consumers.devstack import DevStack
from consumers.infra.resources import Resources
from consumers.infra.settings import ChannelConsumerSettings, HeraldSettings, SmsSettings
from consumers.runtime.topics import Topics
from schemas.models import Channel, ChannelMessage, Lane, OutcomeStatus, Tier
from tests.conftest import make_settings
from tests.fakes.fault_proxy import SNS_AUTH, SNS_THROTTLE, FaultProxy, Recorded
from tests.fakes.moto_api import aws_options, sent_sms
from tests.integration.test_channel_consumer import incoming, message, outcomes


@pytest.fixture
def moto(stack: DevStack) -> str:
    assert stack.moto_url
    return stack.moto_url


@pytest.fixture
def proxy(moto: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto) as p:
        yield p


@pytest_asyncio.fixture
async def adapter(proxy: FaultProxy) -> AsyncIterator[SnsSmsAdapter]:
    client, stack = await open_client("sns", aws_options(proxy.url))
    yield SnsSmsAdapter(client, bucket=TokenBucket(1000), sender_id="Herald", max_segments=2)
    await stack.aclose()


def phone() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


def sms_message(
    user: str,
    *,
    lane: Lane = Lane.PRIORITY,
    tier: Tier = Tier.CRITICAL,
    number: str | None = None,
    template: str = "security_alert",
    locale: str = "en",
    payload: dict[str, object] | None = None,
) -> ChannelMessage:
    m = message(
        user,
        channel=Channel.SMS,
        template=template,
        locale=locale,
        recipient=number or phone(),
        payload=payload or {"device": "Pixel 8", "ip": "203.0.113.9", "location": "Porto"},
    )
    m.lane, m.tier = lane, tier
    return m


def consumer_for(settings: HeraldSettings, adapter: SnsSmsAdapter) -> ChannelConsumer:
    return ChannelConsumer(
        channel=Channel.SMS,
        lane=Lane.PRIORITY,
        adapter=adapter,
        topics=Topics(settings.topic_prefix),
        settings=ChannelConsumerSettings(inprocess_retries=1, inprocess_retry_max_s=0.05),
        renderer=TemplateRenderer(settings.templates_dir, settings.default_locale),
    )


def attributes(request: Recorded) -> dict[str, str]:
    form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
    out = {}
    for key, name in form.items():
        if key.startswith("MessageAttributes.entry.") and key.endswith(".Name"):
            out[name] = form[key.removesuffix(".Name") + ".Value.StringValue"]
    return out


async def test_sms_is_published_with_type_and_sender_id(
    settings: HeraldSettings, adapter: SnsSmsAdapter, proxy: FaultProxy, moto: str
) -> None:
    critical = sms_message("u-crit", locale="pt-BR")
    bulk = sms_message(
        "u-promo", lane=Lane.BULK, tier=Tier.LOW, template="tips", payload={"tip": "Use dark mode"}
    )
    o1, o2 = outcomes(await consumer_for(settings, adapter).handle(incoming([critical, bulk])))
    assert (o1.status, o2.status) == (OutcomeStatus.SENT, OutcomeStatus.SENT)
    assert o1.provider == "sns" and o1.provider_message_id
    (c,) = await sent_sms(moto, critical.recipient)
    (b,) = await sent_sms(moto, bulk.recipient)
    assert c["message"] == "Alerta: novo acesso em Pixel 8 de Porto. Nao foi voce? Troque sua senha agora."
    assert b["message"] == "Tip: Use dark mode"
    assert c["message_id"] == o1.provider_message_id
    sent = {parse_qs(r.body.decode())["PhoneNumber"][0]: attributes(r) for r in proxy.requests}
    assert sent[critical.recipient] == {
        "AWS.SNS.SMS.SMSType": "Transactional",
        "AWS.SNS.SMS.SenderID": "Herald",
    }
    assert sent[bulk.recipient]["AWS.SNS.SMS.SMSType"] == "Promotional"


@pytest.mark.parametrize("number", ["5555550100", "+0123456789", "+1 555 0100", "+1555abc0100", ""])
async def test_invalid_numbers_fail_permanently_without_a_call(
    settings: HeraldSettings, adapter: SnsSmsAdapter, proxy: FaultProxy, number: str
) -> None:
    m = sms_message("u-badnum")
    m.recipient = number
    (o,) = outcomes(await consumer_for(settings, adapter).handle(incoming([m])))
    assert (o.status, o.reason) == (OutcomeStatus.FAILED_PERMANENT, "invalid_address")
    assert proxy.requests == []


async def test_too_many_segments_fail_permanently(
    settings: HeraldSettings, adapter: SnsSmsAdapter, proxy: FaultProxy
) -> None:
    m = sms_message("u-long", template="activity", payload={"summary": "€" * 120})  # 240 GSM-7 units → 2
    long = sms_message("u-longer", template="activity", payload={"summary": "ção " * 40})  # UCS-2, 3 segments
    ok, too_long = outcomes(await consumer_for(settings, adapter).handle(incoming([m, long])))
    assert ok.status is OutcomeStatus.SENT and "2 GSM-7" in (ok.detail or "")
    assert (too_long.status, too_long.reason) == (OutcomeStatus.FAILED_PERMANENT, "payload_too_large")
    assert len(proxy.requests) == 1


async def test_throttling_is_retryable_with_the_sns_code(
    settings: HeraldSettings, adapter: SnsSmsAdapter, proxy: FaultProxy, moto: str
) -> None:
    proxy.inject(SNS_THROTTLE, times=5, match="Action=Publish")
    m = sms_message("u-throttled")
    (o,) = outcomes(await consumer_for(settings, adapter).handle(incoming([m])))
    assert (o.status, o.error_code) == (OutcomeStatus.FAILED_RETRYABLE, "Throttling")
    assert len(proxy.requests) == 2 and await sent_sms(moto, m.recipient) == []


async def test_refused_permissions_are_retryable_provider_auth(
    settings: HeraldSettings, adapter: SnsSmsAdapter, proxy: FaultProxy, moto: str
) -> None:
    # Our IAM policy, not the number: retryable, so the breaker opens and Twilio takes over.
    proxy.inject(SNS_AUTH, times=5, match="Action=Publish")
    m = sms_message("u-iam")
    (o,) = outcomes(await consumer_for(settings, adapter).handle(incoming([m])))
    assert (o.status, o.error_code, o.reason) == (
        OutcomeStatus.FAILED_RETRYABLE,
        "AuthorizationError",
        "provider_auth",
    )
    assert await sent_sms(moto, m.recipient) == []


async def test_builder_uses_sms_settings(stack: DevStack, moto: str) -> None:
    aws = AwsSettings(endpoint_url=moto, access_key_id="testing", secret_access_key="testing")
    settings = make_settings(stack, aws=aws, sms=SmsSettings(sender_id="Acme", max_send_rate=5))
    adapter = await build_sms(Resources(settings))
    try:
        assert (adapter.sender_id, adapter.bucket.rate, adapter.max_segments) == ("Acme", 5.0, 3)
        m = sms_message("u-built")
        o = await adapter.deliver(
            m, TemplateRenderer(settings.templates_dir).render_message(m), idempotency_key=m.idempotency_key
        )
        assert o.ok and len(await sent_sms(moto, m.recipient)) == 1
    finally:
        await adapter.close()
