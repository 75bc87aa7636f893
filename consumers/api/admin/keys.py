"""Service API keys, the pure half: their format, their hash and what their scopes allow.

A key reads ``hrk_<key id>_<secret>``: the key id (12 hex digits) is public and finds the row;
the secret (32 random bytes, base64url) is shown once and only its HMAC-SHA256 under a server
pepper is stored. A keyed fast hash, not a slow one: the secret is 256 random bits, so
guessing it is hopeless however fast the hash, while a slow hash (bcrypt, scrypt) would cost
tens of milliseconds of CPU on every request; the pepper (a setting, never in the database)
makes a stolen table useless on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "KEY_PREFIX",
    "NewKey",
    "Scope",
    "allows",
    "hash_secret",
    "looks_like_key",
    "new_key",
    "parse_key",
    "parse_scopes",
]

KEY_PREFIX = "hrk_"
_KEY_RE = re.compile(r"^hrk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


class Scope(StrEnum):
    EMIT = "emit"
    RECIPIENTS_READ = "recipients:read"
    RECIPIENTS_WRITE = "recipients:write"
    TOPICS_WRITE = "topics:write"
    ADMIN = "admin"


# A scope that implies another: writing recipients includes reading them; admin is everything.
_IMPLIES: dict[Scope, frozenset[Scope]] = {
    Scope.RECIPIENTS_WRITE: frozenset({Scope.RECIPIENTS_READ}),
    Scope.ADMIN: frozenset(Scope),
}


def allows(granted: Iterable[str], needed: Scope) -> bool:
    """Whether keys with ``granted`` scopes may do what ``needed`` guards (unknown names grant nothing)."""
    for name in granted:
        try:
            scope = Scope(name)
        except ValueError:
            continue
        if scope is needed or needed in _IMPLIES.get(scope, frozenset()):
            return True
    return False


def parse_scopes(text: str) -> tuple[Scope, ...]:
    """``"emit,recipients:write"`` → scopes; ValueError naming the unknown one and the valid ones."""
    out: list[Scope] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            scope = Scope(part)
        except ValueError:
            raise ValueError(f"unknown scope {part!r}; one of {', '.join(s.value for s in Scope)}") from None
        if scope not in out:
            out.append(scope)
    if not out:
        raise ValueError("at least one scope is needed")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    secret: str
    token: str  # what the caller sends: shown once, never stored


def new_key(random_bytes: Callable[[int], bytes]) -> NewKey:
    """A fresh key from ``random_bytes`` (``secrets.token_bytes`` in production)."""
    key_id = random_bytes(6).hex()
    secret = base64.urlsafe_b64encode(random_bytes(32)).rstrip(b"=").decode()
    return NewKey(key_id, secret, f"{KEY_PREFIX}{key_id}_{secret}")


def looks_like_key(token: str) -> bool:
    """Whether a bearer credential is meant as an API key (so user routes can say so)."""
    return token.startswith(KEY_PREFIX)


def parse_key(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    m = _KEY_RE.match(token)
    return (m.group(1), m.group(2)) if m else None


def hash_secret(pepper: bytes, secret: str) -> bytes:
    return hmac.new(pepper, secret.encode(), hashlib.sha256).digest()
