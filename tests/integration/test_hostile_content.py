"""Hostile content through every channel's render-and-deliver path, against the real stack.

Generated strings (control characters, lone surrogates, NUL, huge values, payloads nested
deeper than a parser can follow) go into the payload or the user id of a message for each
channel: email (SES on moto), SMS (SNS on moto), push (the FCM fake), in-app (PostgreSQL) and
webhook (a real receiver). Each message must end, in one attempt, either delivered (``sent``)
or ``failed_permanent`` with a named reason: never a retryable ``internal_error``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.base import Content
from channels.in_app.inbox import InAppAdapter
from channels.in_app.inbox_pg import InboxService
from channels.push.devices_pg import PgDeviceTokens
from channels.push.fcm import FcmAdapter, make_client
from channels.push.fcm_auth import FcmAuth
from channels.webhook.endpoints_pg import EndpointStore
from channels.webhook.http import WebhookAdapter, WebhookSettings
from consumers.channel.consumer import ChannelConsumer
from consumers.channel.process import build_consumer
from consumers.devstack import DevStack
from consumers.devstack.fcm_fake import FcmFake, make_service_account
from consumers.infra.keys import idempotency_key, notification_id
from consumers.infra.resources import Resources
from consumers.infra.settings import PushSettings
from consumers.runtime.handling import Incoming, Output
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier, utcnow
from tests.conftest import make_settings
from tests.fakes.moto_api import ensure_identity
from tests.fakes.webhook_receiver import WebhookReceiver, running_receiver
from tests.integration.webhook_helpers import endpoint

pytestmark = pytest.mark.timeout(600)
CODEC = default_codec()
VARIABLES = ("author", "post_title", "excerpt")  # comment_reply: every channel has its templates


@dataclass
class Channels:
    consumers: dict[Channel, ChannelConsumer]
    user: str
    recipients: dict[Channel, str]


@pytest.fixture(scope="module")
def fcm() -> Iterator[FcmFake]:
    with FcmFake(project_id="herald-hostile") as fake:
        yield fake


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with running_receiver() as r:
        yield r


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def channels(
    stack: DevStack,
    fcm: FcmFake,
    receiver: WebhookReceiver,
    pg_pool: asyncpg.Pool,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Channels]:
    assert stack.moto_url
    await ensure_identity(stack.moto_url)
    sa = Path(tmp_path_factory.mktemp("fcm")) / "sa.json"
    fcm.service_account(sa)
    s = make_settings(
        stack,
        push=PushSettings(service_account_file=sa, fcm_base_url=fcm.base_url, token_uri=fcm.token_uri),
        webhook=WebhookSettings(allow_hosts=["127.0.0.1"], endpoint_cache_ttl_s=60.0),
    )
    s = s.model_copy(update={"channel": s.channel.model_copy(update={"inprocess_retries": 0})})
    user = f"u-{uuid.uuid4().hex[:8]}"
    await PgDeviceTokens(pg_pool).register(user, f"tok-{uuid.uuid4().hex}", "android")
    ep = await endpoint(pg_pool, receiver)
    res = Resources(s)
    consumers = {c: await build_consumer(res, c, Lane.PRIORITY) for c in Channel}
    recipients = {
        Channel.EMAIL: f"{user}@example.org",
        Channel.SMS: "+14155550199",
        Channel.PUSH: user,
        Channel.IN_APP: user,
        Channel.WEBHOOK: ep.endpoint_id,
    }
    try:
        yield Channels(consumers, user, recipients)
    finally:
        for c in consumers.values():
            await c.adapter.close()
        await res.close()


def _message(channel: Channel, user: str, recipient: str, payload: str) -> ChannelMessage:
    event_id = str(uuid.uuid4())
    now = utcnow()
    return ChannelMessage(
        notification_id=notification_id(event_id, user),
        event_id=event_id,
        event_type="comment_reply",
        user_id=user,
        channel=channel,
        lane=Lane.PRIORITY,
        tier=Tier.MEDIUM,
        category="activity",
        recipient=recipient,
        template="comment_reply",
        locale="en",
        idempotency_key=idempotency_key(event_id, channel.value, recipient),
        occurred_at=now.replace(microsecond=now.microsecond // 1000 * 1000),
        payload=payload,
    )


_any_char = st.characters(codec=None, categories=None)  # every code point, surrogates included
_control = st.characters(categories=["Cc", "Cs"])
hostile_text = st.one_of(
    st.text(_control, min_size=1, max_size=8),
    st.text(st.one_of(_any_char, _control), min_size=1, max_size=40),
    st.tuples(st.sampled_from(["x", "é", "🎉", "\x00", "\ud800", "\u202e"]), st.integers(5_000, 110_000)).map(
        lambda t: t[0] * t[1]
    ),
)
deep_payload = st.integers(1_000, 100_000).map(lambda d: '{"a":' * d + "1" + "}" * d)


@st.composite
def hostile_messages(draw: st.DrawFn) -> tuple[str, str | None]:
    """(payload JSON, hostile user id or None)."""
    where = draw(st.sampled_from(["payload", "payload", "deep", "user_id"]))
    if where == "deep":
        return draw(deep_payload), None
    text = draw(hostile_text)
    if where == "user_id":
        # An Avro string is UTF-8: a lone surrogate cannot reach a consumer in an id, only escaped in JSON.
        return json.dumps(dict.fromkeys(VARIABLES, "fine")), text.encode("utf-8", "ignore").decode() or "\x00"
    return json.dumps(dict.fromkeys(VARIABLES, text)), None


async def _outcome(consumer: ChannelConsumer, message: ChannelMessage) -> DeliveryOutcome:
    (result,) = await consumer.handle([Incoming("t", 0, 0, b"k", message, (), 0)])
    assert isinstance(result, list), result
    (out,) = result
    assert isinstance(out, Output)
    return CODEC.decode(out.value, DeliveryOutcome)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(case=hostile_messages())
async def test_hostile_content_ends_permanent_or_delivered_in_one_attempt(
    channels: Channels, case: tuple[str, str | None]
) -> None:
    payload, user_id = case
    for channel, consumer in channels.consumers.items():
        user = user_id if user_id is not None else channels.user
        recipient = (
            user
            if user_id is not None and channel in (Channel.PUSH, Channel.IN_APP)
            else channels.recipients[channel]
        )
        outcome = await _outcome(consumer, _message(channel, user, recipient, payload))
        verdict = (channel.value, outcome.status.value, outcome.reason, (outcome.detail or "")[:200])
        assert outcome.status in (OutcomeStatus.SENT, OutcomeStatus.FAILED_PERMANENT), verdict
        assert outcome.reason != "internal_error", verdict
        if outcome.status is OutcomeStatus.FAILED_PERMANENT:
            assert outcome.reason, verdict


async def test_postgresql_down_is_a_named_retryable_outcome_not_an_internal_error(stack: DevStack) -> None:
    """In-app rows, push device lookups and webhook endpoint lookups: an outage is retried as
    ``database_unavailable``, never the catch-all ``internal_error``."""
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=1)
    assert pool is not None
    await pool.close()  # the server is up, but this pool cannot reach it: an outage as asyncpg sees it
    fcm_client = make_client("http://127.0.0.1:9", timeout_s=1.0, max_connections=1)
    adapters: list[InAppAdapter | FcmAdapter | WebhookAdapter] = [
        InAppAdapter(InboxService(pool)),
        FcmAdapter(
            client=fcm_client,
            auth=FcmAuth(make_service_account("http://127.0.0.1:9/token"), margin_s=60),
            devices=PgDeviceTokens(pool),
            project_id="p",
        ),
        WebhookAdapter(EndpointStore(pool), WebhookSettings()),
    ]
    try:
        for adapter in adapters:
            message = _message(adapter.channel, "u1", "u1", json.dumps(dict.fromkeys(VARIABLES, "ok")))
            outcome = await adapter.deliver(
                message, Content(title="t", text="x", body=b"{}"), idempotency_key="k"
            )
            assert (outcome.status, outcome.reason) == ("failed_retryable", "database_unavailable"), outcome
    finally:
        await fcm_client.aclose()
        await adapters[2].close()
