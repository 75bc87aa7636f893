"""SMS through Twilio's Messages API (``POST /2010-04-01/Accounts/{sid}/Messages.json``) over httpx.

Basic auth with the account SID and auth token. The number (E.164, country code, length) and
the text (segment limit) are checked before any call, as for SNS. Twilio's errors carry a numeric
``code``; :func:`classify` reads it through a table, then falls back on the HTTP status (429 and
5xx retry, other 4xx are the request's fault). Misconfiguration (refused credentials, a ``From``
number the account does not own) retries rather than failing every message permanently: it is
the provider's fault, not the message's, and retried it opens the breaker so the next provider
takes over.

Twilio's Messages API has no idempotency key: the channel consumer's delivery ledger is the guard.

:class:`TwilioSettings` is the one declaration of this provider's knobs (Herald's settings object
nests it as ``HERALD_TWILIO__*``); :meth:`TwilioSettings.options` checks that they name an
account and a sender and gives the adapter its :class:`TwilioOptions`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from channels.base import Content, Failure, Outcome, PermanentDelivery, RetryableDelivery
from channels.http_refusals import REFUSED_BEFORE_SENDING
from channels.pacing import TokenBucket
from channels.retry_after import parse_retry_after
from channels.sms.sns import phone_problem, segments
from channels.sms.twilio_settings import TwilioOptions, TwilioSettings
from schemas.models import Channel, ChannelMessage

__all__ = ["TwilioOptions", "TwilioSettings", "TwilioSmsAdapter", "callback_url", "classify", "make_client"]

log = logging.getLogger(__name__)

# https://www.twilio.com/docs/api/errors -> what they mean for Herald.
_TWILIO_CODES: dict[int, Failure] = {
    21211: Failure.permanent("invalid_address"),  # 'To' is not a valid phone number
    21614: Failure.permanent("invalid_address"),  # 'To' is not a mobile number
    21612: Failure.permanent("unreachable"),  # cannot route to this number
    21610: Failure.permanent("opted_out"),  # the recipient replied STOP
    21408: Failure.permanent("region_not_enabled"),  # no permission to send to that region
    21602: Failure.permanent("empty_content"),  # body required
    21617: Failure.permanent("payload_too_large"),  # body over 1600 characters
    20003: Failure.retry("provider_auth"),  # authentication failed: our configuration
    20404: Failure.retry("provider_auth"),  # the account in the URL is not ours
    21606: Failure.retry("provider_config"),  # 'From' is not a number of this account
    21212: Failure.retry("provider_config"),  # 'From' is not a valid number
    20429: Failure.retry("provider_throttled"),  # too many requests
    30001: Failure.retry("provider_throttled"),  # queue overflow
    20500: Failure.retry("provider_unavailable"),  # internal server error
    20503: Failure.retry("provider_unavailable"),  # service unavailable
}


def classify(code: int | None, status: int) -> Failure:
    """What a Twilio error means: the code's table row, else the HTTP status (429, 408 and 5xx
    retry; other 4xx are the request's fault). Pure."""
    if code is not None and code in _TWILIO_CODES:
        return _TWILIO_CODES[code]
    reason = f"provider_{code}" if code is not None else f"provider_http_{status}"
    if 400 <= status < 500 and status not in (408, 429):
        return Failure.permanent(reason)
    return Failure.retry(reason)


def callback_url(base: str, message: ChannelMessage) -> str:
    """The status callback URL for ``message``: which notification and user it is about ride in the
    query (Twilio signs the full URL, so they cannot be altered). Pure."""
    query = urlencode({"n": message.notification_id, "u": message.user_id})
    return f"{base}{'&' if '?' in base else '?'}{query}"


def make_client(base_url: str, *, timeout_s: float, max_connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )


class TwilioSmsAdapter:
    """The SMS channel over Twilio. One instance (and one pooled client) per process."""

    channel = Channel.SMS
    provider = "twilio"

    def __init__(self, client: httpx.AsyncClient, options: TwilioOptions, *, bucket: TokenBucket) -> None:
        if not (options.from_number or options.messaging_service_sid):
            raise ValueError("twilio needs from_number or messaging_service_sid")
        self.client = client
        self.options = options
        self.bucket = bucket
        self.path = f"/2010-04-01/Accounts/{options.account_sid}/Messages.json"

    def form(self, message: ChannelMessage, content: Content) -> dict[str, str]:
        """The form parameters (raises PermanentDelivery for a bad number or text)."""
        problem = phone_problem(message.recipient)  # E.164, country code, length: as for SNS
        if problem is not None:
            raise PermanentDelivery(self.provider, None, problem, reason="invalid_address")
        text = (content.text or "").strip()
        if not text:
            raise PermanentDelivery(self.provider, None, "empty SMS text", reason="empty_content")
        encoding, count = segments(text)
        if count > self.options.max_segments:
            raise PermanentDelivery(
                self.provider,
                None,
                f"{count} {encoding} segments > {self.options.max_segments} ({len(text)} chars)",
                reason="payload_too_large",
            )
        form = {"To": message.recipient, "Body": text}
        if self.options.messaging_service_sid:
            form["MessagingServiceSid"] = self.options.messaging_service_sid
        else:
            form["From"] = self.options.from_number or ""
        if self.options.status_callback_url:
            form["StatusCallback"] = callback_url(self.options.status_callback_url, message)
        return form

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        try:
            form = self.form(message, content)
        except PermanentDelivery as exc:
            return Outcome.from_error(exc)
        await self.bucket.acquire()
        try:
            response = await self.client.post(
                self.path, data=form, auth=(self.options.account_sid, self.options.auth_token)
            )
        except REFUSED_BEFORE_SENDING as exc:  # nothing sent: the next provider may try it
            return Outcome.from_error(
                RetryableDelivery(
                    self.provider, type(exc).__name__, str(exc)[:500], reason="provider_unavailable"
                )
            )
        except httpx.TransportError as exc:  # the request went out; Twilio may have accepted it
            return Outcome.from_error(
                RetryableDelivery(
                    self.provider, type(exc).__name__, str(exc)[:500], reason="provider_timeout"
                )
            )
        if response.status_code in (200, 201):
            body = _json(response)
            return Outcome.sent(
                self.provider, str(body.get("sid") or "") or None, detail=str(body.get("status") or "")
            )
        return self._failure(response)

    def _failure(self, response: httpx.Response) -> Outcome:
        body = _json(response)
        raw_code = body.get("code")
        code = int(raw_code) if isinstance(raw_code, int | str) and str(raw_code).isdigit() else None
        failure = classify(code, response.status_code).with_retry_after(
            parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))
        )
        if failure.retryable and code not in _TWILIO_CODES:
            log.warning("twilio: unclassified error %s (HTTP %s); retrying", code, response.status_code)
        detail = str(body.get("message") or response.text)[:500]
        return failure.outcome(self.provider, str(code if code is not None else response.status_code), detail)

    async def close(self) -> None:
        await self.client.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
