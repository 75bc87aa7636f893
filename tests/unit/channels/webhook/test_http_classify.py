"""The webhook classification tables, Retry-After parsing and the JSON envelope."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpcore
import httpx
import pytest

from channels.templates import TemplateError
from channels.webhook.http import classify_error, classify_response, render_body
from channels.webhook.ssrf import BlockedDestination
from schemas.models import Channel, ChannelMessage, Lane, Tier

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (200, {}, ("sent", None, None, False)),
        (201, {}, ("sent", None, None, False)),
        (204, {}, ("sent", None, None, False)),
        (299, {}, ("sent", None, None, False)),
        (200, {"webhook-delivery": "abort-message"}, ("sent", None, None, False)),  # success is success
        (410, {}, ("failed_permanent", "endpoint_gone", None, True)),
        (408, {}, ("failed_retryable", "http_408", None, False)),
        (429, {}, ("failed_retryable", "http_429", None, False)),
        (429, {"Retry-After": "30"}, ("failed_retryable", "http_429", 30.0, False)),
        (503, {"retry-after": "120"}, ("failed_retryable", "http_503", 120.0, False)),
        (500, {}, ("failed_retryable", "http_500", None, False)),
        (502, {}, ("failed_retryable", "http_502", None, False)),
        (599, {}, ("failed_retryable", "http_599", None, False)),
        (500, {"webhook-delivery": "abort-message"}, ("failed_permanent", "receiver_aborted", None, False)),
        (429, {"Webhook-Delivery": "Abort-Message"}, ("failed_permanent", "receiver_aborted", None, False)),
        (410, {"webhook-delivery": "abort-message"}, ("failed_permanent", "receiver_aborted", None, False)),
        (400, {}, ("failed_permanent", "http_400", None, False)),
        (401, {}, ("failed_permanent", "http_401", None, False)),
        (403, {}, ("failed_permanent", "http_403", None, False)),
        (404, {}, ("failed_permanent", "http_404", None, False)),
        (413, {}, ("failed_permanent", "http_413", None, False)),
        (422, {"retry-after": "5"}, ("failed_permanent", "http_422", None, False)),
        (301, {"location": "https://elsewhere"}, ("failed_permanent", "redirect", None, False)),
        (302, {}, ("failed_permanent", "redirect", None, False)),
        (307, {}, ("failed_permanent", "redirect", None, False)),
        (308, {}, ("failed_permanent", "redirect", None, False)),
        (304, {}, ("failed_permanent", "redirect", None, False)),
        (100, {}, ("failed_retryable", "unexpected_status", None, False)),
        (600, {}, ("failed_retryable", "unexpected_status", None, False)),
    ],
)
def test_response_table(
    status: int, headers: dict[str, str], expected: tuple[str, str | None, float | None, bool]
) -> None:
    f = classify_response(status, httpx.Headers(headers), now=NOW)
    got = ("sent", None, None, False) if f is None else (f.kind.value, f.reason, f.retry_after, f.gone)
    assert got == expected


@pytest.mark.parametrize(
    ("exc", "status", "reason"),
    [
        (httpx.ConnectTimeout("t"), "failed_retryable", "timeout"),
        (httpx.ReadTimeout("t"), "failed_retryable", "timeout"),
        (httpx.WriteTimeout("t"), "failed_retryable", "timeout"),
        (httpx.PoolTimeout("t"), "failed_retryable", "timeout"),
        (TimeoutError(), "failed_retryable", "timeout"),
        (httpx.ConnectError("refused"), "failed_retryable", "connection_error"),
        (httpx.ReadError("reset"), "failed_retryable", "connection_error"),
        (httpx.WriteError("broken pipe"), "failed_retryable", "connection_error"),
        (httpx.RemoteProtocolError("server disconnected"), "failed_retryable", "connection_error"),
        (httpx.UnsupportedProtocol("ftp"), "failed_permanent", "invalid_url"),
        (BlockedDestination("loopback", "x is 127.0.0.1"), "failed_permanent", "blocked_destination"),
        (BlockedDestination("https_only", "http"), "failed_permanent", "blocked_destination"),
    ],
)
def test_error_table(exc: BaseException, status: str, reason: str) -> None:
    _, f = classify_error(exc)
    assert (f.kind.value, f.reason, f.gone, f.reauth) == (status, reason, False, False)


def test_provider_codes_of_attempts_without_a_response() -> None:
    assert classify_error(BlockedDestination("metadata", "x"))[0] == "metadata"
    assert classify_error(httpx.ReadTimeout("t"))[0] == "timeout"
    assert classify_error(httpx.InvalidURL("x"))[0] == "invalid_url"
    assert classify_error(httpx.ConnectError("refused"))[0] == "ConnectError"


def test_unknown_exceptions_are_not_swallowed() -> None:
    with pytest.raises(TypeError):
        classify_error(KeyError("bug"))
    with pytest.raises(TypeError):
        classify_error(httpcore.ConnectError("raw httpcore must have been mapped by httpx"))


def _message(payload: str) -> ChannelMessage:
    return ChannelMessage(
        notification_id="n1",
        event_id="e1",
        event_type="system.invoice_paid",
        user_id="acct1",
        channel=Channel.WEBHOOK,
        lane=Lane.PRIORITY,
        tier=Tier.SYSTEM,
        category="system",
        recipient="ep_1",
        template="",
        locale="en",
        idempotency_key="msg_1",
        occurred_at=NOW,
        payload=payload,
    )


def test_envelope() -> None:
    body = render_body(_message('{"amount": 12.5, "who": "Zoë"}'))
    assert json.loads(body) == {
        "type": "system.invoice_paid",
        "timestamp": "2026-11-25T12:00:00Z",
        "data": {"amount": 12.5, "who": "Zoë"},
        "event_id": "e1",
        "notification_id": "n1",
    }
    assert "Zoë".encode() in body and b" " not in body.replace(b"Zo\xc3\xab", b"")  # compact UTF-8


@pytest.mark.parametrize("payload", ["[1, 2]", "not json", '"s"'])
def test_envelope_refuses_non_object_payloads(payload: str) -> None:
    with pytest.raises(TemplateError):
        render_body(_message(payload))
