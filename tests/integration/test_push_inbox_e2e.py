"""End to end through the generic channel consumer: `herald run channel --channel push` and
`--channel in_app` as built by consumers/channel/process.py, on real Kafka, PostgreSQL, Redis
and the local FCM fake, with the default templates."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from channels.in_app.inbox_pg import InboxService
from channels.push.devices_pg import PgDeviceTokens
from consumers.channel.process import build as build_process
from consumers.devstack import DevStack
from consumers.devstack.fcm_fake import FcmFake
from consumers.infra.keys import idempotency_key, notification_id
from consumers.infra.resources import Resources
from consumers.infra.settings import PushSettings
from consumers.runtime.process import ProcessOptions
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import Channel, ChannelMessage, DeliveryOutcome, Lane, OutcomeStatus, Tier, utcnow
from tests.conftest import make_settings
from tests.kafka_helpers import produce_raw, wait_for_records

CODEC = default_codec()


@pytest.fixture(scope="module")
def fcm() -> Iterator[FcmFake]:
    with FcmFake(project_id="herald-e2e") as fake:
        yield fake


def channel_message(
    user: str,
    channel: Channel,
    template: str,
    tier: Tier,
    payload: dict[str, str],
    *,
    event_id: str | None = None,
) -> ChannelMessage:
    event_id = event_id or str(uuid.uuid4())
    now = utcnow()
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # Avro timestamp-millis
    return ChannelMessage(
        notification_id=notification_id(event_id, user),
        event_id=event_id,
        event_type=template,
        user_id=user,
        channel=channel,
        lane=Lane.PRIORITY,
        tier=tier,
        category="activity",
        recipient=user,
        template=template,
        locale="en",
        idempotency_key=idempotency_key(event_id, channel.value, user),
        occurred_at=now - timedelta(seconds=1),
        payload=json.dumps(payload),
    )


async def test_push_and_in_app_processes(
    stack: DevStack, fcm: FcmFake, tmp_path: Path, pg_pool: asyncpg.Pool
) -> None:
    sa = tmp_path / "sa.json"
    fcm.service_account(sa)
    settings = make_settings(
        stack, push=PushSettings(service_account_file=sa, fcm_base_url=fcm.base_url, token_uri=fcm.token_uri)
    )
    topics = Topics(settings.topic_prefix)
    with_phone, without = f"u-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
    token = f"tok-{uuid.uuid4().hex}"
    await PgDeviceTokens(pg_pool).register(with_phone, token, "ios")

    pay = {"amount": "12.50", "currency": "EUR", "merchant": "Acme"}
    pushes = [
        channel_message(with_phone, Channel.PUSH, "payment_receipt", Tier.HIGH, pay),
        channel_message(without, Channel.PUSH, "payment_receipt", Tier.HIGH, pay),
    ]
    reply = {"author": "Ana", "post_title": "Kafka", "excerpt": "Nice post"}
    first = channel_message(with_phone, Channel.IN_APP, "comment_reply", Tier.MEDIUM, reply)
    redelivered = channel_message(
        with_phone, Channel.IN_APP, "comment_reply", Tier.MEDIUM, reply, event_id=first.event_id
    )
    for channel, batch in ((Channel.PUSH, pushes), (Channel.IN_APP, [first, redelivered])):
        await produce_raw(
            settings,
            topics.channel(channel, Lane.PRIORITY),
            [(m.user_id.encode(), CODEC.encode(m)) for m in batch],
        )

    res = Resources(settings)
    specs = [
        await build_process(
            res, ProcessOptions(channel=c, lane="priority", group=f"{settings.topic_prefix}-{c}")
        )
        for c in ("push", "in_app")
    ]
    runners = [r for spec in specs for r in spec.runners]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        records = await wait_for_records(settings, topics.outcomes, 4, timeout=60)
    finally:
        for r in runners:
            r.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
        for spec in specs:
            assert spec.on_stop is not None
            await spec.on_stop()
        await res.close()

    outcomes = [CODEC.decode(r.value, DeliveryOutcome) for r in records]
    by = {(o.channel, o.user_id, o.status, o.reason) for o in outcomes}
    assert (Channel.PUSH, with_phone, OutcomeStatus.SENT, None) in by
    assert (Channel.PUSH, without, OutcomeStatus.FAILED_PERMANENT, "no_device") in by
    in_app = [o for o in outcomes if o.channel is Channel.IN_APP]
    assert [o.status for o in in_app] == [OutcomeStatus.SENT, OutcomeStatus.SENT]
    assert in_app[0].provider == "inbox" and in_app[0].provider_message_id == in_app[1].provider_message_id

    [sent] = [m["message"] for m in fcm.messages() if m["message"]["token"] == token]
    assert sent["notification"] == {"title": "Payment received", "body": "12.50 EUR to Acme"}
    assert sent["data"]["notification_id"] == pushes[0].notification_id
    assert sent["apns"]["headers"]["apns-priority"] == "10"

    page = await InboxService(pg_pool).get_unread(with_phone)
    assert [(i.title, i.body, i.notification_id) for i in page.items] == [
        ("Ana replied to Kafka", "Nice post", first.notification_id)
    ]
