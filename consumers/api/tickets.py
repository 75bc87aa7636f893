"""Single-use stream tickets: how a browser's ``EventSource`` authenticates without a header.

``EventSource`` cannot send ``Authorization``, and a bearer token in a URL ends up in access
logs and browser history. So the page trades its token (in a header, on a normal ``fetch``) for
a ticket: 32 random bytes, bound to the user, valid for ``stream_ticket_ttl_s`` (a minute) and
consumed by the first stream that presents it (Redis ``GETDEL``, atomic). Only a digest of the
ticket is stored, so a Redis dump holds nothing a client could replay.
"""

from __future__ import annotations

import hashlib
import json
import secrets

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from schemas.errors import DependencyUnavailable

__all__ = ["StreamTickets", "TicketStoreDown"]


class TicketStoreDown(DependencyUnavailable):
    """Redis did not answer: tickets can be neither minted nor redeemed (fail closed: it is auth)."""


class StreamTickets:
    def __init__(self, redis: redis_asyncio.Redis, *, ttl_s: int, prefix: str) -> None:
        self._redis = redis
        self.ttl_s = ttl_s
        self._prefix = prefix

    def _key(self, ticket: str) -> str:
        return f"{self._prefix}:{hashlib.sha256(ticket.encode()).hexdigest()}"

    async def mint(self, user_id: str, tenant: str = "") -> str:
        ticket = secrets.token_urlsafe(32)
        try:
            await self._redis.set(self._key(ticket), json.dumps([tenant, user_id]), ex=self.ttl_s, nx=True)
        except RedisError as exc:
            raise TicketStoreDown(f"stream tickets unavailable: {exc}") from exc
        return ticket

    async def redeem(self, ticket: str) -> tuple[str, str] | None:
        """The ticket's (user, tenant), once; ``None`` for an unknown, expired or already used ticket."""
        try:
            user = await self._redis.getdel(self._key(ticket))
        except RedisError as exc:
            raise TicketStoreDown(f"stream tickets unavailable: {exc}") from exc
        if user is None:
            return None
        tenant, user_id = json.loads(user)
        return str(user_id), str(tenant)
