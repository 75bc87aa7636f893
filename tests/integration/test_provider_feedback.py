"""Provider feedback through the real API: SNS-signed SES events (a locally generated signing
certificate, served over HTTP where the endpoint fetches it), Twilio status callbacks, the
suppression list in PostgreSQL, and the email consumer refusing suppressed addresses."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from channels.email.ses_events import encode_tag
from channels.sms.twilio import TwilioSettings
from channels.sms.twilio_signature import twilio_signature
from consumers.cli.main import build_parser
from consumers.devstack import DevStack
from consumers.devstack.smtp_sink import SmtpSink
from consumers.devstack.sns_signer import SnsSigner
from consumers.devstack.threaded_app import ThreadedApp
from consumers.infra.provider_settings import FeedbackSettings, ProvidersSettings
from consumers.infra.suppressions import SuppressionStore
from schemas.codec import default_codec
from schemas.models import Channel, OutcomeStatus, Receipt, ReceiptStatus
from tests.api_helpers import RunningApi, api_settings, running_api
from tests.conftest import make_settings
from tests.integration.test_channel_consumer import incoming, outcomes
from tests.integration.test_email_ses import consumer_for, email_message
from tests.integration.test_email_smtp import adapter_for
from tests.kafka_helpers import wait_for_records

TWILIO_TOKEN = "twilio-test-token"
CALLBACK = "https://herald.example.com/v1/providers/twilio/status"


class CertHost(ThreadedApp):
    """Serves the signer's certificate (and records subscription confirmations): what AWS serves."""

    name = "sns-cert-host"

    def __init__(self) -> None:
        super().__init__()
        self.pem = b""
        self.confirmed: list[str] = []
        self.fetched: list[str] = []  # certificate paths asked for

    def app(self) -> Starlette:
        async def cert(request: Request) -> Response:
            self.fetched.append(request.url.path)
            return Response(self.pem, media_type="application/x-pem-file")

        async def confirm(request: Request) -> Response:
            self.confirmed.append(str(request.query_params.get("Token")))
            return Response("<ConfirmSubscriptionResponse/>", media_type="text/xml")

        return Starlette(routes=[Route("/{name}.pem", cert), Route("/confirm", confirm)])


@pytest.fixture(scope="module")
def cert_host() -> Iterator[CertHost]:
    with CertHost() as host:
        yield host


@pytest.fixture(scope="module")
def signer(cert_host: CertHost) -> SnsSigner:
    s = SnsSigner(f"{cert_host.base_url}/cert.pem")
    cert_host.pem = s.cert_pem
    return s


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: DevStack, signer: SnsSigner) -> AsyncIterator[RunningApi]:
    feedback = FeedbackSettings(
        sns_cert_host_pattern=r"127\.0\.0\.1", sns_cert_scheme="http", sns_topic_arns=[signer.topic_arn]
    )
    settings = make_settings(
        stack,
        api=api_settings(),
        providers=ProvidersSettings(feedback=feedback),
        twilio=TwilioSettings(auth_token=TWILIO_TOKEN, status_callback_url=CALLBACK),
    )
    async with running_api(settings) as running:
        yield running


def address() -> str:
    return f"fb-{uuid.uuid4().hex[:8]}@example.org"


def ses_event(
    kind: str, body: dict[str, Any], *, notification: str = "n-1", user: str = "u-1"
) -> dict[str, Any]:
    tags = {"herald_notification": [encode_tag(notification)], "herald_user": [encode_tag(user)]}
    return {"eventType": kind, "mail": {"messageId": "ses-1", "tags": tags}, kind.lower(): body}


async def post_sns(api: RunningApi, message: dict[str, Any]) -> Any:
    return await api.client.post(
        "/v1/providers/ses/events", content=json.dumps(message), headers={"Content-Type": "text/plain"}
    )


async def test_subscription_confirmation_is_confirmed(
    api: RunningApi, signer: SnsSigner, cert_host: CertHost
) -> None:
    msg = signer.subscription_confirmation(
        f"{cert_host.base_url}/confirm?Action=ConfirmSubscription&Token=tok-1"
    )
    r = await post_sns(api, msg)
    assert r.status_code == 200 and r.json()["applied"] == "subscription_confirmed"
    assert cert_host.confirmed == ["tok-1"]


async def test_hard_bounce_and_complaint_suppress_soft_bounce_counts(
    api: RunningApi, signer: SnsSigner, pg_pool: asyncpg.Pool
) -> None:
    hard, soft, complainer = address(), address(), address()
    store = SuppressionStore(pg_pool)
    events = [
        ses_event(
            "Bounce", {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": hard.upper()}]}
        ),
        ses_event("Bounce", {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": soft}]}),
        ses_event("Bounce", {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": soft}]}),
        ses_event("Complaint", {"complainedRecipients": [{"emailAddress": complainer}]}),
    ]
    for e in events:
        r = await post_sns(api, signer.notification(e))
        assert r.status_code == 200, r.text
    assert await store.suppressed("email", [hard, soft, complainer]) == {hard, complainer}
    assert await store.soft_bounces("email", soft) == 2


async def test_a_forged_message_is_rejected(
    api: RunningApi, signer: SnsSigner, pg_pool: asyncpg.Pool
) -> None:
    victim = address()
    genuine = signer.notification(
        ses_event("Bounce", {"bounceType": "Transient", "bouncedRecipients": [{"emailAddress": victim}]})
    )
    forged_body = ses_event(
        "Bounce", {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": victim}]}
    )
    forged = {**genuine, "Message": json.dumps(forged_body)}  # signature of the genuine one
    r = await post_sns(api, forged)
    assert r.status_code == 403 and "signature" in r.json()["title"] + r.json().get("detail", "")
    forger = SnsSigner(signer.cert_url)  # signs well, with another key, pointing at the real cert
    assert (await post_sns(api, forger.notification(forged_body))).status_code == 403
    elsewhere = SnsSigner("https://evil.example/cert.pem")  # its own certificate, on its own host
    assert (await post_sns(api, elsewhere.notification(forged_body))).status_code == 403
    assert await SuppressionStore(pg_pool).suppressed("email", [victim]) == set()
    assert (await api.client.post("/v1/providers/ses/events", content=b"[1]")).status_code == 400


async def test_another_accounts_topic_is_neither_confirmed_nor_applied(
    api: RunningApi, signer: SnsSigner, cert_host: CertHost, pg_pool: asyncpg.Pool
) -> None:
    """Anyone can own an SNS topic whose messages verify (AWS signs them all): only the listed
    topics count, before any certificate fetch or confirmation."""
    victim = address()
    # A certificate URL of its own (served like AWS's), so a fetch cannot hide behind the cache.
    cert_path = f"/stranger-{uuid.uuid4().hex[:8]}.pem"
    stranger = SnsSigner(
        f"{cert_host.base_url}{cert_path}", topic_arn="arn:aws:sns:us-east-1:999999999999:mine"
    )
    stranger.key, stranger.cert = signer.key, signer.cert  # signed exactly as AWS would
    confirm = stranger.subscription_confirmation(
        f"{cert_host.base_url}/confirm?Action=ConfirmSubscription&Token=tok-stranger"
    )
    r = await post_sns(api, confirm)
    assert r.status_code == 403 and "topic" in r.text
    assert "tok-stranger" not in cert_host.confirmed
    bounce = ses_event("Bounce", {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": victim}]})
    assert (await post_sns(api, stranger.notification(bounce))).status_code == 403
    assert await SuppressionStore(pg_pool).suppressed("email", [victim]) == set()
    assert cert_path not in cert_host.fetched  # refused before any certificate fetch


async def test_ses_feedback_is_off_without_a_topic_list(
    stack: DevStack, signer: SnsSigner, cert_host: CertHost, pg_pool: asyncpg.Pool
) -> None:
    feedback = FeedbackSettings(sns_cert_host_pattern=r"127\.0\.0\.1", sns_cert_scheme="http")
    settings = make_settings(stack, api=api_settings(), providers=ProvidersSettings(feedback=feedback))
    victim = address()
    bounce = ses_event("Bounce", {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": victim}]})
    confirm = signer.subscription_confirmation(
        f"{cert_host.base_url}/confirm?Action=ConfirmSubscription&Token=tok-off"
    )
    async with running_api(settings) as off:
        for message in (confirm, signer.notification(bounce)):
            r = await post_sns(off, message)
            assert r.status_code == 404 and "SNS_TOPIC_ARNS" in r.text
    assert "tok-off" not in cert_host.confirmed
    assert await SuppressionStore(pg_pool).suppressed("email", [victim]) == set()


async def test_delivery_becomes_a_delivered_receipt(api: RunningApi, signer: SnsSigner) -> None:
    notification = f"n-{uuid.uuid4().hex[:8]}"
    e = ses_event("Delivery", {"recipients": [address()]}, notification=notification, user="user/ü")
    assert (await post_sns(api, signer.notification(e))).status_code == 200
    records = await wait_for_records(api.settings, api.ctx.topics.receipts, 1)
    receipts = [default_codec().decode(r.value, Receipt) for r in records]
    mine = [r for r in receipts if r.notification_id == notification]
    assert len(mine) == 1
    assert (mine[0].status, mine[0].user_id, mine[0].channel, mine[0].source) == (
        ReceiptStatus.DELIVERED,
        "user/ü",
        Channel.EMAIL,
        "ses",
    )


async def test_twilio_status_callbacks_are_signature_checked(api: RunningApi, pg_pool: asyncpg.Pool) -> None:
    notification = f"n-{uuid.uuid4().hex[:8]}"
    query = f"n={notification}&u=u-sms"
    url = f"{CALLBACK}?{query}"
    delivered = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": "+351912345678"}
    path = f"/v1/providers/twilio/status?{query}"
    bad = await api.client.post(path, data=delivered, headers={"X-Twilio-Signature": "AAAA"})
    assert bad.status_code == 403
    good = await api.client.post(
        path, data=delivered, headers={"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, url, delivered)}
    )
    assert good.status_code == 200 and good.json()["applied"] == "delivered"
    records = await wait_for_records(api.settings, api.ctx.topics.receipts, 1)
    mine = [
        r
        for r in (default_codec().decode(x.value, Receipt) for x in records)
        if r.notification_id == notification
    ]
    assert [(r.status, r.channel, r.source, r.user_id) for r in mine] == [
        (ReceiptStatus.DELIVERED, Channel.SMS, "twilio", "u-sms")
    ]
    number = "+3519" + str(uuid.uuid4().int)[:8]
    stop = {"MessageSid": "SM2", "MessageStatus": "failed", "ErrorCode": "21610", "To": number}
    r = await api.client.post(
        path, data=stop, headers={"X-Twilio-Signature": twilio_signature(TWILIO_TOKEN, url, stop)}
    )
    assert r.status_code == 200
    assert await SuppressionStore(pg_pool).suppressed("sms", [number]) == {number}


async def test_the_email_consumer_refuses_suppressed_addresses(
    stack: DevStack, pg_pool: asyncpg.Pool
) -> None:
    settings = make_settings(stack)
    store = SuppressionStore(pg_pool)
    blocked, fine = email_message("u-blocked"), email_message("u-fine")
    await store.add("email", [blocked.recipient.upper()], reason="bounce_permanent", source="ses")
    with SmtpSink(security="none") as sink:
        adapter = adapter_for(sink)
        consumer = consumer_for(settings, adapter)  # type: ignore[arg-type]
        consumer.suppressions = store
        try:
            o1, o2 = outcomes(await consumer.handle(incoming([blocked, fine])))
        finally:
            await adapter.close()
        assert (o1.status, o1.reason) == (OutcomeStatus.SUPPRESSED, "address_suppressed")
        assert o2.status is OutcomeStatus.SENT
        assert [m.rcpt_tos for m in sink.messages()] == [(fine.recipient,)]


async def test_cli_list_add_remove(
    stack: DevStack, pg_pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(stack)
    who = address()
    for argv in (["add", who, "--detail", "asked by support"], ["list", "--json", "--channel", "email"]):
        args = build_parser().parse_args(["suppressions", *argv])
        assert await args.func(settings, args) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in out[1:]]
    assert {"address": who, "reason": "manual", "source": "cli"}.items() <= next(
        r for r in rows if r["address"] == who
    ).items()
    args = build_parser().parse_args(["suppressions", "remove", who])
    assert await args.func(settings, args) == 0
    assert await SuppressionStore(pg_pool).suppressed("email", [who]) == set()
