"""Single-use stream tickets: how a browser's ``EventSource`` authenticates without a header.

``EventSource`` cannot send ``Authorization``, and a bearer token in a URL ends up in access
logs and browser history. So the page trades its token (in a header, on a normal ``fetch``) for
a ticket: 32 random bytes, bound to the user, valid for ``stream_ticket_ttl_s`` (a minute) and
consumed by the first stream that presents it (Redis ``GETDEL``, atomic). The ticket carries the
token's expiry, so the stream it opens ends when the token would have stopped working. Only a digest of the
ticket is stored, so a Redis dump holds nothing a client could replay.

The ticket's value stays ``[tenant, user]``, the form API processes before the expiry unpack; the
expiry goes in a key of its own beside it (``<key>:until``), so during a rolling upgrade an old
process redeems a new process's ticket (its stream just does not end at the token's expiry)
instead of failing on a third element.
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
        key = self._key(ticket)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(key, json.dumps([tenant, user_id]), ex=self.ttl_s, nx=True)
                if valid_until is not None:
                    pipe.set(f"{key}:until", repr(float(valid_until)), ex=self.ttl_s)
                await pipe.execute()
        except RedisError as exc:
            raise TicketStoreDown("stream tickets unavailable") from exc  # the cause names the host
        return ticket

    async def redeem(self, ticket: str) -> Ticketholder | None:
        """Who the ticket was minted for, once; ``None`` for an unknown, expired or already used ticket."""
        key = self._key(ticket)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.getdel(key)
                pipe.getdel(f"{key}:until")
                user, until = await pipe.execute()
        except RedisError as exc:
            raise TicketStoreDown("stream tickets unavailable") from exc
        if user is None:
            return None
        # [tenant, user]; [tenant, user, until] from the processes that briefly stored it there
        tenant, user_id, *rest = json.loads(user)
        if until is None and rest and rest[0] is not None:
            until = rest[0]
        return Ticketholder(str(user_id), str(tenant), None if until is None else float(until))
