"""Provider feedback: SES events (through SNS HTTPS) and Twilio status callbacks, verified, applied.

What each piece of feedback does is decided by pure functions (:func:`channels.email.ses_events.read_ses_event`,
:func:`channels.sns_verify.verify_sns`, :func:`channels.sms.twilio_signature.verify_twilio`); this
module does the I/O: fetch (and cache) the SNS signing certificate, confirm a subscription,
write the suppression list, and publish ``delivered`` receipts to ``herald.receipts`` — the path
app receipts take, so a provider's delivery report and a device's count the same.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from channels.email.ses_events import FeedbackKind, SesFeedback, read_ses_event
from channels.sns_verify import SnsSignatureError, cert_url_allowed, verify_sns
from channels.webhook.signing import WebhookVerificationError
from consumers.infra.provider_settings import FeedbackSettings
from consumers.infra.suppressions import SuppressionStore
from consumers.runtime.topics import Topics
from schemas.codec import Codec
from schemas.models import Channel, Receipt, ReceiptStatus

__all__ = ["TWILIO_SUPPRESS_CODES", "ProviderFeedback", "Rejected", "ses_feedback_warning"]

log = logging.getLogger(__name__)

# Twilio error codes on a failed/undelivered callback that mean "never text this number again".
TWILIO_SUPPRESS_CODES = frozenset({"21610", "30004", "30005", "30006"})  # STOP, blocked, unknown, landline
_MAX_CERTS = 32


def ses_feedback_warning(configuration_set: str | None, feedback: FeedbackSettings) -> str | None:
    """What ``herald run api`` warns at start, or None. Pure. Only a deployment that sends through
    an SES configuration set (whose event destination is the SNS topic) has feedback to lose; one
    without SES, or without a configuration set, would only learn to ignore the line."""
    if configuration_set is None or feedback.sns_topic_arns:
        return None
    return (
        f"SES feedback is off (POST /v1/providers/ses/events answers 404) although the configuration "
        f"set {configuration_set!r} is set: bounces and complaints are not suppressed until "
        "HERALD_PROVIDERS__FEEDBACK__SNS_TOPIC_ARNS lists the SNS topic(s) SES publishes to"
    )


class Rejected(WebhookVerificationError):
    """The request is not genuine feedback (the message says why); answered 403."""


@dataclass
class ProviderFeedback:
    settings: FeedbackSettings
    store: SuppressionStore
    producer: AIOKafkaProducer
    topics: Topics
    codec: Codec
    http: httpx.AsyncClient
    twilio_auth_token: str | None = None  # unset: Twilio callbacks are refused
    twilio_callback_url: str | None = None  # the public URL Twilio signs

    def __post_init__(self) -> None:
        self._certs: dict[str, bytes] = {}

    # -- SES through SNS -----------------------------------------------------------------------
    async def sns_message(self, message: Mapping[str, Any]) -> str:
        """Verify and apply one SNS message; the kind of thing it was. Raises Rejected."""
        await self._verify(message)
        kind = str(message.get("Type"))
        if kind == "SubscriptionConfirmation":
            await self._confirm(str(message.get("SubscribeURL") or ""))
            return "subscription_confirmed"
        if kind != "Notification":
            return kind.lower()
        try:
            event = json.loads(str(message.get("Message") or ""))
        except ValueError:
            return "ignored"
        feedback = read_ses_event(event if isinstance(event, dict) else {})
        await self.apply_ses(feedback)
        return feedback.reason or feedback.kind.value

    @property
    def ses_enabled(self) -> bool:
        """SES feedback is on only with an allow-list of topics: any AWS account can create an
        SNS topic, sign with it and subscribe it to our URL, so a valid signature proves nothing
        about whose topic it is."""
        return bool(self.settings.sns_topic_arns)

    async def _verify(self, message: Mapping[str, Any]) -> None:
        # Before the certificate is fetched or anything is confirmed: a foreign topic costs us nothing.
        if message.get("TopicArn") not in self.settings.sns_topic_arns:
            raise Rejected("topic not accepted")
        url = str(message.get("SigningCertURL") or "")
        if not cert_url_allowed(
            url, self.settings.sns_cert_host_pattern, scheme=self.settings.sns_cert_scheme
        ):
            raise Rejected("signing certificate URL is not an SNS host")
        try:
            verify_sns(message, await self._cert(url))
        except SnsSignatureError as exc:
            raise Rejected(f"bad SNS signature: {exc}") from exc

    async def _cert(self, url: str) -> bytes:
        cached = self._certs.get(url)
        if cached is None:
            response = await self.http.get(url, timeout=self.settings.fetch_timeout_s)
            if response.status_code != 200:
                raise Rejected(f"signing certificate unavailable (HTTP {response.status_code})")
            if len(self._certs) >= _MAX_CERTS:
                self._certs.clear()
            cached = self._certs[url] = response.content
        return cached

    async def _confirm(self, url: str) -> None:
        pattern, scheme = self.settings.sns_cert_host_pattern, self.settings.sns_cert_scheme
        # The same host rule as the certificate: a forged confirmation cannot make us call elsewhere.
        if not cert_url_allowed(url.split("?", 1)[0] + ".pem", pattern, scheme=scheme):
            raise Rejected("SubscribeURL is not an SNS host")
        response = await self.http.get(url, timeout=self.settings.fetch_timeout_s)
        if response.status_code != 200:
            raise Rejected(f"subscription confirmation failed (HTTP {response.status_code})")
        log.info("SNS subscription confirmed")

    async def apply_ses(self, feedback: SesFeedback) -> None:
        if feedback.kind is FeedbackKind.SUPPRESS:
            added = await self.store.add(
                Channel.EMAIL.value,
                feedback.addresses,
                reason=feedback.reason,
                source="ses",
                detail=feedback.detail,
            )
            log.info("SES %s: %d address(es) suppressed", feedback.reason, added)
        elif feedback.kind is FeedbackKind.TRANSIENT:
            await self.store.count_soft_bounce(Channel.EMAIL.value, feedback.addresses, datetime.now(UTC))
        elif feedback.kind is FeedbackKind.DELIVERED:
            await self.delivered(Channel.EMAIL, feedback.notification_id, feedback.user_id, source="ses")

    # -- Twilio status callbacks ---------------------------------------------------------------
    async def twilio_status(
        self, params: Mapping[str, str], *, notification_id: str | None, user_id: str | None
    ) -> str:
        status = params.get("MessageStatus") or params.get("SmsStatus") or ""
        if status == "delivered":
            await self.delivered(Channel.SMS, notification_id, user_id, source="twilio")
        elif status in ("failed", "undelivered") and params.get("ErrorCode") in TWILIO_SUPPRESS_CODES:
            await self.store.add(
                Channel.SMS.value,
                [params.get("To", "")],
                reason=f"twilio_{params['ErrorCode']}",
                source="twilio",
            )
        return status or "unknown"

    # -- the receipts path ---------------------------------------------------------------------
    async def delivered(
        self, channel: Channel, notification_id: str | None, user_id: str | None, *, source: str
    ) -> None:
        if not notification_id or not user_id:
            log.info("%s delivery report without a Herald notification; ignored", source)
            return
        receipt = Receipt(
            notification_id=notification_id,
            user_id=user_id,
            status=ReceiptStatus.DELIVERED,
            at=datetime.now(UTC),
            channel=channel,
            source=source,
        )
        await self.producer.send_and_wait(
            self.topics.receipts, self.codec.encode(receipt), key=notification_id.encode()
        )
