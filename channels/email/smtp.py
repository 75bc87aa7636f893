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

A tenant's own sender (``tenant_from``) makes such a refusal ambiguous: a relay refuses a sender
domain it was not set up for in the same words as its own outage. So a tenant's message refused
as ours is followed, on the same connection, by our own sender (MAIL FROM, and RCPT TO when the
refusal came there; never DATA): taken, the refusal was of the tenant's sender
(``tenant_sender_config``, not counted by the breaker); refused too, it is ours.

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
from channels.email.smtp_replies import blames_our_relay
from channels.email.smtp_settings import SmtpSettings
from channels.pacing import TokenBucket
from schemas.models import Channel, ChannelMessage

__all__ = ["SmtpEmailAdapter", "SmtpSettings", "Stage", "classify", "wants_probe"]

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
_TENANTS = Failure.permanent("tenant_sender_config")  # a tenant's sender, refused here only


def classify(
    code: int, *, stage: Stage = "rcpt", reply: str = "", our_sender_taken: bool | None = None
) -> Failure:
    """What an SMTP reply ``code`` (with its text, ``reply``) at ``stage`` means: the table, then
    the first digit (5xx permanent). Pure.

    A 5xx the table calls permanent is our server's, account's or sender's problem, not the
    message's, at the greeting, EHLO, AUTH or MAIL FROM, or later when the reply refuses to relay
    for us or asks us to authenticate: ``provider_config``, retried, so the breaker opens and the
    next provider takes the mail instead of each message failing for good.

    ``our_sender_taken``: for a message from a tenant's own sender refused as ``provider_config``
    (:func:`wants_probe`), whether the same server then took our own sender (and the recipient)
    on the same connection. Taken: the refusal was of the tenant's sender (its domain not
    registered at the relay, "relay denied for one of the domains in: acme.example"), so
    ``tenant_sender_config``: permanent here, not counted by the breaker (one tenant's setup must
    not open it for every tenant), passed to the next provider by the failover chain. Refused too,
    or not asked (None): ours, ``provider_config``."""
    failure = _SMTP_CODES.get(code)
    refused = 500 <= code < 600 and (failure is None or not failure.retryable)
    if refused and (stage in _SESSION or blames_our_relay(reply)):
        if stage != "connect" and our_sender_taken:
            return _TENANTS
        return _OURS
    if failure is not None:
        return failure
    return Failure.permanent() if 500 <= code < 600 else Failure.retry()


def wants_probe(code: int, *, stage: Stage, reply: str) -> bool:
    """Whether a refusal of a tenant's message could be of the tenant's sender rather than of us,
    so our own sender is tried on the same connection before blaming either. Pure."""
    return stage != "connect" and classify(code, stage=stage, reply=reply) == _OURS


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
                taken = None
                if tenant and conn is not None and wants_probe(exc.code, stage=stage, reply=exc.message):
                    taken = await self._our_sender_taken(conn, recipient, stage)
                await self._recycle(conn)
                return self._failure(exc, stage, our_sender_taken=taken)
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

    async def _our_sender_taken(self, conn: aiosmtplib.SMTP, recipient: str, stage: Stage) -> bool:
        """After a tenant's message was refused: would this server take the same transaction from
        our own sender? MAIL FROM (and RCPT TO when the refusal came there), never DATA; the caller
        then resets the session. A round trip on a MAIL FROM refusal, three on a later one."""
        try:
            if stage == "rcpt":
                await conn.rset()  # the tenant's MAIL FROM was taken: drop it first
            await conn.mail(self.sender)
            if stage == "rcpt":
                await conn.rcpt(recipient)
        except SMTPResponseException:
            return False
        except (SMTPException, OSError):
            conn.close()  # lost on the way: not shown to be the tenant's, so ours
            return False
        return True

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

    def _failure(self, exc: BaseException, stage: Stage, *, our_sender_taken: bool | None = None) -> Outcome:
        if isinstance(exc, SMTPRecipientsRefused) and exc.recipients:
            exc = exc.recipients[0]
        if isinstance(exc, SMTPResponseException):
            failure = classify(exc.code, stage=stage, reply=exc.message, our_sender_taken=our_sender_taken)
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
