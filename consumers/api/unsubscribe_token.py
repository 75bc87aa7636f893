"""Unsubscribe links: a signed, expiring token bound to one recipient and one category.

Pure: the secret and ``now`` are arguments. The token is ``<payload>.<signature>``, both
base64url without padding; the payload is compact JSON ``{"u": user, "c": category, "e": expiry}``
(Unix seconds) and the signature is HMAC-SHA256 over the payload's base64 text, compared in
constant time. Several secrets may verify (newest first) so the key can rotate while old links live.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.errors import RecordError

__all__ = ["BadUnsubscribeToken", "UnsubscribeClaim", "sign_unsubscribe", "verify_unsubscribe"]

MAX_TOKEN_CHARS = 1024


class BadUnsubscribeToken(RecordError):
    """The link is malformed, forged or expired; ``reason`` says which (safe to show)."""


@dataclass(frozen=True, slots=True)
class UnsubscribeClaim:
    user_id: str
    category: str
    expires_at: int
    tenant: str = ""  # '' = the default tenant


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _mac(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, payload.encode(), hashlib.sha256).digest()


def sign_unsubscribe(secret: bytes, user_id: str, category: str, expires_at: int, tenant: str = "") -> str:
    claims: dict[str, object] = {"u": user_id, "c": category, "e": expires_at}
    if tenant:  # absent for the default tenant: such links read as they did before tenants
        claims["t"] = tenant
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{payload}.{_b64(_mac(secret, payload))}"


def _claim(payload: str) -> UnsubscribeClaim:
    try:
        data = json.loads(_unb64(payload))
    except (ValueError, binascii.Error) as exc:
        raise BadUnsubscribeToken("not an unsubscribe link", reason="malformed") from exc
    if not isinstance(data, dict):
        raise BadUnsubscribeToken("not an unsubscribe link", reason="malformed")
    user, category, expiry, tenant = data.get("u"), data.get("c"), data.get("e"), data.get("t", "")
    if not (isinstance(user, str) and user and isinstance(category, str) and category):
        raise BadUnsubscribeToken("not an unsubscribe link", reason="malformed")
    if not isinstance(tenant, str):
        raise BadUnsubscribeToken("not an unsubscribe link", reason="malformed")
    if not isinstance(expiry, int) or isinstance(expiry, bool):
        raise BadUnsubscribeToken("not an unsubscribe link", reason="malformed")
    return UnsubscribeClaim(user, category, expiry, tenant)


def verify_unsubscribe(secrets: Sequence[bytes], token: str, *, now: int) -> UnsubscribeClaim:
    """The claim of a genuine, unexpired token; :class:`BadUnsubscribeToken` otherwise."""
    payload, dot, signature = token.partition(".")
    if len(token) > MAX_TOKEN_CHARS or not dot or not payload or not signature:
        raise BadUnsubscribeToken("not an unsubscribe link", reason="malformed")
    try:
        given = _unb64(signature)
    except (ValueError, binascii.Error) as exc:
        raise BadUnsubscribeToken("not an unsubscribe link", reason="malformed") from exc
    if not any(hmac.compare_digest(given, _mac(s, payload)) for s in secrets):
        raise BadUnsubscribeToken("this link was not issued by Herald", reason="bad_signature")
    claim = _claim(payload)
    if now >= claim.expires_at:
        raise BadUnsubscribeToken("this link has expired", reason="expired")
    return claim
