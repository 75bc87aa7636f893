"""Operator authentication for the console: who may open a session, sessions, CSRF.

An operator proves who they are once, with an ``admin``-scoped service API key or a one-time login
link, and gets a session cookie (``HttpOnly``, ``SameSite=Strict``, ``Secure`` except on localhost
over plain http; named ``__Host-…`` when Secure, so no subdomain can plant it). The key itself never
reaches JavaScript or a cookie. Every state-changing form carries the session's CSRF token, checked
in constant time; a POST whose ``Origin`` is another site is refused before that.

Only SHA-256 digests of session tokens and login links are stored: both are 256 random bits, so a
fast hash is enough and a copy of the table opens nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

import asyncpg

__all__ = [
    "LoginLinks",
    "Operator",
    "OperatorVerifier",
    "Session",
    "SessionStore",
    "Verifiers",
    "cookie_name",
    "csrf_matches",
    "digest",
    "same_origin",
    "use_secure_cookie",
]

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


@dataclass(frozen=True, slots=True)
class Operator:
    """Who is behind a session: ``key:<id> (<name>)`` or ``link:<label>``; audit records name it."""

    name: str
    key_id: str | None = None  # the admin key that logged in: its revocation ends the session


class OperatorVerifier(Protocol):
    """Turns a presented credential into an operator allowed in the console, or None."""

    async def verify(self, credential: str) -> Operator | None: ...


# -- pure decisions ------------------------------------------------------------------------------
def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def use_secure_cookie(mode: str, host: str, scheme: str) -> bool:
    """``always``/``never``, or ``auto``: Secure unless the console is reached on localhost over http
    (a browser drops a Secure cookie set over plain http, so local development would not log in)."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]", maxsplit=1)[0] + "]"
    return not (scheme == "http" and hostname.lower() in _LOCAL_HOSTS)


def cookie_name(secure: bool) -> str:
    return "__Host-herald_console" if secure else "herald_console"


def csrf_matches(expected: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(expected.encode(), (presented or "").encode())


def same_origin(origin: str | None, host: str) -> bool:
    """A missing Origin passes (old clients; the CSRF token still decides); a foreign one does not."""
    if origin is None:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


# -- sessions ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Session:
    operator: Operator
    csrf_token: str
    expires_at: datetime


class SessionStore:
    def __init__(self, pool: asyncpg.Pool, ttl_s: float) -> None:
        self.pool = pool
        self.ttl = timedelta(seconds=ttl_s)

    async def open(self, operator: Operator, now: datetime) -> tuple[str, Session]:
        """A new session: (the cookie's token, the session)."""
        token = secrets.token_urlsafe(32)
        session = Session(operator, secrets.token_urlsafe(32), now + self.ttl)
        await self.pool.execute(
            "INSERT INTO herald_console_sessions (token_hash, operator, csrf_token, created_at, expires_at, key_id) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            digest(token),
            operator.name,
            session.csrf_token,
            now,
            session.expires_at,
            operator.key_id,
        )
        await self.pool.execute("DELETE FROM herald_console_sessions WHERE expires_at < $1", now)
        return token, session

    async def get(self, token: str | None, now: datetime) -> Session | None:
        if not token or len(token) > 200:
            return None
        # A session opened with an admin key lasts only while the key does: `herald keys revoke`
        # ends it at the next request (read here, not through the key store's cache). A session
        # a previous-version process opened after migration 277 has no key_id: its key is read
        # from the operator text, as the migration did for older ones ("key:<id> (<name>)").
        row = await self.pool.fetchrow(
            "SELECT s.operator, s.key_id, s.csrf_token, s.expires_at FROM ("
            "SELECT operator, csrf_token, expires_at, token_hash, "
            "COALESCE(key_id, substring(operator FROM '^key:([0-9a-f]+) ')) AS key_id "
            "FROM herald_console_sessions) s "
            "WHERE s.token_hash = $1 AND s.expires_at > $2 AND (s.key_id IS NULL OR EXISTS ("
            "SELECT 1 FROM herald_api_keys k WHERE k.key_id = s.key_id AND k.revoked_at IS NULL))",
            digest(token),
            now,
        )
        if row is None:
            return None
        return Session(Operator(row["operator"], row["key_id"]), row["csrf_token"], row["expires_at"])

    async def close(self, token: str | None) -> None:
        if token:
            await self.pool.execute(
                "DELETE FROM herald_console_sessions WHERE token_hash = $1", digest(token)
            )


class LoginLinks:
    """One-time login links: made by ``herald console login-link`` (and ``herald dev``), good once."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, label: str, now: datetime, ttl_s: float) -> str:
        token = "hcl_" + secrets.token_urlsafe(32)
        await self.pool.execute(
            "INSERT INTO herald_console_logins (token_hash, label, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            digest(token),
            label,
            now,
            now + timedelta(seconds=ttl_s),
        )
        return token

    async def consume(self, token: str, now: datetime) -> Operator | None:
        """The link's operator, once: the row is marked used in the same statement that reads it."""
        if not token.startswith("hcl_") or len(token) > 200:
            return None
        label = await self.pool.fetchval(
            "UPDATE herald_console_logins SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL "
            "AND expires_at > $2 RETURNING label",
            digest(token),
            now,
        )
        return Operator(f"link:{label}") if label is not None else None


@dataclass
class Verifiers:
    """What the login form accepts: a one-time link always; an admin API key when a key verifier is
    configured (the API keys' store, :mod:`consumers.console.operator_keys`)."""

    links: LoginLinks
    keys: OperatorVerifier | None = None

    async def verify(self, credential: str, now: datetime) -> Operator | None:
        credential = credential.strip()
        if credential.startswith("hcl_"):
            return await self.links.consume(credential, now)
        if self.keys is not None and credential.startswith("hrk_"):
            return await self.keys.verify(credential)
        return None  # a user's JWT, a non-key, an unknown credential: nothing
