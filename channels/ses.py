"""Email through Amazon SES v2 (``SendEmail``), paced to the account's send rate.

Mail is sent as Raw MIME built with the stdlib ``email`` package (multipart/alternative: text
then HTML), which carries the headers SES v2's Simple content cannot carry everywhere:
``List-Unsubscribe`` and ``List-Unsubscribe-Post`` (RFC 8058 one-click) on bulk-lane mail,
and ``X-Herald-Idempotency-Key`` on every message. SES has no idempotency parameter; the key
also travels as an ``EmailTags`` entry so event destinations can report it.

Errors are classified once, by :func:`classify`; unknown codes are retried (and logged).
"""

from __future__ import annotations

import logging
import re
from email.charset import QP, Charset
from email.header import Header
from email.headerregistry import Address
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from channels import aws
from channels.aws import call_classified
from channels.base import PERMANENT, RETRY, Content, Failure, Outcome, PermanentDelivery
from channels.pacing import TokenBucket
from schemas.models import Channel, ChannelMessage, Lane

__all__ = [
    "DEFAULT_MAX_SEND_RATE",
    "SesEmailAdapter",
    "build_mime",
    "classify",
    "discover_max_send_rate",
    "unsubscribe_headers",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_SEND_RATE = 14.0  # a new SES account's MaxSendRate

_SES_CODES: dict[str, Failure] = {
    "MessageRejected": PERMANENT,
    "MailFromDomainNotVerifiedException": PERMANENT,
    "MailFromDomainNotVerified": PERMANENT,
    "AccountSuspendedException": PERMANENT,
    "AccountSuspended": PERMANENT,
    "SendingPausedException": PERMANENT,
    "SendingPaused": PERMANENT,
    "NotFoundException": PERMANENT,
    "BadRequestException": PERMANENT,
    "InvalidParameterValue": PERMANENT,
    "ValidationException": PERMANENT,
    "AccessDeniedException": PERMANENT,
    "TooManyRequestsException": RETRY,
    "Throttling": RETRY,
    "ThrottlingException": RETRY,
    "LimitExceededException": RETRY,
    "LimitExceeded": RETRY,
    "ServiceUnavailable": RETRY,
    "InternalFailure": RETRY,
}


def classify(code: str, status: int | None) -> Failure:
    """What an SES error code means: the table, then :func:`channels.aws.classify`'s rule. Pure."""
    return aws.classify(_SES_CODES, code, status)


def unsubscribe_headers(
    url_template: str | None, mailto: str | None, *, user_id: str, category: str
) -> dict[str, str]:
    """RFC 2369 + RFC 8058 one-click headers; empty when there is nothing to offer. Pure."""
    targets: list[str] = []
    if url_template:
        targets.append(
            url_template.format(user_id=quote(user_id, safe=""), category=quote(category, safe=""))
        )
    if mailto:
        targets.append(mailto if mailto.startswith("mailto:") else f"mailto:{mailto}")
    if not targets:
        return {}
    headers = {"List-Unsubscribe": ", ".join(f"<{t}>" for t in targets)}
    if url_template:  # one-click needs an HTTPS target to POST to
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 field name: printable ASCII except ':'
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


def _text_part(body: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    part.set_payload(body, _UTF8_QP)  # sets charset=utf-8 and Content-Transfer-Encoding: quoted-printable
    return part


def build_mime(
    *, from_address: str, to: str, subject: str, text: str, html: str | None, headers: dict[str, str]
) -> bytes:
    """The raw message: text part first, then the HTML that capable clients prefer.

    Built with the compat32 ``email.mime`` classes: a third of the CPU of ``EmailMessage``
    with the SMTP policy, which showed in throughput. Non-ASCII headers are RFC 2047
    encoded and bodies quoted-printable, so the message is 7-bit clean for any relay.
    """
    for name, value in headers.items():
        if not _HEADER_NAME.match(name) or "\n" in value or "\r" in value:
            raise ValueError(f"invalid header {name!r}")
    msg: MIMEBase = _text_part(text or "", "plain")
    if html:
        alternative = MIMEMultipart("alternative")
        alternative.attach(msg)
        alternative.attach(_text_part(html, "html"))
        msg = alternative
    from_name, from_addr = parseaddr(from_address)
    msg["From"] = formataddr((from_name, from_addr), charset="utf-8")
    msg["To"] = to
    msg["Subject"] = Header(subject, "utf-8").encode() if not subject.isascii() else subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=from_addr.rpartition("@")[2] or "herald.invalid")
    for name, value in headers.items():
        msg[name] = Header(value, "utf-8").encode() if not value.isascii() else value
    return msg.as_bytes()


def _valid_recipient(address: str) -> bool:
    local, _, domain = address.partition("@")
    if "\n" in address or "\r" in address or address.count("@") != 1 or not local or not domain:
        return False
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError):
        return False
    return True


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
        bucket: TokenBucket,
        configuration_set: str | None = None,
        unsubscribe_url: str | None = None,
        unsubscribe_mailto: str | None = None,
        close: Any = None,
    ) -> None:
        self.client = client
        self.from_address = from_address
        self.bucket = bucket
        self.configuration_set = configuration_set
        self.unsubscribe_url = unsubscribe_url
        self.unsubscribe_mailto = unsubscribe_mailto
        self._close = close

    def request(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> dict[str, Any]:
        """The SendEmail parameters for one message (raises PermanentDelivery on bad input)."""
        if not _valid_recipient(message.recipient):
            raise PermanentDelivery(
                self.provider, None, f"not an email address: {message.recipient!r}", reason="invalid_address"
            )
        if not content.subject or not (content.text or content.html):
            raise PermanentDelivery(
                self.provider, None, "email needs a subject and a body", reason="empty_content"
            )
        headers = {
            **content.headers,
            "X-Herald-Idempotency-Key": idempotency_key,
            "X-Herald-Notification-Id": message.notification_id,
        }
        if message.lane is Lane.BULK:
            headers.update(
                unsubscribe_headers(
                    self.unsubscribe_url,
                    self.unsubscribe_mailto,
                    user_id=message.user_id,
                    category=message.category,
                )
            )
        try:
            raw = build_mime(
                from_address=self.from_address,
                to=message.recipient,
                subject=content.subject,
                text=content.text or "",
                html=content.html,
                headers=headers,
            )
        except ValueError as exc:
            raise PermanentDelivery(self.provider, None, str(exc), reason="invalid_content") from exc
        category = re.sub(r"[^A-Za-z0-9_-]", "_", message.category)[:256] or "none"
        params: dict[str, Any] = {
            "FromEmailAddress": self.from_address,
            "Content": {"Raw": {"Data": raw}},
            "EmailTags": [
                {"Name": "herald_key", "Value": idempotency_key},
                {"Name": "herald_category", "Value": category},
            ],
        }
        if self.configuration_set:
            params["ConfigurationSetName"] = self.configuration_set
        return params

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        try:
            params = self.request(message, content, idempotency_key=idempotency_key)
        except PermanentDelivery as exc:
            return Outcome.from_error(exc)
        await self.bucket.acquire()
        response = await call_classified(self.provider, self.client.send_email, params, table=_SES_CODES)
        if isinstance(response, Outcome):
            return response
        return Outcome.sent(self.provider, response.get("MessageId"))

    async def close(self) -> None:
        if self._close is not None:
            await self._close()
