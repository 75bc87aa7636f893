"""What an SES event (event publishing through SNS) means for Herald. Pure.

::

    Bounce, bounceType Permanent      -> suppress each bounced address (hard bounce)
    Bounce, Transient / Undetermined  -> count it, do not suppress (mailbox full, greylisting)
    Complaint                          -> suppress each complaining address
    Delivery                           -> a ``delivered`` receipt for the notification
    anything else (Send, Open, ...)    -> nothing

The notification and user the mail was about travel as SES message tags set by
:class:`~channels.email.ses.SesEmailAdapter` (``herald_notification``, ``herald_user``), base32
encoded because tag values allow only ``[A-Za-z0-9_.@-]``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

__all__ = ["FeedbackKind", "SesFeedback", "decode_tag", "encode_tag", "read_ses_event"]


class FeedbackKind(StrEnum):
    SUPPRESS = "suppress"  # hard bounce or complaint
    TRANSIENT = "transient"  # soft bounce: counted only
    DELIVERED = "delivered"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class SesFeedback:
    kind: FeedbackKind
    reason: str = ""  # bounce_permanent, complaint, bounce_transient, delivery
    addresses: tuple[str, ...] = ()
    notification_id: str | None = None
    user_id: str | None = None
    provider_message_id: str | None = None
    detail: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)


def encode_tag(value: str) -> str | None:
    """``value`` as an SES tag value (base32, no padding), or None when it would exceed 256. Pure."""
    encoded = base64.b32encode(value.encode()).decode().rstrip("=")
    return encoded if 0 < len(encoded) <= 256 else None


def decode_tag(value: str) -> str | None:
    """The inverse of :func:`encode_tag`; None for anything else. Pure."""
    try:
        return base64.b32decode(value + "=" * (-len(value) % 8)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def _tags(mail: Mapping[str, Any]) -> dict[str, str]:
    raw = mail.get("tags") or {}
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): str(v[0]) for k, v in raw.items() if isinstance(v, list) and v}


def _addresses(items: object, key: str = "emailAddress") -> tuple[str, ...]:
    if not isinstance(items, list):
        return ()
    found = [str(i.get(key)) for i in items if isinstance(i, Mapping) and i.get(key)]
    return tuple(a.strip().lower() for a in found)


def read_ses_event(event: Mapping[str, Any]) -> SesFeedback:
    """The feedback in one SES event (``eventType``, or ``notificationType`` of identity
    notifications). Pure; unknown or malformed events are IGNORED, never an error."""
    kind = str(event.get("eventType") or event.get("notificationType") or "")
    mail = event.get("mail")
    mail = mail if isinstance(mail, Mapping) else {}
    tags = _tags(mail)
    base = SesFeedback(
        FeedbackKind.IGNORED,
        kind.lower(),
        notification_id=decode_tag(tags.get("herald_notification", "")) or None,
        user_id=decode_tag(tags.get("herald_user", "")) or None,
        provider_message_id=str(mail.get("messageId")) if mail.get("messageId") else None,
        tags=tags,
    )
    body = event.get(kind.lower())
    body = body if isinstance(body, Mapping) else {}
    if kind == "Bounce":
        bounce_type = str(body.get("bounceType") or "Undetermined")
        hard = bounce_type == "Permanent"
        return replace(
            base,
            kind=FeedbackKind.SUPPRESS if hard else FeedbackKind.TRANSIENT,
            reason="bounce_permanent" if hard else "bounce_transient",
            addresses=_addresses(body.get("bouncedRecipients")),
            detail=f"{bounce_type}/{body.get('bounceSubType') or ''}",
        )
    if kind == "Complaint":
        return replace(
            base,
            kind=FeedbackKind.SUPPRESS,
            reason="complaint",
            addresses=_addresses(body.get("complainedRecipients")),
            detail=str(body.get("complaintFeedbackType") or ""),
        )
    if kind == "Delivery":
        recipients = body.get("recipients")
        addresses = tuple(str(r).lower() for r in recipients) if isinstance(recipients, list) else ()
        return replace(base, kind=FeedbackKind.DELIVERED, reason="delivery", addresses=addresses)
    return base
