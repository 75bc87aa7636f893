"""The contract every delivery adapter implements, its failure vocabulary and error tree.

::

    DeliveryError                 raised inside an adapter, never above it
    ├── RetryableDelivery         try again later (throttling, 5xx, timeouts)
    └── PermanentDelivery         never going to work (rejected, invalid address, dead token)

An adapter classifies its provider's errors once, through a table of :class:`Failure` rows
keyed by the provider's code, and returns an :class:`Outcome`. The pattern every adapter
follows (``channels/email/ses.py`` is the shortest example)::

    _CODES: dict[str, Failure] = {
        "MessageRejected": PERMANENT,                       # reason: provider_messagerejected
        "UNREGISTERED": Failure.permanent("unregistered", gone=True),
        "Throttling": RETRY,
    }

    def classify(code: str, status: int | None) -> Failure:   # pure; unknown codes retry
        ...

    return classify(code, status).outcome(self.provider, code, detail)

Code above ``channels/`` reads ``Outcome.status`` and ``Outcome.provider_code``; it never
inspects SDK exceptions or message text.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal, Protocol

from schemas.errors import HeraldError
from schemas.models import Channel, ChannelMessage

__all__ = [
    "AMBIGUOUS_REASONS",
    "PERMANENT",
    "RETRY",
    "ChannelAdapter",
    "Content",
    "DeliveryError",
    "Failure",
    "FailureKind",
    "Outcome",
    "PermanentDelivery",
    "RetryableDelivery",
]

Status = Literal["sent", "failed_retryable", "failed_permanent"]


class FailureKind(StrEnum):
    """Whether a failed attempt is worth repeating. The value is the outcome status it gives."""

    RETRYABLE = "failed_retryable"  # throttling, 5xx, timeouts, unknown codes
    PERMANENT = "failed_permanent"  # rejected, invalid address, dead token


def _default_reason(code: str | None) -> str:
    return "provider_error" if code is None else f"provider_{code}".lower()


@dataclass(frozen=True, slots=True)
class Failure:
    """What a provider failure means: a row of an adapter's classification table, or the verdict
    a classifier derived from one response.

    ``reason`` is Herald's machine-readable reason; ``None`` derives it from the provider code
    (``provider_<code>``). ``gone``: the destination no longer exists (FCM ``UNREGISTERED``,
    webhook 410), so the adapter deletes or disables it. ``reauth``: our credentials were
    refused; the adapter refreshes them and resends once, after which the failure counts as
    ``kind``. ``retry_after``: seconds the provider asked for (a ``Retry-After`` header).
    """

    kind: FailureKind
    reason: str | None = None
    gone: bool = False
    reauth: bool = False
    retry_after: float | None = None

    @classmethod
    def retry(cls, reason: str | None = None, *, reauth: bool = False) -> Failure:
        return cls(FailureKind.RETRYABLE, reason, reauth=reauth)

    @classmethod
    def permanent(cls, reason: str | None = None, *, gone: bool = False) -> Failure:
        return cls(FailureKind.PERMANENT, reason, gone=gone)

    @property
    def retryable(self) -> bool:
        return self.kind is FailureKind.RETRYABLE

    def with_retry_after(self, retry_after: float | None) -> Failure:
        """This failure with the provider's requested wait."""
        return replace(self, retry_after=retry_after)

    def outcome(self, provider: str, code: str | None, detail: str | None = None) -> Outcome:
        """The outcome of an attempt that failed like this, with the provider's ``code``."""
        status: Status = "failed_retryable" if self.retryable else "failed_permanent"
        return Outcome(
            status,
            provider,
            provider_code=code,
            reason=self.reason or _default_reason(code),
            detail=detail,
            retry_after=self.retry_after,
        )


# Retryable reasons after which the provider may have accepted the message (no answer came back
# once it had the request): never failed over to another provider, and resent only where a
# duplicate beats a loss (consumers.channel.ledger.resends_unknown).
AMBIGUOUS_REASONS = frozenset({"provider_timeout"})

RETRY = Failure(FailureKind.RETRYABLE)  # a table row: retry, reason from the provider code
PERMANENT = Failure(FailureKind.PERMANENT)  # a table row: give up, reason from the provider code


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt came to (docs/architecture.md, "Outcome statuses")."""

    status: Status
    provider: str
    provider_message_id: str | None = None
    provider_code: str | None = None  # "Throttling", "UNREGISTERED", "429"
    reason: str | None = None  # Herald's machine-readable reason: no_device, payload_too_large, ...
    detail: str | None = None  # human-readable; may say what the adapter did (e.g. "token deleted")
    retry_after: float | None = None  # seconds, when the provider said so

    @property
    def ok(self) -> bool:
        return self.status == "sent"

    @property
    def ambiguous(self) -> bool:
        """A retryable failure after which the provider may have accepted the message anyway."""
        return self.status == "failed_retryable" and self.reason in AMBIGUOUS_REASONS

    @classmethod
    def sent(cls, provider: str, message_id: str | None = None, detail: str | None = None) -> Outcome:
        return cls("sent", provider, provider_message_id=message_id, detail=detail)

    @classmethod
    def from_error(cls, error: DeliveryError) -> Outcome:
        status: Status = "failed_retryable" if isinstance(error, RetryableDelivery) else "failed_permanent"
        return cls(
            status,
            error.provider,
            provider_code=error.code,
            reason=error.reason,
            detail=error.detail,
            retry_after=error.retry_after,
        )


class DeliveryError(HeraldError):
    """A classified provider failure."""

    def __init__(
        self,
        provider: str,
        code: str | None,
        detail: str = "",
        *,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{provider}: {code}: {detail}" if code else f"{provider}: {detail}")
        self.provider = provider
        self.code = code
        self.detail = detail
        self.reason = reason or _default_reason(code)
        self.retry_after = retry_after


class RetryableDelivery(DeliveryError):
    retryable = True


class PermanentDelivery(DeliveryError):
    retryable = False


@dataclass(frozen=True, slots=True)
class Content:
    """Rendered content of one notification for one channel (from its Jinja2 templates).

    Email uses subject/html/text; SMS uses text; push uses title/text; in-app uses
    title/text; webhook uses ``body`` (the exact JSON bytes to sign and send).
    """

    subject: str | None = None
    title: str | None = None
    text: str | None = None
    html: str | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    locale: str | None = None


class ChannelAdapter(Protocol):
    """One provider of one channel. Holds its pooled clients; built once per process."""

    channel: Channel
    provider: str

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        """Deliver once; classify any failure into the Outcome. Never sleeps for long."""
        ...

    async def close(self) -> None: ...
