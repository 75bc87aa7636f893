"""SMS over Twilio's Messages API against a local Twilio-shaped fake that checks what Twilio checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import pytest_asyncio

from channels.base import Content, Failure
from channels.pacing import TokenBucket
from channels.sms.twilio import TwilioOptions, TwilioSettings, TwilioSmsAdapter, classify, make_client
from consumers.channel.builders.sms import build_twilio
from consumers.devstack import DevStack
from consumers.devstack.twilio_fake import TwilioFake
from consumers.infra.resources import Resources
from consumers.infra.settings import HeraldSettings
from schemas.errors import ConfigurationError
from schemas.models import OutcomeStatus
from tests.conftest import make_settings
from tests.integration.test_channel_consumer import incoming, outcomes
from tests.integration.test_sms_sns import consumer_for, sms_message

TEXT = Content(text="Your code is 123456")


@pytest.fixture
def twilio() -> Iterator[TwilioFake]:
    with TwilioFake() as t:
        yield t


def adapter_for(twilio: TwilioFake, **kw: Any) -> TwilioSmsAdapter:
    options = {
        "account_sid": twilio.account_sid,
        "auth_token": twilio.auth_token,
        "from_number": twilio.numbers[0],
        "status_callback_url": "https://herald.example.com/v1/providers/twilio/status",
        **kw,
    }
    return TwilioSmsAdapter(
        make_client(twilio.base_url, timeout_s=2.0, max_connections=4),
        TwilioOptions(**options),
        bucket=TokenBucket(10_000),
    )


@pytest_asyncio.fixture
async def adapter(twilio: TwilioFake) -> AsyncIterator[TwilioSmsAdapter]:
    a = adapter_for(twilio)
    yield a
    await a.close()


async def test_sent_through_the_consumer_and_recorded_by_the_fake(
    settings: HeraldSettings, adapter: TwilioSmsAdapter, twilio: TwilioFake
) -> None:
    m = sms_message("u-tw")
    (o,) = outcomes(await consumer_for(settings, adapter).handle(incoming([m])))  # type: ignore[arg-type]
    assert (o.status, o.provider) == (OutcomeStatus.SENT, "twilio")
    (got,) = twilio.messages()
    assert o.provider_message_id == got["sid"] and got["sid"].startswith("SM")
    assert got["to"] == m.recipient and got["from"] == twilio.numbers[0]
    assert "Pixel 8" in got["body"]
    callback = urlsplit(got["status_callback"])
    assert callback.path == "/v1/providers/twilio/status"
    assert parse_qs(callback.query) == {"n": [m.notification_id], "u": ["u-tw"]}


async def test_wrong_token_is_retryable_provider_auth(twilio: TwilioFake) -> None:
    a = adapter_for(twilio, auth_token="not-the-token")
    try:
        o = await a.deliver(sms_message("u"), TEXT, idempotency_key="k")
    finally:
        await a.close()
    assert (o.status, o.provider_code, o.reason) == ("failed_retryable", "20003", "provider_auth")
    assert twilio.messages() == []


async def test_a_number_the_account_does_not_own_is_a_configuration_fault(twilio: TwilioFake) -> None:
    a = adapter_for(twilio, from_number="+15005550001")
    try:
        o = await a.deliver(sms_message("u"), TEXT, idempotency_key="k")
    finally:
        await a.close()
    assert (o.status, o.provider_code, o.reason) == ("failed_retryable", "21606", "provider_config")


async def test_messaging_service_instead_of_a_number(twilio: TwilioFake) -> None:
    a = adapter_for(twilio, from_number=None, messaging_service_sid="MG" + "0" * 32)
    try:
        assert (await a.deliver(sms_message("u"), TEXT, idempotency_key="k")).ok
    finally:
        await a.close()
    (got,) = twilio.messages()
    assert got["from"] is None and got["messaging_service_sid"] == "MG" + "0" * 32


@pytest.mark.parametrize(
    "case",
    [
        (21211, "failed_permanent", "invalid_address"),
        (21610, "failed_permanent", "opted_out"),
        (21614, "failed_permanent", "invalid_address"),
        (20429, "failed_retryable", "provider_throttled"),
        (20500, "failed_retryable", "provider_unavailable"),
        (20503, "failed_retryable", "provider_unavailable"),
    ],
)
async def test_error_codes_are_classified(
    adapter: TwilioSmsAdapter, twilio: TwilioFake, case: tuple[int, str, str]
) -> None:
    code, status, reason = case
    twilio.fault(code)
    o = await adapter.deliver(sms_message("u"), TEXT, idempotency_key="k")
    assert (o.status, o.provider_code, o.reason) == (status, str(code), reason)
    assert (await adapter.deliver(sms_message("u"), TEXT, idempotency_key="k2")).ok


async def test_bad_number_never_reaches_twilio(adapter: TwilioSmsAdapter, twilio: TwilioFake) -> None:
    o = await adapter.deliver(sms_message("u", number="0044123"), TEXT, idempotency_key="k")
    assert (o.status, o.reason, o.provider_code) == ("failed_permanent", "invalid_address", None)
    assert twilio.messages() == []


async def test_the_fake_checks_what_twilio_checks(twilio: TwilioFake) -> None:
    """The fake refuses what Twilio refuses, so the adapter's tests mean something."""
    path = f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    auth = (twilio.account_sid, twilio.auth_token)
    good = {"To": "+351912345678", "From": twilio.numbers[0], "Body": "hi"}
    async with httpx.AsyncClient(base_url=twilio.base_url) as c:
        cases = [
            ({"data": good}, 20003),
            ({"data": good, "auth": ("AC" + "1" * 32, twilio.auth_token)}, 20003),
            ({"data": {**good, "To": "912345678"}, "auth": auth}, 21211),
            ({"data": {k: v for k, v in good.items() if k != "Body"}, "auth": auth}, 21602),
            ({"data": {k: v for k, v in good.items() if k != "From"}, "auth": auth}, 21603),
            ({"data": {k: v for k, v in good.items() if k != "To"}, "auth": auth}, 21604),
            ({"data": {**good, "Body": "x" * 1601}, "auth": auth}, 21617),
        ]
        for kwargs, code in cases:
            r = await c.post(path, **kwargs)  # type: ignore[arg-type]
            assert r.json()["code"] == code, (kwargs, r.text)
        other = await c.post(f"/2010-04-01/Accounts/AC{'2' * 32}/Messages.json", data=good, auth=auth)
        assert other.json()["code"] == 20404
        ok = await c.post(path, data=good, auth=auth)
        assert ok.status_code == 201


async def test_twilio_down_is_a_retryable_refusal() -> None:
    with TwilioFake() as t:
        a = adapter_for(t)
    try:
        o = await a.deliver(sms_message("u"), TEXT, idempotency_key="k")
    finally:
        await a.close()
    assert (o.status, o.reason) == ("failed_retryable", "provider_unavailable")


async def test_builder_needs_credentials_and_a_sender(stack: DevStack, twilio: TwilioFake) -> None:
    with pytest.raises(ConfigurationError):
        await build_twilio(Resources(make_settings(stack)))
    cfg = TwilioSettings(
        base_url=twilio.base_url,
        account_sid=twilio.account_sid,
        auth_token=twilio.auth_token,
        from_number=twilio.numbers[0],
    )
    a = await build_twilio(Resources(make_settings(stack, twilio=cfg)))
    try:
        assert (await a.deliver(sms_message("u"), TEXT, idempotency_key="k")).ok
    finally:
        await a.close()


def test_classify_falls_back_on_the_status() -> None:
    assert classify(99999, 400) == Failure.permanent("provider_99999")
    assert classify(None, 502) == Failure.retry("provider_http_502")
    assert classify(None, 429) == Failure.retry("provider_http_429")
    assert classify(21211, 400) == Failure.permanent("invalid_address")
