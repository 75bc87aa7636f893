"""Twilio's request signature (``X-Twilio-Signature``) on status callbacks. Pure.

Base64 of HMAC-SHA1, keyed with the account's auth token, over the full callback URL followed by
every POST parameter name and value, sorted by name (Twilio, "Webhooks security").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

__all__ = ["twilio_signature", "verify_twilio"]


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    payload = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(auth_token: str, url: str, params: Mapping[str, str], signature: str | None) -> bool:
    """Whether ``signature`` is Twilio's for this request (constant-time comparison)."""
    if not signature:
        return False
    return hmac.compare_digest(twilio_signature(auth_token, url, params), signature)
