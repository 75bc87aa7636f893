"""SES pure parts: the error table, RFC 8058 headers, the MIME message, request building."""

from __future__ import annotations

import email
import email.policy
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from channels.base import Content, FailureKind, PermanentDelivery
from channels.email.mime import build_mime, unsubscribe_headers
from channels.email.ses import SesEmailAdapter, classify
from channels.email.ses_events import encode_tag
from channels.pacing import TokenBucket
from schemas.models import Channel, ChannelMessage, Lane, Tier

PERMANENT, RETRYABLE = FailureKind.PERMANENT, FailureKind.RETRYABLE


@pytest.mark.parametrize(
    ("code", "status", "verdict"),
    [
        ("MessageRejected", 400, PERMANENT),
        ("MailFromDomainNotVerifiedException", 400, RETRYABLE),  # our configuration: see below
        ("AccountSuspendedException", 400, RETRYABLE),
        ("SendingPausedException", 400, RETRYABLE),
        ("NotFoundException", 404, RETRYABLE),
        ("AccessDeniedException", 403, RETRYABLE),
        ("UnrecognizedClientException", 403, RETRYABLE),  # refused credentials, any AWS service
        ("BadRequestException", 400, PERMANENT),
        ("TooManyRequestsException", 429, RETRYABLE),
        ("Throttling", 400, RETRYABLE),  # "Maximum sending rate exceeded"
        ("LimitExceededException", 400, RETRYABLE),
        ("ServiceUnavailable", 503, RETRYABLE),
        ("InternalFailure", 500, RETRYABLE),
        ("SomethingNew", 500, RETRYABLE),  # unknown 5xx: retry
        ("SomethingNew", None, RETRYABLE),  # no status (connection level): retry
        ("SomethingNew", 429, RETRYABLE),
        ("SomethingNew", 408, RETRYABLE),
        ("SomethingNew", 403, PERMANENT),  # unknown 4xx: the request itself is wrong
    ],
)
def test_error_table(code: str, status: int | None, verdict: FailureKind) -> None:
    assert classify(code, status).kind == verdict


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("SendingPausedException", "provider_config"),
        ("AccountSuspendedException", "provider_config"),
        ("MailFromDomainNotVerifiedException", "provider_config"),
        ("NotFoundException", "provider_config"),  # the configuration set does not exist
        ("AccessDeniedException", "provider_auth"),
        ("InvalidClientTokenId", "provider_auth"),
        ("SignatureDoesNotMatch", "provider_auth"),
    ],
)
def test_account_and_configuration_errors_retry_so_the_breaker_opens(code: str, reason: str) -> None:
    # Every message fails alike: a permanent verdict would lose them all while SMTP is healthy.
    assert classify(code, 403).outcome("ses", code).reason == reason
    assert classify(code, 403).retryable


@pytest.mark.parametrize(
    "code", ["MailFromDomainNotVerifiedException", "AccessDeniedException", "AccessDenied"]
)
def test_a_tenant_senders_identity_errors_are_that_tenants_not_the_breakers(code: str) -> None:
    # One tenant's unverified domain must not open the `ses` breaker for every tenant.
    failure = classify(code, 400, tenant_sender=True)
    # Retried and failed over, but the failover chain keeps it from the breaker (breaker_result).
    assert failure.retryable and failure.outcome("ses", code).reason == "tenant_sender_config"
    assert classify(code, 400).retryable  # Herald's own sender: our configuration, fail over
    for shared in ("SendingPausedException", "InvalidClientTokenId", "TooManyRequestsException"):
        assert classify(shared, 400, tenant_sender=True) == classify(shared, 400)


def test_unsubscribe_headers_one_click_and_mailto() -> None:
    h = unsubscribe_headers(
        "https://x.com/u?u={user_id}&c={category}", "unsub@x.com", user_id="a b&c", category="marketing"
    )
    assert h == {
        "List-Unsubscribe": "<https://x.com/u?u=a%20b%26c&c=marketing>, <mailto:unsub@x.com>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    # mailto alone cannot be one-click (RFC 8058 needs an HTTPS URI to POST to)
    assert unsubscribe_headers(None, "mailto:u@x.com", user_id="u", category="c") == {
        "List-Unsubscribe": "<mailto:u@x.com>"
    }
    assert unsubscribe_headers(None, None, user_id="u", category="c") == {}


def test_mime_has_text_then_html_and_encoded_subject() -> None:
    raw = build_mime(
        from_address="Herald <noreply@example.com>",
        to="a@b.org",
        subject="Olá ✓",
        text="só texto",
        html="<p>só html</p>",
        headers={"X-Test": "1"},
    )
    assert raw.isascii()  # 7-bit clean on the wire
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "Olá ✓" and msg["To"] == "a@b.org" and msg["X-Test"] == "1"
    assert msg["Message-ID"].endswith("@example.com>")
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg.get_body(("plain",)).get_content().strip() == "só texto"  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["Bad Header", "X:Y", ""])
def test_mime_rejects_bad_header_names(name: str) -> None:
    with pytest.raises(ValueError):
        build_mime(from_address="a@b.c", to="d@e.f", subject="s", text="t", html=None, headers={name: "v"})


def test_mime_rejects_header_injection() -> None:
    with pytest.raises(ValueError):
        build_mime(
            from_address="a@b.c",
            to="d@e.f",
            subject="s",
            text="t",
            html=None,
            headers={"X-A": "v\r\nBcc: x@y.z"},
        )


def _message(recipient: str = "a@b.org", lane: Lane = Lane.PRIORITY) -> ChannelMessage:
    return ChannelMessage(
        notification_id="n",
        event_id=str(uuid.uuid4()),
        event_type="marketing.spring",
        user_id="u-1",
        channel=Channel.EMAIL,
        lane=lane,
        tier=Tier.LOW,
        category="market ing",
        recipient=recipient,
        template="marketing",
        locale="en",
        idempotency_key="msg_1",
        occurred_at=datetime.now(UTC),
    )


def _adapter(**kw: Any) -> SesEmailAdapter:
    return SesEmailAdapter(
        None,
        from_address="noreply@example.com",
        bucket=TokenBucket(1),
        unsubscribe_url="https://x/u?u={user_id}",
        **kw,
    )


CONTENT = Content(subject="S", text="T", html="<p>H</p>")


def test_request_carries_configuration_set_tags_and_bulk_headers() -> None:
    params = _adapter(configuration_set="herald").request(
        _message(lane=Lane.BULK), CONTENT, idempotency_key="msg_1"
    )
    assert params["ConfigurationSetName"] == "herald"
    message = _message(lane=Lane.BULK)
    assert params["EmailTags"] == [
        {"Name": "herald_key", "Value": "msg_1"},
        {"Name": "herald_category", "Value": "market_ing"},
        {"Name": "herald_notification", "Value": encode_tag(message.notification_id)},
        {"Name": "herald_user", "Value": encode_tag("u-1")},
    ]
    tag_alphabet = re.compile(r"^[A-Za-z0-9_.@-]{1,256}$")  # what SES accepts in a tag value
    assert all(tag_alphabet.match(t["Value"]) for t in params["EmailTags"])
    raw = email.message_from_bytes(params["Content"]["Raw"]["Data"], policy=email.policy.default)
    assert raw["List-Unsubscribe"] == "<https://x/u?u=u-1>"
    assert raw["X-Herald-Idempotency-Key"] == "msg_1"
    priority = _adapter().request(_message(), CONTENT, idempotency_key="msg_1")
    assert "ConfigurationSetName" not in priority
    assert b"List-Unsubscribe" not in priority["Content"]["Raw"]["Data"]


@pytest.mark.parametrize("recipient", ["", "nobody", "a@b@c", "a@b.org\r\nBcc: x@y.z", "@b.org"])
def test_invalid_recipients_are_permanent(recipient: str) -> None:
    with pytest.raises(PermanentDelivery) as info:
        _adapter().request(_message(recipient), CONTENT, idempotency_key="k")
    assert info.value.reason == "invalid_address"


def test_empty_content_is_permanent() -> None:
    with pytest.raises(PermanentDelivery):
        _adapter().request(_message(), Content(subject="", text="x"), idempotency_key="k")
