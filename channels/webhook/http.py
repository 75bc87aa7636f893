"""System-to-system webhooks: signed JSON POSTs to subscriber endpoints.

One attempt per :meth:`WebhookAdapter.deliver`; retries are the fallback consumer's
scheduler rows (``consumers/scheduler/retries.py``), never a sleep here. The request carries the
Standard Webhooks headers: ``webhook-id`` = the message's idempotency key (identical on every
retry and replay, so receivers dedupe on it), ``webhook-timestamp`` (unix seconds of this
attempt) and ``webhook-signature`` (one ``v1,`` signature per active secret).

The HTTP client is one pooled ``httpx.AsyncClient`` over :class:`~channels.webhook.ssrf.GuardedTransport`
(resolve once, refuse private/metadata/... addresses, connect to the checked IP). Redirects
are not followed; at most ``max_response_bytes`` of a response are read; the whole attempt is
bounded by ``total_timeout_s``.

Classification (:func:`classify_response`, :func:`classify_error`; pure tables of
:class:`~channels.base.Failure`):

=================================================  ==========================================
2xx                                                sent
``webhook-delivery: abort-message`` (non-2xx)      permanent (the receiver says stop)
410 Gone                                           permanent, endpoint disabled
408, 429, 5xx                                      retryable, honouring ``Retry-After``
other 4xx, 3xx (redirects are not followed)        permanent
anything else (1xx, >599)                          retryable (unknown: retry, logged)
timeouts, connection errors, DNS failure           retryable
SSRF refusal, bad URL, https-only                  permanent
=================================================  ==========================================
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from channels.base import Content, Failure, Outcome
from channels.retry_after import parse_retry_after
from channels.storage_errors import PG_CALL_ERRORS, classify_pg_error
from channels.templates import TemplateError
from channels.webhook.endpoints_pg import Endpoint, EndpointStore
from channels.webhook.signing import signing_headers
from channels.webhook.ssrf import (
    AddressPolicy,
    BlockedDestination,
    GuardedTransport,
    Resolver,
    system_resolver,
)
from channels.webhook.webhook_settings import WebhookSettings
from schemas.codec import Codec, default_codec
from schemas.errors import InvalidContent
from schemas.models import Channel, ChannelMessage

__all__ = [
    "PROVIDER",
    "WebhookAdapter",
    "WebhookSettings",
    "classify_error",
    "classify_response",
    "render_body",
]

log = logging.getLogger(__name__)
PROVIDER = "http"


def classify_response(status: int, headers: Mapping[str, str], *, now: datetime) -> Failure | None:
    """What an HTTP response means (``None``: delivered). The provider code is the status.
    ``headers``: a case-insensitive mapping such as httpx.Headers."""
    if 200 <= status < 300:
        return None
    if headers.get("webhook-delivery", "").strip().lower() == "abort-message":
        return Failure.permanent("receiver_aborted")
    if status == 410:
        return Failure.permanent("endpoint_gone", gone=True)
    if status in (408, 429) or 500 <= status < 600:
        retry_after = parse_retry_after(headers.get("retry-after"), now)
        return Failure.retry(f"http_{status}").with_retry_after(retry_after)
    if 300 <= status < 400:
        return Failure.permanent("redirect")
    if 400 <= status < 500:
        return Failure.permanent(f"http_{status}")
    return Failure.retry("unexpected_status")


def classify_error(exc: BaseException) -> tuple[str, Failure]:
    """(provider code, what it means) for an attempt that got no response."""
    if isinstance(exc, BlockedDestination):
        return exc.reason, Failure.permanent("blocked_destination")
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout", Failure.retry("timeout")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "invalid_url", Failure.permanent("invalid_url")
    if isinstance(exc, httpx.TransportError):  # connect/read/write errors, protocol errors, TLS
        return type(exc).__name__, Failure.retry("connection_error")
    raise TypeError(f"not a delivery error: {exc!r}") from exc


def render_body(message: ChannelMessage) -> bytes:
    """The JSON envelope: ``type``, ``timestamp`` (event time, RFC 3339), ``data`` (the event payload),
    and Herald's ids. Compact and UTF-8, signed and sent as these exact bytes."""
    try:
        data = message.data()
    except ValueError as exc:
        raise TemplateError(f"webhook payload is not a JSON object: {exc}") from exc
    envelope = {
        "type": message.event_type,
        "timestamp": message.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
        "event_id": message.event_id,
        "notification_id": message.notification_id,
    }
    text = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate in the payload: no receiver can parse it
        raise InvalidContent(f"webhook body: lone surrogate at position {exc.start}") from exc


_DISABLED = Failure.permanent("endpoint_disabled")


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One POST: the provider code (HTTP status, or what stopped it), ``failure`` None if delivered."""

    code: str
    failure: Failure | None
    detail: str | None


class WebhookAdapter:
    channel = Channel.WEBHOOK
    provider = PROVIDER

    def __init__(
        self,
        endpoints: EndpointStore,
        config: WebhookSettings,
        *,
        resolver: Resolver = system_resolver,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        codec: Codec | None = None,
        on_disabled: Callable[[str], None] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.config = config
        self.clock = clock
        self.codec = codec or default_codec()
        self.on_disabled = on_disabled  # metrics hook: called with the reason ("failing", "gone")
        policy = AddressPolicy.from_strings(config.allow_hosts, https_only=config.https_only)
        limits = httpx.Limits(
            max_connections=config.max_connections_per_endpoint,
            max_keepalive_connections=config.max_connections_per_endpoint,
        )
        self.transport = GuardedTransport(
            policy, resolver=resolver, limits=limits, max_pools=config.max_pooled_endpoints
        )
        self.client = httpx.AsyncClient(
            transport=self.transport,
            timeout=httpx.Timeout(config.total_timeout_s, connect=config.connect_timeout_s),
            follow_redirects=False,
            trust_env=False,
        )
        self._cache: dict[str, tuple[float, Endpoint | None]] = {}

    def render(self, message: ChannelMessage) -> Content:
        return Content(body=render_body(message), headers={"content-type": "application/json"})

    async def _endpoint(self, endpoint_id: str) -> Endpoint | None:
        hit = self._cache.get(endpoint_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.config.endpoint_cache_ttl_s:
            return hit[1]
        endpoint = await self.endpoints.get(endpoint_id)
        self._cache[endpoint_id] = (now, endpoint)
        return endpoint

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        try:
            endpoint = await self._endpoint(message.recipient)
        except PG_CALL_ERRORS as exc:
            why = f"endpoint lookup: {type(exc).__name__}: {exc}"[:500]
            if classify_pg_error(exc) == "record":  # an endpoint id PostgreSQL cannot even compare
                return Outcome("failed_permanent", PROVIDER, reason="no_endpoint", detail=why)
            return Outcome("failed_retryable", PROVIDER, reason="database_unavailable", detail=why)
        if endpoint is None:
            return Outcome(
                "failed_permanent",
                PROVIDER,
                reason="no_endpoint",
                detail=f"webhook endpoint {message.recipient} does not exist",
            )
        now = self.clock()
        if endpoint.disabled:
            await self.endpoints.keep_pending(
                endpoint.endpoint_id,
                idempotency_key=idempotency_key,
                event_type=message.event_type,
                message=self.codec.encode(message),
                reason="endpoint_disabled",
                now=now,
            )
            return Outcome(
                "failed_permanent",
                PROVIDER,
                reason="endpoint_disabled",
                detail=f"endpoint disabled ({endpoint.disabled_reason}); kept for replay",
            )
        if not endpoint.accepts(message.event_type):
            return Outcome(
                "failed_permanent",
                PROVIDER,
                reason="event_filtered",
                detail=f"endpoint does not subscribe to {message.event_type}",
            )
        body = content.body if content.body is not None else render_body(message)
        if len(body) > self.config.max_body_bytes:
            return Outcome(
                "failed_permanent",
                PROVIDER,
                reason="payload_too_large",
                detail=f"{len(body)} bytes > {self.config.max_body_bytes}",
            )
        headers = {
            "content-type": "application/json",
            "user-agent": self.config.user_agent,
            **signing_headers(endpoint.active_secrets(now), idempotency_key, int(now.timestamp()), body),
        }
        attempt = await self._post(endpoint.url, body, headers)
        return await self._record(endpoint, message, idempotency_key, attempt)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> _Attempt:
        try:
            async with asyncio.timeout(self.config.total_timeout_s):
                async with self.client.stream("POST", url, content=body, headers=headers) as response:
                    head = await self._read_capped(response)
                    failure = classify_response(response.status_code, response.headers, now=self.clock())
                    return _Attempt(
                        str(response.status_code), failure, head.decode("utf-8", "replace") or None
                    )
        except (httpx.HTTPError, httpx.InvalidURL, BlockedDestination, TimeoutError) as exc:
            # InvalidURL is not an HTTPError: without it, a URL httpx cannot parse was an internal_error
            code, failure = classify_error(exc)
            if failure.retryable:
                log.debug("webhook %s: %s", url, exc)
            return _Attempt(code, failure, f"{type(exc).__name__}: {exc}"[:500])

    async def _read_capped(self, response: httpx.Response) -> bytes:
        cap = self.config.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():  # raw: a gzip bomb is never inflated
            chunks.append(chunk)
            size += len(chunk)
            if size >= cap:
                break  # closing the stream drops the connection instead of draining a huge body
        return b"".join(chunks)[:cap]

    async def _record(
        self, endpoint: Endpoint, message: ChannelMessage, key: str, attempt: _Attempt
    ) -> Outcome:
        # The POST has happened: a database hiccup while recording it must not turn a delivered
        # message into a retry (statistics are best effort; the outcome is what counts).
        now = self.clock()
        failure = attempt.failure
        try:
            if failure is None:
                await self.endpoints.record_success(endpoint.endpoint_id, key, now=now)
                return Outcome.sent(PROVIDER, key, detail=None)
            disabled = await self.endpoints.record_failure(
                endpoint.endpoint_id,
                idempotency_key=key,
                event_type=message.event_type,
                message=self.codec.encode(message),
                reason=failure.reason or attempt.code,
                now=now,
                disable_after_s=self.config.disable_after_s,
                disable_reason="gone" if failure.gone else None,
            )
        except PG_CALL_ERRORS as exc:
            log.warning("webhook endpoint %s: statistics not recorded (%s)", endpoint.endpoint_id, exc)
            if failure is None:
                return Outcome.sent(PROVIDER, key, detail=None)
            disabled = False
        if disabled:
            self._cache.pop(endpoint.endpoint_id, None)
            reason = "gone" if failure.gone else "failing"
            log.warning("webhook endpoint %s disabled (%s)", endpoint.endpoint_id, reason)
            if self.on_disabled is not None:
                self.on_disabled(reason)
            if not failure.gone:  # failed too long: stop retrying, the message waits for replay
                return _DISABLED.outcome(
                    PROVIDER, attempt.code, "endpoint disabled after failing continuously; kept for replay"
                )
        return failure.outcome(PROVIDER, attempt.code, attempt.detail[:500] if attempt.detail else None)

    async def close(self) -> None:
        await self.client.aclose()
