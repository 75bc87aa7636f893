"""Single-use stream tickets: how a browser's ``EventSource`` authenticates without a header.

``EventSource`` cannot send ``Authorization``, and a bearer token in a URL ends up in access
logs and browser history. So the page trades its token (in a header, on a normal ``fetch``) for
a ticket: 32 random bytes, bound to the user, valid for ``stream_ticket_ttl_s`` (a minute) and
consumed by the first stream that presents it (Redis ``GETDEL``, atomic). The ticket carries the
token's expiry, so the stream it opens ends when the token would have stopped working. Only a digest of the
ticket is stored, so a Redis dump holds nothing a client could replay.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from schemas.errors import DependencyUnavailable

__all__ = ["StreamTickets", "TicketStoreDown", "Ticketholder"]


class TicketStoreDown(DependencyUnavailable):
    """Redis did not answer: tickets can be neither minted nor redeemed (fail closed: it is auth)."""


@dataclass(frozen=True, slots=True)
class Ticketholder:
    user_id: str
    tenant: str
    valid_until: float | None  # epoch seconds; None: a ticket minted before tickets carried it


class StreamTickets:
    def __init__(self, redis: redis_asyncio.Redis, *, ttl_s: int, prefix: str) -> None:
        self._redis = redis
        self.ttl_s = ttl_s
        self._prefix = prefix

    def _key(self, ticket: str) -> str:
        return f"{self._prefix}:{hashlib.sha256(ticket.encode()).hexdigest()}"

    async def mint(self, user_id: str, tenant: str = "", valid_until: float | None = None) -> str:
        ticket = secrets.token_urlsafe(32)
        value = json.dumps([tenant, user_id, valid_until])
        try:
            await self._redis.set(self._key(ticket), value, ex=self.ttl_s, nx=True)
        except RedisError as exc:
            raise TicketStoreDown("stream tickets unavailable") from exc  # the cause names the host
        return ticket

    async def redeem(self, ticket: str) -> Ticketholder | None:
        """Who the ticket was minted for, once; ``None`` for an unknown, expired or already used ticket."""
        try:
            user = await self._redis.getdel(self._key(ticket))
        except RedisError as exc:
            raise TicketStoreDown("stream tickets unavailable") from exc
        if user is None:
            return None
        tenant, user_id, *rest = json.loads(user)
        valid_until = float(rest[0]) if rest and rest[0] is not None else None
        return Ticketholder(str(user_id), str(tenant), valid_until)
