"""Email over SMTP (``aiosmtplib``): STARTTLS or implicit TLS, AUTH, a pool of open connections.

The message is the same Raw MIME SES sends (:func:`channels.email.mime.compose`). Reply codes
are classified once, by :func:`classify`, through a table; codes not in it follow RFC 5321's
first digit (4xx transient: retry; 5xx permanent). Refused credentials (530/534/535) retry
instead: they are our configuration's fault, every message would fail alike, and counted as
retryable they open this provider's breaker so the next provider takes the mail. So does any
5xx before the recipient is named (greeting, EHLO, AUTH, MAIL FROM): nothing of the message has
been sent yet (no SIZE is declared), so the refusal is of our server, account or sender. After
the recipient is named, a 5xx whose reply refuses to relay for us or asks us to authenticate
(:func:`channels.email.smtp_replies.blames_our_relay`) is ours too, not the recipient's.

A tenant's own sender (``tenant_from``) makes a refusal ambiguous: a relay refuses a sender
domain it was not set up for in the same words as its own outage. So for a tenant's message, a
5xx at MAIL FROM, or at RCPT TO or DATA one that blames our relay or the sender
(:func:`~channels.email.smtp_replies.blames_the_sender`), is ``tenant_sender_config``:
retryable, passed to the next provider, and ignored by the breaker (one tenant's setup must not
open it for every tenant, nor count as a success). Nothing is tried to tell the two apart: a
refusal that was in fact ours reaches the next provider all the same, and our own sender's
messages still count it. Refusals during the greeting, EHLO or AUTH stay ours.

A tenant's From that ``aiosmtplib`` cannot encode (not ASCII: Herald does not use SMTPUTF8) is
refused at start by the settings; a recipient that cannot be is a permanent ``address_not_ascii``
(the connection closed, as its session is mid-transaction).

The transaction runs step by step (MAIL, RCPT, DATA) so a failure knows where it happened. A
connection error or timeout before DATA (connect refused, TLS failure, a pooled connection the
server had closed) is a plain retryable refusal: the server cannot have taken the message, and a
pooled connection found closed is replaced by another at once. A timeout or disconnect during
DATA is ``provider_timeout``: the server may have committed the message, so it is never resent on
another connection here.

:class:`~channels.email.smtp_settings.SmtpSettings` (re-exported here) is the one declaration of
this provider's knobs: the adapter reads it as is, and Herald's settings object nests it as
``HERALD_SMTP__*``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from typing import Literal

import aiosmtplib
from aiosmtplib.errors import (
    SMTPException,
    SMTPRecipientsRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from channels.base import Content, Failure, Outcome, PermanentDelivery, RetryableDelivery
from channels.email.mime import compose, envelope_sender
from channels.email.smtp_replies import blames_our_relay, blames_the_sender
from channels.email.smtp_settings import SmtpSettings
from channels.pacing import TokenBucket
from schemas.models import Channel, ChannelMessage

__all__ = ["SmtpEmailAdapter", "SmtpSettings", "Stage", "classify"]

# Where in the session a failure happened: before the recipient is named, a refusal is about us.
Stage = Literal["connect", "mail", "rcpt", "data"]
_SESSION: frozenset[str] = frozenset({"connect", "mail"})

log = logging.getLogger(__name__)

# RFC 5321 §4.2 reply codes -> what they mean for Herald.
_SMTP_CODES: dict[int, Failure] = {
    421: Failure.retry("provider_unavailable"),  # service not available, closing the channel
    450: Failure.retry("mailbox_busy"),  # mailbox unavailable now (greylisting)
    451: Failure.retry("provider_error"),  # local error in processing
    452: Failure.retry("provider_storage"),  # insufficient system storage
    454: Failure.retry("provider_tls"),  # TLS / auth temporarily unavailable
    530: Failure.retry("provider_auth"),  # authentication required: our configuration
    534: Failure.retry("provider_auth"),  # authentication mechanism too weak
    535: Failure.retry("provider_auth"),  # credentials invalid
    550: Failure.permanent("mailbox_unavailable"),  # no such user, or refused by policy
    551: Failure.permanent("invalid_address"),  # user not local
    552: Failure.permanent("mailbox_full"),  # exceeded storage allocation
    553: Failure.permanent("invalid_address"),  # mailbox name not allowed
    554: Failure.permanent("rejected"),  # transaction failed (spam, content)
    501: Failure.permanent("invalid_address"),  # syntax error in parameters (the address)
}

_OURS = Failure.retry("provider_config")  # our server, account, relay permission or sender
# A tenant's sender refused here: retried and failed over, never counted by the breaker.
_TENANTS = Failure.retry("tenant_sender_config")


def classify(code: int, *, stage: Stage = "rcpt", reply: str = "", tenant_sender: bool = False) -> Failure:
    """What an SMTP reply ``code`` (with its text, ``reply``) at ``stage`` means: the table, then
    the first digit (5xx permanent). Pure.

    A 5xx the table calls permanent is our server's, account's or sender's problem, not the
    message's, at the greeting, EHLO, AUTH or MAIL FROM, or later when the reply refuses to relay
    for us or asks us to authenticate: ``provider_config``, retried, so the breaker opens and the
    next provider takes the mail instead of each message failing for good.

    ``tenant_sender``: the message goes from a tenant's own sender. Then a 5xx at MAIL FROM, or
    one at RCPT TO or DATA that blames our relay or the sender, is ``tenant_sender_config``: the
    relay may just not be set up for that tenant's domain, so it is retried and failed over, but
    never counted against this provider's breaker (the module doc)."""
    failure = _SMTP_CODES.get(code)
    refused = 500 <= code < 600 and (failure is None or not failure.retryable)
    # A tenant's sender may simply not be set up at this relay, which says so like its own outage.
    the_sender = stage == "mail" or blames_our_relay(reply) or blames_the_sender(reply)
    if refused and tenant_sender and stage != "connect" and the_sender:
        return _TENANTS
    if refused and (stage in _SESSION or blames_our_relay(reply)):
        return _OURS
    if failure is not None:
        return failure
    return Failure.permanent() if 500 <= code < 600 else Failure.retry()


class SmtpEmailAdapter:
    """The email channel over one SMTP server. One instance (and one pool) per process."""

    channel = Channel.EMAIL
    provider = "smtp"

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        from_address: str,
        bucket: TokenBucket,
        unsubscribe_url: str | None = None,
        unsubscribe_mailto: str | None = None,
        tenant_from: Mapping[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.from_address = from_address
        self.sender = envelope_sender(from_address)
        # A tenant's own From (HERALD_EMAIL__TENANT_FROM_ADDRESSES), as on SES: the From, and here
        # also the envelope sender (bounces go to it), so a message failed over from SES keeps it.
        self.tenant_from = {t: (a, envelope_sender(a)) for t, a in (tenant_from or {}).items()}
        self.bucket = bucket
        self.unsubscribe_url = unsubscribe_url
        self.unsubscribe_mailto = unsubscribe_mailto
        self.tls_context = tls_context
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(max(1, settings.pool_size))

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        tenant = self.tenant_from.get(message.tenant or "")
        from_address, sender = tenant or (self.from_address, self.sender)
        try:
            raw = compose(
                self.provider,
                message,
                content,
                from_address=from_address,
                idempotency_key=idempotency_key,
                unsubscribe_url=self.unsubscribe_url,
                unsubscribe_mailto=self.unsubscribe_mailto,
            )
        except PermanentDelivery as exc:
            return Outcome.from_error(exc)
        await self.bucket.acquire()
        async with self._slots:
            return await self._send(sender, message.recipient, raw, tenant=tenant is not None)

    async def _send(self, sender: str, recipient: str, raw: bytes, *, tenant: bool) -> Outcome:
        while True:
            conn = self._idle.pop() if self._idle else None
            pooled = conn is not None
            stage: Stage = "connect"
            try:
                if conn is None:
                    conn = await self._connect()
                stage = "mail"
                await conn.mail(sender)
                stage = "rcpt"
                await conn.rcpt(recipient)
                stage = "data"
                reply = await conn.data(raw)
            except SMTPResponseException as exc:
                await self._recycle(conn)
                return self._failure(exc, stage, tenant=tenant)
            except UnicodeEncodeError as exc:  # aiosmtplib encodes MAIL FROM / RCPT TO as ASCII
                if conn is not None:
                    conn.close()  # at RCPT the session is mid-transaction (MAIL taken): not reusable
                who = {"mail": "envelope sender", "rcpt": "recipient"}.get(stage, "address")
                detail = f"the {who} is not ASCII (Herald does not use SMTPUTF8): {exc.object!r}"[:500]
                return Outcome.from_error(
                    PermanentDelivery(self.provider, None, detail, reason="address_not_ascii")
                )
            except (SMTPException, OSError) as exc:  # connection lost, timeout, TLS, DNS, refused
                if conn is not None:
                    conn.close()
                if pooled and stage != "data" and isinstance(exc, SMTPServerDisconnected):
                    continue  # the server had closed this idle connection: take another, or a fresh one
                return self._failure(exc, stage)
            self._idle.append(conn)
            return Outcome.sent(self.provider, _queued_id(reply.message))

    async def _connect(self) -> aiosmtplib.SMTP:
        o = self.settings
        conn = aiosmtplib.SMTP(
            hostname=o.host,
            port=o.port,
            use_tls=o.security == "tls",
            start_tls=o.security == "starttls",  # required when asked for; never when "none"
            validate_certs=o.validate_certs,
            cert_bundle=str(o.ca_file) if o.ca_file else None,
            tls_context=self.tls_context,
            timeout=o.timeout_s,
            username=o.username,
            password=o.password.get_secret_value() if o.password else None,
        )
        await conn.connect()
        return conn

    async def _recycle(self, conn: aiosmtplib.SMTP | None) -> None:
        """After a refusal the session may go on (RSET); if even that fails, drop it."""
        if conn is None or not conn.is_connected:
            return
        try:
            await conn.rset()
        except (SMTPException, OSError):
            conn.close()
            return
        self._idle.append(conn)

    def _failure(self, exc: BaseException, stage: Stage, *, tenant: bool = False) -> Outcome:
        if isinstance(exc, SMTPRecipientsRefused) and exc.recipients:
            exc = exc.recipients[0]
        if isinstance(exc, SMTPResponseException):
            failure = classify(exc.code, stage=stage, reply=exc.message, tenant_sender=tenant)
            return failure.outcome(self.provider, str(exc.code), exc.message[:500])
        # Lost during DATA, the server may have committed the message; before it, it cannot have.
        ambiguous = stage == "data" and isinstance(exc, SMTPTimeoutError | SMTPServerDisconnected)
        reason = "provider_timeout" if ambiguous else "provider_unavailable"
        return Outcome.from_error(
            RetryableDelivery(self.provider, type(exc).__name__, str(exc)[:500], reason=reason)
        )

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                await conn.quit()
            except (SMTPException, OSError):
                conn.close()


def _queued_id(reply: str) -> str | None:
    """The server's queue id from ``250 2.0.0 Ok: queued as 4F2C1`` (or the reply itself)."""
    text = reply.strip()
    marker = "queued as "
    return text.split(marker, 1)[1].strip() or None if marker in text else (text[:200] or None)
