"""Email through Amazon SES v2 (``SendEmail``), paced to the account's send rate.

Mail is sent as Raw MIME (:func:`channels.email.mime.compose`), which carries the headers SES
v2's Simple content cannot carry everywhere. SES has no idempotency parameter; the key also
travels as an ``EmailTags`` entry so event destinations can report it.

Errors are classified once, by :func:`classify`; unknown codes are retried (and logged).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from channels import aws
from channels.aws import call_classified
from channels.base import PERMANENT, RETRY, Content, Failure, Outcome, PermanentDelivery
from channels.email.mime import compose
from channels.email.ses_events import encode_tag
from channels.pacing import Pacer
from schemas.models import Channel, ChannelMessage

__all__ = [
    "DEFAULT_MAX_SEND_RATE",
    "SesEmailAdapter",
    "classify",
    "discover_max_send_rate",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_SEND_RATE = 14.0  # a new SES account's MaxSendRate

# Errors of our account or configuration (sending paused or suspended, an unverified MAIL FROM
# domain, a configuration set that does not exist, refused permissions) fail every message alike:
# they retry as `provider_config`/`provider_auth`, so the breaker opens and the next provider
# takes the mail, rather than failing each message for good while another provider is healthy.
_CONFIG = Failure.retry("provider_config")
_AUTH = Failure.retry("provider_auth")
_SES_CODES: dict[str, Failure] = {
    "MessageRejected": PERMANENT,  # this message's content or recipient
    "MailFromDomainNotVerifiedException": _CONFIG,
    "MailFromDomainNotVerified": _CONFIG,
    "AccountSuspendedException": _CONFIG,
    "AccountSuspended": _CONFIG,
    "SendingPausedException": _CONFIG,
    "SendingPaused": _CONFIG,
    "NotFoundException": _CONFIG,  # SendEmail names no resource but the configuration set
    "BadRequestException": PERMANENT,
    "InvalidParameterValue": PERMANENT,
    "ValidationException": PERMANENT,
    "AccessDeniedException": _AUTH,
    "TooManyRequestsException": RETRY,
    "Throttling": RETRY,
    "ThrottlingException": RETRY,
    "LimitExceededException": RETRY,
    "LimitExceeded": RETRY,
    "ServiceUnavailable": RETRY,
    "InternalFailure": RETRY,
}

# From a tenant's own sender identity, an unverified MAIL FROM domain or a refused permission (a
# sending authorization policy) is that tenant's setup, not SES's: counted against the one `ses`
# breaker, one tenant's DNS would fail every tenant's mail over. `tenant_sender_config` is retried
# and failed over like a refusal, but the breaker ignores it (consumers.channel.failover).
_TENANT_SENDER = Failure.retry("tenant_sender_config")
_TENANT_SES_CODES: dict[str, Failure] = {
    **_SES_CODES,
    **dict.fromkeys(
        (
            "MailFromDomainNotVerifiedException",
            "MailFromDomainNotVerified",
            "AccessDeniedException",
            "AccessDenied",
        ),
        _TENANT_SENDER,
    ),
}


def classify(code: str, status: int | None, *, tenant_sender: bool = False) -> Failure:
    """What an SES error code means: the table, then :func:`channels.aws.classify`'s rule.
    ``tenant_sender``: the mail went from a tenant's own identity (``tenant_from``). Pure."""
    return aws.classify(_TENANT_SES_CODES if tenant_sender else _SES_CODES, code, status)


async def discover_max_send_rate(client: Any) -> float | None:
    """The account's MaxSendRate from GetAccount, or None when it cannot be read (moto: 404)."""
    try:
        account = await client.get_account()
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        log.info("SES GetAccount unavailable (%s); using the configured send rate", exc)
        return None
    rate = account.get("SendQuota", {}).get("MaxSendRate")
    return float(rate) if rate else None


class SesEmailAdapter:
    """The email channel over SES v2. One instance (and one client) per process."""

    channel = Channel.EMAIL
    provider = "ses"

    def __init__(
        self,
        client: Any,
        *,
        from_address: str,
        bucket: Pacer,
        configuration_set: str | None = None,
        unsubscribe_url: str | None = None,
        unsubscribe_mailto: str | None = None,
        tenant_from: Mapping[str, str] | None = None,
        close: Any = None,
    ) -> None:
        self.client = client
        self.from_address = from_address
        self.tenant_from = dict(tenant_from or {})  # a tenant's own sender identity
        self.bucket = bucket
        self.configuration_set = configuration_set
        self.unsubscribe_url = unsubscribe_url
        self.unsubscribe_mailto = unsubscribe_mailto
        self._close = close

    def request(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> dict[str, Any]:
        """The SendEmail parameters for one message (raises PermanentDelivery on bad input)."""
        from_address = self.tenant_from.get(message.tenant or "", self.from_address)
        raw = compose(
            self.provider,
            message,
            content,
            from_address=from_address,
            idempotency_key=idempotency_key,
            unsubscribe_url=self.unsubscribe_url,
            unsubscribe_mailto=self.unsubscribe_mailto,
        )
        category = re.sub(r"[^A-Za-z0-9_-]", "_", message.category)[:256] or "none"
        params: dict[str, Any] = {
            "FromEmailAddress": from_address,
            "Content": {"Raw": {"Data": raw}},
            "EmailTags": [
                {"Name": "herald_key", "Value": idempotency_key},
                {"Name": "herald_category", "Value": category},
            ],
        }
        # Who the mail was about, for the feedback endpoint (Delivery -> a delivered receipt).
        for name, value in (
            ("herald_notification", message.notification_id),
            ("herald_user", message.user_id),
        ):
            encoded = encode_tag(value)
            if encoded is not None:
                params["EmailTags"].append({"Name": name, "Value": encoded})
        if self.configuration_set:
            params["ConfigurationSetName"] = self.configuration_set
        return params

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        try:
            params = self.request(message, content, idempotency_key=idempotency_key)
        except PermanentDelivery as exc:
            return Outcome.from_error(exc)
        await self.bucket.acquire()
        table = _TENANT_SES_CODES if (message.tenant or "") in self.tenant_from else _SES_CODES
        response = await call_classified(self.provider, self.client.send_email, params, table=table)
        if isinstance(response, Outcome):
            return response
        return Outcome.sent(self.provider, response.get("MessageId"))

    async def close(self) -> None:
        if self._close is not None:
            await self._close()
