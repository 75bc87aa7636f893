"""Standard Webhooks signatures (https://www.standardwebhooks.com/), pure functions.

A message is signed over ``{webhook-id}.{webhook-timestamp}.{body}`` (the exact body bytes
sent) with HMAC-SHA256; ``webhook-signature`` carries ``v1,<base64>`` once per active
secret, space-separated, so receivers keep verifying while a secret rotates. Secrets are
``whsec_`` + base64 of 24-64 random bytes.

Nothing here reads a clock: :func:`verify` takes ``now``. Byte-for-byte compatible with the
reference implementations (the ``standardwebhooks`` PyPI package verifies what we sign,
and we verify what it signs; see tests/unit/channels/test_signing_interop.py).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets as _random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from schemas.errors import ConfigurationError, HeraldError

__all__ = [
    "SECRET_PREFIX",
    "FutureTimestamp",
    "InvalidSecret",
    "MalformedHeader",
    "MissingHeader",
    "NoMatchingSignature",
    "StaleTimestamp",
    "TimestampOutOfTolerance",
    "Verified",
    "WebhookVerificationError",
    "decode_secret",
    "generate_secret",
    "sign",
    "signing_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"
_MIN_SECRET_BYTES = 24
_MAX_SECRET_BYTES = 64
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_MSG_ID = re.compile(r"[\x21-\x7e]{1,256}")
_MAX_SIGNATURES = 16  # bounds the work an attacker's header can cause

SecretLike = str | bytes


class InvalidSecret(ConfigurationError, ValueError):
    """A secret that is not ``whsec_`` + base64 of some bytes."""


class WebhookVerificationError(HeraldError, ValueError):
    """A webhook that must be rejected. Subclasses say why."""


class MissingHeader(WebhookVerificationError):
    def __init__(self, name: str) -> None:
        super().__init__(f"missing header {name}")
        self.header = name


class MalformedHeader(WebhookVerificationError):
    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"malformed header {name}: {detail}")
        self.header = name


class TimestampOutOfTolerance(WebhookVerificationError):
    """The timestamp is outside ``now ± tolerance`` (replay protection)."""


class StaleTimestamp(TimestampOutOfTolerance):
    pass


class FutureTimestamp(TimestampOutOfTolerance):
    pass


class NoMatchingSignature(WebhookVerificationError):
    pass


@dataclass(frozen=True, slots=True)
class Verified:
    msg_id: str
    timestamp: int


def decode_secret(secret: SecretLike) -> bytes:
    """The HMAC key of a secret: bytes are used as they are; a str is ``whsec_``-prefixed
    (or bare) base64, padding optional, as the reference implementations read it."""
    key = secret if isinstance(secret, bytes) else _decode_text(secret)
    if not key:
        raise InvalidSecret("webhook secret is empty")
    return key


@functools.lru_cache(maxsize=4096)  # every send decodes its endpoint's secrets: a third of signing's time
def _decode_text(secret: str) -> bytes:
    text = secret.removeprefix(SECRET_PREFIX).strip().rstrip("=")
    padded = text + "=" * (-len(text) % 4)
    if not _B64.fullmatch(padded) or len(text) % 4 == 1:
        raise InvalidSecret("webhook secret is not base64 (expected whsec_<base64>)")
    try:
        return base64.b64decode(padded, validate=True)
    except binascii.Error as exc:
        raise InvalidSecret(f"webhook secret is not base64: {exc}") from exc


def generate_secret(nbytes: int = 32) -> str:
    """A new secret: ``whsec_`` + base64 of ``nbytes`` (24-64) bytes from the OS CSPRNG."""
    if not _MIN_SECRET_BYTES <= nbytes <= _MAX_SECRET_BYTES:
        raise ValueError(f"secret length must be {_MIN_SECRET_BYTES}-{_MAX_SECRET_BYTES} bytes, got {nbytes}")
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(nbytes)).decode("ascii")


def _keys(secrets: SecretLike | Sequence[SecretLike]) -> list[bytes]:
    items: Sequence[SecretLike] = [secrets] if isinstance(secrets, str | bytes) else secrets
    keys = [decode_secret(s) for s in items]
    if not keys:
        raise InvalidSecret("no webhook secret given")
    return keys


def _mac(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)  # no copy of a large body into a joined buffer
    return mac.digest()


def sign(secret: SecretLike | Sequence[SecretLike], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64>`` per secret, space-separated,
    in the order given (newest secret first by convention)."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0:
        raise ValueError(f"timestamp must be non-negative unix seconds, got {timestamp!r}")
    if not _MSG_ID.fullmatch(msg_id):
        raise ValueError("msg_id must be 1-256 printable ASCII characters without spaces (a header value)")
    return " ".join(
        "v1," + base64.b64encode(_mac(key, msg_id, timestamp, body)).decode("ascii") for key in _keys(secret)
    )


def signing_headers(
    secret: SecretLike | Sequence[SecretLike], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for one send."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        for k, v in headers.items():  # plain dicts are case-sensitive; HTTP headers are not
            if k.lower() == name:
                value = v
                break
    if value is None or not value.strip():
        raise MissingHeader(name)
    return value.strip()


def _signatures(header: str) -> list[bytes]:
    entries = header.split()
    if len(entries) > _MAX_SIGNATURES:
        raise MalformedHeader("webhook-signature", f"more than {_MAX_SIGNATURES} signatures")
    found: list[bytes] = []
    for entry in entries:
        version, sep, value = entry.partition(",")
        if not sep:
            raise MalformedHeader("webhook-signature", "expected space-separated <version>,<signature>")
        if version != "v1":
            continue  # other schemes (v1a: asymmetric) are allowed alongside and ignored here
        if not _B64.fullmatch(value):
            raise MalformedHeader("webhook-signature", "v1 signature is not base64")
        try:
            found.append(base64.b64decode(value, validate=True))
        except binascii.Error as exc:
            raise MalformedHeader("webhook-signature", "v1 signature is not base64") from exc
    if not found:
        raise MalformedHeader("webhook-signature", "no v1 signature")
    return found


def verify(
    secret_or_secrets: SecretLike | Sequence[SecretLike],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | float,
    tolerance: float = 300.0,
) -> Verified:
    """Check a received webhook; return its id and timestamp or raise a
    :class:`WebhookVerificationError` subclass. Any of several secrets may match (rotation).
    ``now`` is a datetime or unix seconds; timestamps further than ``tolerance`` seconds from
    it either way are rejected (replay protection)."""
    keys = _keys(secret_or_secrets)
    msg_id = _header(headers, "webhook-id")
    raw_ts = _header(headers, "webhook-timestamp")
    given = _signatures(_header(headers, "webhook-signature"))
    if not _TIMESTAMP.fullmatch(raw_ts):
        raise MalformedHeader("webhook-timestamp", "expected integer unix seconds")
    timestamp = int(raw_ts)
    now_s = now.timestamp() if isinstance(now, datetime) else float(now)
    if timestamp < now_s - tolerance:
        raise StaleTimestamp(f"webhook-timestamp {timestamp} is more than {tolerance:g}s in the past")
    if timestamp > now_s + tolerance:
        raise FutureTimestamp(f"webhook-timestamp {timestamp} is more than {tolerance:g}s in the future")
    matched = False
    for key in keys:
        expected = _mac(key, msg_id, raw_ts, body)  # the header as sent, leading zeros and all
        for sig in given:
            # compare every pair (no early exit) so timing reveals nothing about which one matched
            matched |= hmac.compare_digest(expected, sig)
    if not matched:
        raise NoMatchingSignature("no webhook-signature matches any active secret")
    return Verified(msg_id, timestamp)
