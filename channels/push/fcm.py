"""Push over FCM HTTP v1: one message per device token of the user, on one shared HTTP/2 client.

Per token: build (tier decides urgency), fit into 4 KB, send with a cached OAuth2 token.
A 401 that is not THIRD_PARTY_AUTH_ERROR refreshes the token once and resends. Dead tokens
(UNREGISTERED, an INVALID_ARGUMENT on ``message.token``) are deleted from PostgreSQL and the
outcome's ``detail`` says how many.

One outcome per user, from the per-token results (documented decision):

* any device accepted → ``sent`` (the other tokens' failures are in ``detail``; a retry would
  re-send to the devices that already have it);
* else any retryable failure → ``failed_retryable`` with the longest ``Retry-After``;
* else → ``failed_permanent`` with the first token's code and reason;
* no tokens at all → ``failed_permanent`` reason ``no_device`` without calling FCM.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from channels.base import Content, Failure, Outcome
from channels.http_refusals import REFUSED_BEFORE_SENDING
from channels.push.devices_pg import DeviceStore
from channels.push.fcm_auth import CredentialsError, TokenSource
from channels.push.fcm_message import (
    FCM_LIMIT_BYTES,
    PayloadTooLarge,
    build_message,
    classify,
    fit_message,
    parse_error,
)
from channels.retry_after import parse_retry_after
from channels.storage_errors import PG_CALL_ERRORS, classify_pg_error
from schemas.models import Channel, ChannelMessage

__all__ = ["FcmAdapter", "make_client"]

log = logging.getLogger(__name__)
PROVIDER = "fcm"
_AUTH_FAILED = Failure.retry("auth_failed")  # Google's token endpoint: nothing was sent to FCM
# No connection (refused, TLS, connect or pool timeout): the request never left, a plain refusal.
_UNAVAILABLE = Failure.retry("provider_unavailable")
# No answer once the request went out: FCM may have acted (ambiguous, see channels.base).
_TIMEOUT = Failure.retry("provider_timeout")


def make_client(base_url: str, *, timeout_s: float = 10.0, max_connections: int = 100) -> httpx.AsyncClient:
    """The one client per process: HTTP/2 multiplexes every send over few connections."""
    return httpx.AsyncClient(
        base_url=base_url,
        http2=True,
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )


@dataclass(frozen=True, slots=True)
class _TokenResult:
    token: str
    outcome: Outcome
    drop_token: bool = False


def _summarise(results: Sequence[_TokenResult], deleted: int, truncated: bool, *, kept: int = 0) -> Outcome:
    """One outcome for the user from the per-token results (module doc)."""
    sent = [r.outcome for r in results if r.outcome.ok]
    failed = [r.outcome for r in results if not r.outcome.ok]
    notes = [f"{len(sent)}/{len(results)} devices accepted"]
    if failed:
        codes = sorted({o.provider_code or o.reason or "?" for o in failed})
        notes.append(f"failures: {', '.join(codes)}")
        first_detail = next((o.detail for o in failed if o.detail), None)
        if first_detail:
            notes.append(first_detail)
    if deleted:
        notes.append(f"{deleted} dead token{'s' if deleted > 1 else ''} deleted")
    if kept:
        notes.append(f"{kept} dead token{'s' if kept > 1 else ''} not deleted (database unavailable)")
    if truncated:
        notes.append("body truncated to fit 4096 bytes")
    detail = "; ".join(notes)
    if sent:
        return Outcome.sent(PROVIDER, sent[0].provider_message_id, detail=detail)
    retryable = [o for o in failed if o.status == "failed_retryable"]
    if retryable:
        waits = [o.retry_after for o in retryable if o.retry_after is not None]
        # If any device may have got it, the whole push may have: report that one (ambiguous).
        first = next((o for o in retryable if o.ambiguous), retryable[0])
        return Outcome(
            "failed_retryable",
            PROVIDER,
            provider_code=first.provider_code,
            reason=first.reason,
            detail=detail,
            retry_after=max(waits) if waits else None,
        )
    first = failed[0]
    return Outcome(
        "failed_permanent", PROVIDER, provider_code=first.provider_code, reason=first.reason, detail=detail
    )


class FcmAdapter:
    """The ``push`` channel adapter (see module doc)."""

    channel = Channel.PUSH
    provider = PROVIDER

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        auth: TokenSource,
        devices: DeviceStore,
        project_id: str,
        ttl_s: int = 3600,
        max_payload_bytes: int = FCM_LIMIT_BYTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._auth = auth
        self._devices = devices
        self._path = f"/v1/projects/{project_id}/messages:send"
        self._ttl_s = ttl_s
        self._limit = max_payload_bytes
        self._clock = clock

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        try:
            tokens = await self._devices.tokens(message.recipient, message.tenant or "")
        except PG_CALL_ERRORS as exc:
            detail = f"device lookup: {type(exc).__name__}: {exc}"[:500]
            if classify_pg_error(exc) == "record":  # a user id PostgreSQL cannot even compare
                return Outcome("failed_permanent", PROVIDER, reason="invalid_address", detail=detail)
            return Outcome("failed_retryable", PROVIDER, reason="database_unavailable", detail=detail)
        if not tokens:
            return Outcome(
                "failed_permanent", PROVIDER, reason="no_device", detail="user has no device token"
            )
        now = self._clock()
        try:
            # The token is not counted against the limit, so one fitted template serves every device.
            template, truncated = fit_message(
                build_message(
                    "",
                    message,
                    title=content.title or "",
                    body=content.text or "",
                    idempotency_key=idempotency_key,
                    ttl_s=self._ttl_s,
                    now=now,
                ),
                self._limit,
            )
        except PayloadTooLarge as exc:
            return Outcome("failed_permanent", PROVIDER, reason="payload_too_large", detail=str(exc))
        except ValueError as exc:  # payload that is not a JSON object
            return Outcome("failed_permanent", PROVIDER, reason="invalid_payload", detail=str(exc))
        results = await asyncio.gather(*(self._send({**template, "token": t.token}, t.token) for t in tokens))
        dead = [r.token for r in results if r.drop_token]
        deleted = await self._forget(message, dead, results) if dead else 0
        if deleted is None:  # PostgreSQL failed: the tokens stay
            return _summarise(results, 0, truncated, kept=len(dead))
        return _summarise(results, deleted, truncated)

    async def _forget(
        self, message: ChannelMessage, dead: list[str], results: Sequence[_TokenResult]
    ) -> int | None:
        """Delete the dead tokens; None when PostgreSQL failed. The sends are done by then: a
        storage error must not turn an accepted push into a retry that pushes it again. The tokens
        stay, and the next send finds them dead again and retries the delete."""
        codes = ", ".join(sorted({r.outcome.provider_code or "" for r in results if r.drop_token}))
        try:
            deleted = await self._devices.delete(message.recipient, dead, message.tenant or "")
        except PG_CALL_ERRORS as exc:
            log.warning(
                "could not delete %d dead FCM token(s) of a user (%s): %s: %s; kept for the next send",
                len(dead),
                codes,
                type(exc).__name__,
                str(exc)[:200],
            )
            return None
        log.info("deleted %d dead FCM token(s) of a user (%s)", deleted, codes)
        return deleted

    async def _send(self, msg: dict[str, Any], token: str) -> _TokenResult:
        body = json.dumps({"message": msg}, separators=(",", ":"), ensure_ascii=False).encode()
        for attempt in (1, 2):
            try:
                bearer = await self._auth.token()
            except CredentialsError as exc:
                return _TokenResult(token, _AUTH_FAILED.outcome(PROVIDER, "AUTH", str(exc)))
            try:
                resp = await self._client.post(
                    self._path,
                    content=body,
                    headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
                )
            # A write error or timeout stays ambiguous: over HTTP/2 the socket is shared, so a
            # failed write does not show this stream's request was incomplete; LocalProtocolError
            # too (httpcore's HTTP/2 raises it at any point of the exchange).
            except REFUSED_BEFORE_SENDING as exc:
                return _TokenResult(
                    token, _UNAVAILABLE.outcome(PROVIDER, None, f"{type(exc).__name__}: {exc}")
                )
            except httpx.HTTPError as exc:
                return _TokenResult(token, _TIMEOUT.outcome(PROVIDER, None, f"{type(exc).__name__}: {exc}"))
            if resp.status_code == 200:
                name = _message_name(resp)
                return _TokenResult(token, Outcome.sent(PROVIDER, name))
            error = parse_error(resp.status_code, resp.content)
            failure = classify(error)
            if failure.reauth:
                if attempt == 1:
                    await self._auth.invalidate(bearer)
                    continue
                return _TokenResult(
                    token, failure.outcome(PROVIDER, error.code, "token refused after refresh")
                )
            if failure.retryable:
                if (failure.reason or "").startswith("http_"):
                    log.warning("unknown FCM error %s (HTTP %d): retrying", error.code, resp.status_code)
                failure = failure.with_retry_after(
                    parse_retry_after(resp.headers.get("retry-after"), self._clock())
                )
            return _TokenResult(token, failure.outcome(PROVIDER, error.code), drop_token=failure.gone)
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        await self._client.aclose()


def _message_name(resp: httpx.Response) -> str | None:
    try:
        name = resp.json().get("name")
    except (ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None
