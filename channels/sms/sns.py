"""SMS through Amazon SNS ``Publish`` to a phone number.

The number is checked before any call: E.164 form, then country code and length with the
``phonenumbers`` library (an invalid one is a permanent ``invalid_address``, not a provider
round trip). ``AWS.SNS.SMS.SMSType`` is Transactional for anything a user is
waiting for and Promotional for the bulk lane (cheaper, and carriers treat it so). Texts are
measured in GSM-7 / UCS-2 segments; past ``max_segments`` the message fails permanently
rather than arriving as an expensive, reordered string of fragments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import phonenumbers

from channels import aws
from channels.aws import call_classified
from channels.base import PERMANENT, RETRY, Content, Failure, Outcome, PermanentDelivery
from channels.pacing import TokenBucket
from schemas.models import Channel, ChannelMessage, Lane, Tier

__all__ = ["SnsSmsAdapter", "classify", "is_e164", "phone_problem", "segments", "sms_type"]


_E164 = re.compile(r"^\+[1-9]\d{6,14}$")

# GSM 03.38 basic set; the extension set costs two septets each.
_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")

_SNS_CODES: dict[str, Failure] = {
    "InvalidParameter": PERMANENT,
    "InvalidParameterValue": PERMANENT,
    "ParameterValueInvalid": PERMANENT,
    "OptedOut": PERMANENT,
    # Our credentials or permissions, not the message: retried so the breaker opens and the
    # next provider takes over (as Twilio's refused credentials).
    "AuthorizationError": Failure.retry("provider_auth"),
    "EndpointDisabled": PERMANENT,
    "NotFound": PERMANENT,
    "ValidationException": PERMANENT,
    "Throttled": RETRY,
    "Throttling": RETRY,
    "ThrottlingException": RETRY,
    "KMSThrottling": RETRY,
    "InternalError": RETRY,
    "InternalFailure": RETRY,
    "ServiceUnavailable": RETRY,
}


def is_e164(number: str) -> bool:
    """``+`` then 7 to 15 digits, no leading zero country code. Pure."""
    return bool(_E164.fullmatch(number))


def phone_problem(number: str) -> str | None:
    """Why ``number`` cannot receive an SMS, or None: E.164 form, a country code that exists and a
    length that country's numbering plan allows (Google's libphonenumber metadata). Pure."""
    if not is_e164(number):
        return f"not an E.164 phone number: {number!r}"
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        why = "unknown country code" if exc.error_type == exc.INVALID_COUNTRY_CODE else str(exc)
        return f"not a phone number: {number!r} ({why})"
    # Exactly IS_POSSIBLE: "possible local only" (no area code) cannot be dialled from abroad.
    result = phonenumbers.is_possible_number_with_reason(parsed)
    if result != phonenumbers.ValidationResult.IS_POSSIBLE:
        why = {
            phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
            phonenumbers.ValidationResult.TOO_SHORT: "too short for its country",
            phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short for its country (no area code)",
            phonenumbers.ValidationResult.TOO_LONG: "too long for its country",
        }.get(result, "impossible length for its country")
        return f"not a dialable phone number: {number!r} ({why})"
    return None


def segments(text: str) -> tuple[Literal["GSM-7", "UCS-2"], int]:
    """(encoding, number of SMS segments) for ``text``. Pure.

    GSM-7: 160 septets in one segment, 153 per segment when concatenated. UCS-2: 70 / 67
    UTF-16 code units (an emoji costs two).
    """
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in text):
        units = sum(2 if c in _GSM7_EXTENDED else 1 for c in text)
        return "GSM-7", 1 if units <= 160 else -(-units // 153)
    units = len(text.encode("utf-16-le")) // 2
    return "UCS-2", 1 if units <= 70 else -(-units // 67)


def sms_type(tier: Tier, lane: Lane) -> Literal["Transactional", "Promotional"]:
    """Promotional for the bulk lane and low tier; Transactional for everything else. Pure."""
    return "Promotional" if lane is Lane.BULK or tier is Tier.LOW else "Transactional"


def classify(code: str, status: int | None) -> Failure:
    """What an SNS error code means: the table, then :func:`channels.aws.classify`'s rule. Pure."""
    return aws.classify(_SNS_CODES, code, status)


class SnsSmsAdapter:
    """The SMS channel over SNS. One instance (and one client) per process."""

    channel = Channel.SMS
    provider = "sns"

    def __init__(
        self,
        client: Any,
        *,
        bucket: TokenBucket,
        sender_id: str | None = None,
        max_segments: int = 3,
        tenant_sender_ids: Mapping[str, str] | None = None,
        close: Any = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.sender_id = sender_id
        self.tenant_sender_ids = dict(tenant_sender_ids or {})  # a tenant's own alphanumeric sender
        self.max_segments = max_segments
        self._close = close

    def request(self, message: ChannelMessage, content: Content) -> dict[str, Any]:
        """The Publish parameters (raises PermanentDelivery for a bad number or text)."""
        problem = phone_problem(message.recipient)
        if problem is not None:
            raise PermanentDelivery(self.provider, None, problem, reason="invalid_address")
        text = (content.text or "").strip()
        if not text:
            raise PermanentDelivery(self.provider, None, "empty SMS text", reason="empty_content")
        encoding, count = segments(text)
        if count > self.max_segments:
            raise PermanentDelivery(
                self.provider,
                None,
                f"{count} {encoding} segments > {self.max_segments} ({len(text)} chars)",
                reason="payload_too_large",
            )
        kind = sms_type(message.tier, message.lane)
        attributes: dict[str, Any] = {"AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": kind}}
        sender_id = self.tenant_sender_ids.get(message.tenant or "", self.sender_id)
        if sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = {"DataType": "String", "StringValue": sender_id}
        return {"PhoneNumber": message.recipient, "Message": text, "MessageAttributes": attributes}

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        # SNS Publish to a phone number has no idempotency parameter (MessageDeduplicationId is
        # FIFO topics only): the consumer's delivery ledger is the guard.
        try:
            params = self.request(message, content)
        except PermanentDelivery as exc:
            return Outcome.from_error(exc)
        await self.bucket.acquire()
        response = await call_classified(self.provider, self.client.publish, params, table=_SNS_CODES)
        if isinstance(response, Outcome):
            return response
        encoding, count = segments(params["Message"])
        return Outcome.sent(self.provider, response.get("MessageId"), detail=f"{count} {encoding} segment(s)")

    async def close(self) -> None:
        if self._close is not None:
            await self._close()
