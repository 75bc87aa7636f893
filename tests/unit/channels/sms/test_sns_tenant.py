"""Sender identity per tenant: the SMS SenderID of the message's tenant."""

from __future__ import annotations

from datetime import UTC, datetime

from channels.base import Content
from channels.pacing import TokenBucket
from channels.sms.sns import SnsSmsAdapter
from schemas.models import Channel, ChannelMessage, Lane, Tier


def _message(channel: Channel, recipient: str, tenant: str | None) -> ChannelMessage:
    return ChannelMessage(
        notification_id="n1",
        event_id="e1",
        event_type="welcome",
        user_id="u1",
        channel=channel,
        lane=Lane.PRIORITY,
        tier=Tier.HIGH,
        category="c",
        recipient=recipient,
        template="welcome",
        locale="en",
        idempotency_key="k1",
        occurred_at=datetime.now(UTC),
        tenant=tenant,
    )


def test_sms_sender_id_is_the_tenants() -> None:
    a = SnsSmsAdapter(None, bucket=TokenBucket(10), sender_id="Herald", tenant_sender_ids={"acme": "ACME"})
    content = Content(text="hello")
    sender = "AWS.SNS.SMS.SenderID"
    acme = a.request(_message(Channel.SMS, "+14155550101", "acme"), content)
    other = a.request(_message(Channel.SMS, "+14155550101", "globex"), content)
    assert acme["MessageAttributes"][sender]["StringValue"] == "ACME"
    assert other["MessageAttributes"][sender]["StringValue"] == "Herald"
