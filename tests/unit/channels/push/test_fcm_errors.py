"""The FCM v1 error table, Retry-After, and the adapter's handling of each answer (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import httpx
import pytest

from channels.base import Content, Failure, Outcome
from channels.push.devices_pg import DeviceToken
from channels.push.fcm import FcmAdapter
from channels.push.fcm_message import FcmError, classify, parse_error
from schemas.models import Channel, ChannelMessage, Lane, Tier

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FCM = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD = "type.googleapis.com/google.rpc.BadRequest"


def body(http: int, status: str | None, code: str | None = None, token_violation: bool = False) -> bytes:
    details: list[dict[str, object]] = []
    if code:
        details.append({"@type": FCM, "errorCode": code})
    if token_violation:
        details.append({"@type": BAD, "fieldViolations": [{"field": "message.token", "description": "bad"}]})
    return json.dumps(
        {"error": {"code": http, "message": "m", "status": status, "details": details}}
    ).encode()


@pytest.mark.parametrize(
    ("http", "status", "code", "token_violation", "expected"),
    [
        (404, "NOT_FOUND", "UNREGISTERED", False, Failure.permanent("unregistered", gone=True)),
        (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", True, Failure.permanent("invalid_token", gone=True)),
        (400, "INVALID_ARGUMENT", None, True, Failure.permanent("invalid_token", gone=True)),
        (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", False, Failure.permanent("invalid_argument")),
        (400, None, None, False, Failure.permanent("invalid_argument")),
        (
            403,
            "PERMISSION_DENIED",
            "SENDER_ID_MISMATCH",
            False,
            Failure.permanent("sender_id_mismatch"),
        ),
        (403, "PERMISSION_DENIED", None, False, Failure.retry("provider_auth")),  # our service account
        (403, None, None, False, Failure.retry("provider_auth")),
        (404, "NOT_FOUND", None, False, Failure.retry("provider_config")),  # the project, not the token
        (404, None, None, False, Failure.retry("provider_config")),
        (
            401,
            "UNAUTHENTICATED",
            "THIRD_PARTY_AUTH_ERROR",
            False,
            Failure.retry("provider_config"),  # our APNs / web push key, or one device's: retried
        ),
        (401, "UNAUTHENTICATED", None, False, Failure.retry("unauthenticated", reauth=True)),
        (401, None, None, False, Failure.retry("unauthenticated", reauth=True)),
        (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", False, Failure.retry("quota_exceeded")),
        (429, None, None, False, Failure.retry("http_429")),
        (503, "UNAVAILABLE", "UNAVAILABLE", False, Failure.retry("unavailable")),
        (500, "INTERNAL", "INTERNAL", False, Failure.retry("internal")),
        (502, None, None, False, Failure.retry("http_502")),
        (418, "SOMETHING_NEW", "BRAND_NEW_CODE", False, Failure.retry("http_418")),
    ],
)
def test_error_table(
    http: int, status: str | None, code: str | None, token_violation: bool, expected: Failure
) -> None:
    parsed = parse_error(http, body(http, status, code, token_violation))
    assert parsed.error_code == code and parsed.status == status and parsed.token_invalid == token_violation
    assert classify(parsed) == expected


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'{"error": "x"}', b'{"error": {"details": 3}}'])
def test_unparseable_errors_fall_back_to_http_status(raw: bytes) -> None:
    parsed = parse_error(503, raw)
    assert parsed.error_code is None
    assert classify(parsed).retryable
    assert FcmError(503).code == "503"


# -- the adapter against scripted answers -------------------------------------------------------


class Devices:
    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens_ = list(tokens)
        self.deleted: list[str] = []

    async def tokens(self, user_id: str, tenant: str = "") -> list[DeviceToken]:
        return [DeviceToken(t, "android") for t in self.tokens_]

    async def delete(self, user_id: str, tokens: Sequence[str], tenant: str = "") -> int:
        gone = [t for t in self.tokens_ if t in tokens]
        self.tokens_ = [t for t in self.tokens_ if t not in tokens]
        self.deleted += gone
        return len(gone)


class StaticTokens:
    def __init__(self) -> None:
        self.issued = 0
        self.invalidated: list[str] = []

    async def token(self) -> str:
        self.issued += 1
        return f"tok-{len(self.invalidated)}"

    async def invalidate(self, token: str) -> None:
        self.invalidated.append(token)


def message() -> ChannelMessage:
    return ChannelMessage(
        notification_id="n-1",
        event_id="e-1",
        event_type="login_code",
        user_id="u-1",
        channel=Channel.PUSH,
        lane=Lane.PRIORITY,
        tier=Tier.HIGH,
        category="auth",
        recipient="u-1",
        template="login_code",
        locale="en",
        idempotency_key="msg_k",
        occurred_at=NOW,
        payload='{"code": "123456"}',
    )


async def deliver(
    handler: Callable[[httpx.Request], httpx.Response], tokens: Sequence[str] = ("a",)
) -> tuple[Outcome, Devices, StaticTokens]:
    devices, auth = Devices(tokens), StaticTokens()
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://fcm.test")
    adapter = FcmAdapter(client=client, auth=auth, devices=devices, project_id="p", clock=lambda: NOW)
    try:
        outcome = await adapter.deliver(
            message(), Content(title="Code", text="123456"), idempotency_key="msg_k"
        )
    finally:
        await adapter.close()
    return outcome, devices, auth


def answer(
    http: int,
    status: str | None,
    code: str | None = None,
    *,
    retry_after: str | None = None,
    token_violation: bool = False,
) -> Callable[[httpx.Request], httpx.Response]:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return lambda _: httpx.Response(http, content=body(http, status, code, token_violation), headers=headers)


@pytest.mark.parametrize(
    ("handler", "status", "reason", "code", "retry_after", "deleted"),
    [
        (
            answer(404, "NOT_FOUND", "UNREGISTERED"),
            "failed_permanent",
            "unregistered",
            "UNREGISTERED",
            None,
            1,
        ),
        (
            answer(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", token_violation=True),
            "failed_permanent",
            "invalid_token",
            "INVALID_ARGUMENT",
            None,
            1,
        ),
        (
            answer(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
            "failed_permanent",
            "invalid_argument",
            "INVALID_ARGUMENT",
            None,
            0,
        ),
        (
            answer(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"),
            "failed_permanent",
            "sender_id_mismatch",
            "SENDER_ID_MISMATCH",
            None,
            0,
        ),
        (
            answer(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"),
            "failed_retryable",
            "provider_config",
            "THIRD_PARTY_AUTH_ERROR",
            None,
            0,
        ),
        (
            answer(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", retry_after="42"),
            "failed_retryable",
            "quota_exceeded",
            "QUOTA_EXCEEDED",
            42.0,
            0,
        ),
        (
            answer(503, "UNAVAILABLE", "UNAVAILABLE", retry_after="5"),
            "failed_retryable",
            "unavailable",
            "UNAVAILABLE",
            5.0,
            0,
        ),
        (answer(500, "INTERNAL", "INTERNAL"), "failed_retryable", "internal", "INTERNAL", None, 0),
    ],
)
async def test_adapter_classifies_each_answer(  # noqa: PLR0917 - a parametrized table row
    handler: Callable[[httpx.Request], httpx.Response],
    status: str,
    reason: str,
    code: str,
    retry_after: float | None,
    deleted: int,
) -> None:
    outcome, devices, _ = await deliver(handler)
    assert (outcome.status, outcome.reason, outcome.provider_code, outcome.retry_after) == (
        status,
        reason,
        code,
        retry_after,
    )
    assert len(devices.deleted) == deleted
    if deleted:
        assert "1 dead token deleted" in (outcome.detail or "")


async def test_401_refreshes_once_and_resends() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] == "Bearer tok-0":
            return httpx.Response(401, content=body(401, "UNAUTHENTICATED"))
        return httpx.Response(200, json={"name": "projects/p/messages/1"})

    outcome, _, auth = await deliver(handler)
    assert outcome.status == "sent" and outcome.provider_message_id == "projects/p/messages/1"
    assert seen == ["Bearer tok-0", "Bearer tok-1"] and auth.invalidated == ["tok-0"]


async def test_a_third_party_auth_error_neither_refreshes_nor_deletes_the_token() -> None:
    # A 401 about our APNs / web push credentials on the Firebase project: our own access token
    # was accepted, so refreshing it would change nothing, and the device token is not at fault.
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(401, content=body(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"))

    outcome, devices, auth = await deliver(handler)
    assert (outcome.status, outcome.reason) == ("failed_retryable", "provider_config")
    assert seen == ["Bearer tok-0"] and auth.invalidated == [] and devices.deleted == []


async def test_401_twice_is_retryable_not_a_loop() -> None:
    calls: list[int] = []

    def handler(_: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(401, content=body(401, "UNAUTHENTICATED"))

    outcome, _, _ = await deliver(handler)
    assert outcome.status == "failed_retryable" and outcome.reason == "unauthenticated"
    assert len(calls) == 2


async def test_network_error_and_timeout_are_retryable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("reset mid-response", request=request)

    # Refused before the request went out: nothing sent. A timeout or a broken answer afterwards:
    # FCM may have taken it (ambiguous, judged by the channel consumer like a crash).
    assert (await deliver(refuse))[0].reason == "provider_unavailable"
    assert (await deliver(slow))[0].reason == "provider_timeout"
    assert (await deliver(broken))[0].reason == "provider_timeout"
    assert (await deliver(slow))[0].ambiguous and not (await deliver(refuse))[0].ambiguous


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ProxyError, "provider_unavailable"),  # the tunnel was refused: nothing sent
        (httpx.UnsupportedProtocol, "provider_unavailable"),
        (httpx.PoolTimeout, "provider_unavailable"),
        (httpx.WriteError, "provider_timeout"),  # HTTP/2 shares the socket: maybe all written
        (httpx.WriteTimeout, "provider_timeout"),
        (httpx.LocalProtocolError, "provider_timeout"),
        (httpx.ReadError, "provider_timeout"),
    ],
)
async def test_transport_errors_before_and_after_the_request_left(
    error: type[httpx.TransportError], reason: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error("fault", request=request)

    assert (await deliver(fail))[0].reason == reason


async def test_one_message_per_token_and_mixed_results() -> None:
    sent_to: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        token = json.loads(request.content)["message"]["token"]
        sent_to.append(token)
        if token == "dead":
            return httpx.Response(404, content=body(404, "NOT_FOUND", "UNREGISTERED"))
        if token == "busy":
            return httpx.Response(503, content=body(503, "UNAVAILABLE", "UNAVAILABLE"))
        return httpx.Response(200, json={"name": f"m/{token}"})

    outcome, devices, _ = await deliver(handler, ["ok", "dead", "busy"])
    assert sorted(sent_to) == ["busy", "dead", "ok"]
    assert outcome.status == "sent" and outcome.provider_message_id == "m/ok"
    assert devices.deleted == ["dead"]
    assert outcome.detail is not None and "1/3 devices accepted" in outcome.detail

    outcome, devices, _ = await deliver(handler, ["dead", "busy"])
    assert outcome.status == "failed_retryable" and outcome.reason == "unavailable"
    assert devices.deleted == ["dead"]


async def test_no_tokens_is_no_device_without_calling_fcm() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        raise AssertionError("FCM must not be called")

    outcome, _, auth = await deliver(handler, [])
    assert outcome.status == "failed_permanent" and outcome.reason == "no_device"
    assert auth.issued == 0
