"""How many failed credential checks one client may cause: admin API keys and console logins.

A random ``hrk_…`` id (or ``hcl_…`` login link) is never cached, so each one costs a PostgreSQL
lookup before any per-key rate limit can apply. Only checks that FAIL are counted, per client
address (an IPv6 address by its /64: one host is routinely given a whole /64, so it could rotate
through addresses otherwise). Over the limit a client's lookups are refused, except for key ids
this process verified recently: behind a proxy every client shares one address, and one
attacker's junk keys must not lock out every integration sharing it. Admitting a known key id
costs little even when the secret is wrong: its row is cached like any other for the key cache's
TTL, so it is at most one lookup per TTL per process.

There is no per-key limit, on purpose. A key's id is public (the console shows it) but its secret
is 256 random bits compared through HMAC-SHA256, so wrong secrets for a known id, from however many
addresses, never add up to a guess; each costs one HMAC on the cached row, not a lookup. A limit
per key would only hand whoever knows an id a way to lock its integration (or an operator's
console login) out by failing on purpose.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable

from consumers.api.ratelimit import RateDecision, RateLimiter

__all__ = ["LookupGuard", "client_bucket"]


def client_bucket(host: str | None) -> str:
    """Pure: what counts as one client: an IPv4 address as it is, an IPv6 address by its /64 (an
    IPv4-mapped one as its IPv4 address), anything else (a Unix socket, no peer) as itself."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class LookupGuard:
    """Counts failed credential checks per client (Redis, shared by the replicas; fails open) and
    remembers the key ids this process verified (in memory, at most ``remember`` of them)."""

    def __init__(
        self,
        limiter: RateLimiter | None,
        *,
        remember: int = 4096,
        remember_s: float = 3600.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = limiter  # None or a limit of 0: unbounded
        self._remember = remember
        self._remember_s = remember_s
        self._monotonic = monotonic
        self._verified: OrderedDict[str, float] = OrderedDict()  # key id → when it was last verified

    async def refusal(self, host: str | None, key_id: str | None) -> RateDecision | None:
        """Why a lookup for ``key_id`` (None: not a key, e.g. a login link) from ``host`` must not
        run, or None when it may: the client is under its limit, or the key id is known good."""
        if self.limiter is None or (key_id is not None and self.recently_verified(key_id)):
            return None
        decision = await self.limiter.peek(f"lookup:{client_bucket(host)}")
        return None if decision.allowed else decision

    async def failed(self, host: str | None) -> None:
        """A lookup found no matching credential: it counts against the client."""
        if self.limiter is not None:
            await self.limiter.hit(f"lookup:{client_bucket(host)}")

    def verified(self, key_id: str) -> None:
        self._verified[key_id] = self._monotonic()
        self._verified.move_to_end(key_id)
        while len(self._verified) > self._remember:
            self._verified.popitem(last=False)

    def recently_verified(self, key_id: str) -> bool:
        at = self._verified.get(key_id)
        return at is not None and self._monotonic() - at < self._remember_s
