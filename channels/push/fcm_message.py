"""Pure parts of the FCM adapter: the v1 message per tier, the 4 KB rule and the error table.

No I/O here; ``now`` is always an argument. :mod:`channels.push.fcm` does the sending.

Size rule (documented decision): the payload is measured as the UTF-8 bytes of the compact
JSON of the v1 ``message`` object *without* its ``token`` (a slight over-estimate of what
reaches the device, so we never exceed the provider's 4096 bytes). When it is too large the
notification **body** is truncated at a character boundary and ends with ``…``; title and
``data`` are never cut (``data`` is the app's contract). If even an empty body does not fit,
the message is refused: ``failed_permanent`` reason ``payload_too_large``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from channels.base import Failure
from schemas.errors import RecordError
from schemas.models import ChannelMessage, Tier

__all__ = [
    "FCM_LIMIT_BYTES",
    "FcmError",
    "PayloadTooLarge",
    "build_message",
    "classify",
    "collapse_id",
    "data_strings",
    "fit_message",
    "parse_error",
    "payload_size",
]

FCM_LIMIT_BYTES = 4096
ELLIPSIS = "…"
_URGENT = frozenset({Tier.CRITICAL, Tier.HIGH})
# FCM refuses these data keys (and any starting with "google" or "gcm").
_RESERVED = frozenset({"from", "notification", "message_type", "collapse_key"})
_APNS_COLLAPSE_MAX = 64  # bytes, APNs limit on apns-collapse-id


class PayloadTooLarge(RecordError):
    """Even with an empty body the message exceeds the limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"push payload is {size} bytes without a body; the limit is {limit}", reason="payload_too_large"
        )
        self.size = size
        self.limit = limit


def data_strings(message: ChannelMessage, idempotency_key: str) -> dict[str, str]:
    """FCM ``data``: string values only. Payload values that are not strings become JSON;
    reserved keys are left out; Herald's own keys win over payload keys of the same name."""
    out: dict[str, str] = {}
    for key, value in message.data().items():
        lowered = key.lower()
        if lowered in _RESERVED or lowered.startswith(("google", "gcm")) or not key:
            continue
        out[key] = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    out.update(
        notification_id=message.notification_id,
        event_type=message.event_type,
        category=message.category,
        tier=str(message.tier),
        idempotency_key=idempotency_key,
    )
    return out


def collapse_id(message: ChannelMessage) -> str:
    """Updates of the same thing replace each other on the device.

    A payload ``collapse_key`` names the thing ("order-42": each status update replaces the
    last). Without one the notification id is used, so an at-least-once redelivery of the
    same notification replaces itself instead of showing twice. Longer than APNs' 64 bytes:
    a digest.
    """
    raw = message.data().get("collapse_key")
    key = str(raw) if raw not in (None, "") else message.notification_id
    if len(key.encode()) > _APNS_COLLAPSE_MAX:
        key = hashlib.sha256(key.encode()).hexdigest()[:_APNS_COLLAPSE_MAX]
    return key


def build_message(
    token: str,
    message: ChannelMessage,
    *,
    title: str,
    body: str,
    idempotency_key: str,
    ttl_s: int,
    now: datetime,
) -> dict[str, Any]:
    """The v1 ``message`` object for one device token (tier decides urgency)."""
    urgent = message.tier in _URGENT
    expires = now.timestamp() + ttl_s
    if message.expires_at is not None:
        expires = min(expires, message.expires_at.timestamp())
    ttl = max(0, int(expires - now.timestamp()))
    collapse = collapse_id(message)
    return {
        "token": token,
        "notification": {"title": title, "body": body},
        "data": data_strings(message, idempotency_key),
        "android": {
            "priority": "HIGH" if urgent else "NORMAL",
            "ttl": f"{ttl}s",
            "collapse_key": collapse,
            "notification": {"tag": collapse},
        },
        "apns": {
            "headers": {
                "apns-priority": "10" if urgent else "5",
                "apns-expiration": str(int(now.timestamp()) + ttl),
                "apns-collapse-id": collapse,
            },
        },
    }


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def payload_size(msg: Mapping[str, Any]) -> int:
    """Bytes counted against the limit: the message without its token (see module doc)."""
    return len(_dumps({k: v for k, v in msg.items() if k != "token"}))


def _with_body(msg: dict[str, Any], body: str) -> dict[str, Any]:
    return {**msg, "notification": {**msg["notification"], "body": body}}


def fit_message(msg: dict[str, Any], limit: int = FCM_LIMIT_BYTES) -> tuple[dict[str, Any], bool]:
    """``(message, truncated)`` within ``limit``; raises :class:`PayloadTooLarge`."""
    if payload_size(msg) <= limit:
        return msg, False
    body: str = msg["notification"]["body"]
    empty = _with_body(msg, "")
    if payload_size(empty) > limit:
        raise PayloadTooLarge(payload_size(empty), limit)
    # Longest prefix (in characters) that fits with the ellipsis: binary search, sizes are monotonic.
    lo, hi = 0, len(body) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if payload_size(_with_body(msg, body[:mid].rstrip() + ELLIPSIS)) <= limit:
            lo = mid
        else:
            hi = mid - 1
    cut = body[:lo].rstrip() + ELLIPSIS if lo else ""
    fitted = _with_body(msg, cut)
    if payload_size(fitted) > limit:  # only the bare ellipsis can overflow here
        fitted = empty
    return fitted, True


# -- errors ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FcmError:
    """What an FCM v1 error response says, parsed."""

    http_status: int
    status: str | None = None  # google.rpc status: NOT_FOUND, UNAUTHENTICATED...
    error_code: str | None = None  # FcmError.errorCode: UNREGISTERED, QUOTA_EXCEEDED...
    token_invalid: bool = False  # a BadRequest field violation on message.token

    @property
    def code(self) -> str:
        return self.error_code or self.status or str(self.http_status)


_BY_CODE: dict[str, Failure] = {
    "UNREGISTERED": Failure.permanent("unregistered", gone=True),
    "SENDER_ID_MISMATCH": Failure.permanent("sender_id_mismatch"),
    "INVALID_ARGUMENT": Failure.permanent("invalid_argument"),
    # The APNs certificate or auth key, or the web push key, on our Firebase project is invalid or
    # missing, or this one device's third-party setup is (an iOS token of the APNs environment the
    # project has no key for, a web push subscription made with another VAPID key): FCM does not
    # say which. Retried either way, the token kept (never deleted for it): late rather than lost.
    # A device whose own setup is bad retries for the whole schedule, then ends `exhausted`.
    # Push has one provider and no breaker: nothing counts it. No access-token refresh (our own
    # credentials were accepted; the errorCode wins over the 401).
    "THIRD_PARTY_AUTH_ERROR": Failure.retry("provider_config"),
    # Without an errorCode (SENDER_ID_MISMATCH comes with it), a refusal of our service account
    # or project, not of the token: retried, as every AWS/Twilio/SMTP configuration error is, so
    # a fixed configuration delivers on the retry schedule instead of every push failing for good.
    "PERMISSION_DENIED": Failure.retry("provider_auth"),
    "NOT_FOUND": Failure.retry("provider_config"),  # the project in the URL (UNREGISTERED has its code)
    "QUOTA_EXCEEDED": Failure.retry("quota_exceeded"),
    "RESOURCE_EXHAUSTED": Failure.retry("quota_exceeded"),
    "UNAVAILABLE": Failure.retry("unavailable"),
    "INTERNAL": Failure.retry("internal"),
    "UNAUTHENTICATED": Failure.retry("unauthenticated", reauth=True),
}
_INVALID_TOKEN = Failure.permanent("invalid_token", gone=True)


def classify(error: FcmError) -> Failure:
    """The FCM v1 error table. ``errorCode`` wins over the rpc status, which wins over HTTP.

    A 401 that is not THIRD_PARTY_AUTH_ERROR means our access token was refused (``reauth``):
    refresh once and resend. ``gone``: the device token is dead and is deleted. Unknown
    codes are retried (and logged by the adapter).
    """
    if error.token_invalid and error.error_code in (None, "INVALID_ARGUMENT"):
        return _INVALID_TOKEN
    for code in (error.error_code, error.status):
        if code is not None and code in _BY_CODE:
            return _BY_CODE[code]
    if error.http_status == 401:
        return _BY_CODE["UNAUTHENTICATED"]
    if error.http_status == 400:
        return _BY_CODE["INVALID_ARGUMENT"]
    if error.http_status == 403:
        return _BY_CODE["PERMISSION_DENIED"]
    if error.http_status == 404:  # messages:send itself not found: a wrong project id or URL
        return _BY_CODE["NOT_FOUND"]
    return Failure.retry(f"http_{error.http_status}" if error.http_status else "unknown")


def parse_error(http_status: int, body: bytes) -> FcmError:
    """Parse ``{"error": {"status", "details": [{"@type": ...FcmError, "errorCode"}, BadRequest...]}}``."""
    try:
        err = json.loads(body)["error"]
        status = err.get("status")
        details = err.get("details") or []
    except (ValueError, KeyError, TypeError, AttributeError):
        return FcmError(http_status)
    error_code: str | None = None
    token_invalid = False
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.firebase.fcm.v1.FcmError") and detail.get("errorCode"):
            error_code = str(detail["errorCode"])
        elif kind.endswith("google.rpc.BadRequest"):
            fields = [v.get("field") for v in detail.get("fieldViolations") or [] if isinstance(v, dict)]
            token_invalid = token_invalid or "message.token" in fields
    return FcmError(http_status, status if isinstance(status, str) else None, error_code, token_invalid)
