"""Sender identity per tenant: the email From of the message's tenant."""

from __future__ import annotations

from datetime import UTC, datetime

from channels.base import Content
from channels.email.ses import SesEmailAdapter
from channels.pacing import TokenBucket
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


def test_email_from_is_the_tenants() -> None:
    a = SesEmailAdapter(
        None,
        from_address="Herald <noreply@example.com>",
        bucket=TokenBucket(10),
        tenant_from={"acme": "Acme <hi@acme.example>"},
    )
    content = Content(subject="s", text="t")
    acme = a.request(_message(Channel.EMAIL, "x@example.com", "acme"), content, idempotency_key="k")
    other = a.request(_message(Channel.EMAIL, "x@example.com", "globex"), content, idempotency_key="k")
    none = a.request(_message(Channel.EMAIL, "x@example.com", None), content, idempotency_key="k")
    assert acme["FromEmailAddress"] == "Acme <hi@acme.example>"
    assert other["FromEmailAddress"] == none["FromEmailAddress"] == "Herald <noreply@example.com>"
