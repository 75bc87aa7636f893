"""SSRF guard for outgoing webhooks: which addresses a subscriber's URL may reach, and a
connection path that connects to exactly the address that was checked.

Policy (pure, :func:`refusal`): loopback, private (RFC 1918, ULA), link-local, CGNAT
(100.64.0.0/10), multicast, reserved/special-purpose, unspecified and cloud-metadata
addresses are refused, in IPv4 and IPv6; IPv4-mapped IPv6 (``::ffff:a.b.c.d``) is refused
outright, and IPv6 forms that embed an IPv4 address (NAT64 ``64:ff9b::/96``, 6to4, Teredo)
are judged by the address they embed. An allow-list of IPs/CIDRs (settings) exempts
addresses; a cloud-metadata address is exempt only when listed as that single address.

Connection path (the "no DNS rebinding" part): :class:`GuardedBackend` is an httpcore
network backend. httpcore asks it for a TCP connection to (hostname, port); it resolves
the name **once**, checks every address, and opens the socket to the checked IP itself.
The request keeps its real URL, so the ``Host`` header, TLS SNI and certificate check use
the hostname, and the connection pool is keyed by hostname (two virtual hosts on one CDN
IP never share a TLS connection). :class:`GuardedTransport` is an httpx transport with that
backend. A refusal raises :class:`BlockedDestination`, which httpx lets through unmapped,
so the adapter classifies it as permanent rather than as a retryable connect error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

from schemas.errors import RecordError

__all__ = [
    "METADATA_ADDRESSES",
    "AddressPolicy",
    "BlockedDestination",
    "GuardedBackend",
    "GuardedTransport",
    "PerEndpointPool",
    "Resolver",
    "check_url",
    "refusal",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean instance metadata
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer (a public-looking address)
    )
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class BlockedDestination(RecordError):
    """The webhook URL may not be called (SSRF policy or https-only). Permanent."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}", reason=reason)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Allow-list (IPs/CIDRs) and https-only switch, parsed once from settings."""

    allow: tuple[IPNetwork, ...] = ()
    https_only: bool = False

    @classmethod
    def from_strings(cls, allow: Iterable[str], *, https_only: bool = False) -> AddressPolicy:
        return cls(tuple(ipaddress.ip_network(a.strip(), strict=False) for a in allow), https_only)


def _allowed(ip: IPAddress, allow: Sequence[IPNetwork], *, exact: bool) -> bool:
    for net in allow:
        if net.version != ip.version or ip not in net:
            continue
        if not exact or net.num_addresses == 1:
            return True
    return False


def _category(ip: IPAddress) -> str | None:
    # Order matters only for the reason reported; any hit refuses.
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "cgnat"
    if ip.is_reserved or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local):
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "reserved"  # the rest of the IANA special-purpose registries
    return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client address; the server half is public by construction
    return None


def refusal(ip: IPAddress | str, allow: Sequence[IPNetwork] = ()) -> str | None:
    """Why ``ip`` may not be called (``"loopback"``, ``"metadata"``, ...), or None if it may."""
    ip = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    if ip in METADATA_ADDRESSES:
        return None if _allowed(ip, allow, exact=True) else "metadata"
    if _allowed(ip, allow, exact=False):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return "ipv4_mapped"
        inner = _embedded_v4(ip)
        if inner is not None:
            reason = refusal(inner, allow)
            return None if reason is None else f"embedded_ipv4:{reason}"
    return _category(ip)


def check_url(url: str, *, https_only: bool = False) -> tuple[str, str, int]:
    """(scheme, host, port) of a webhook URL, or :class:`BlockedDestination` if its form is refused."""
    try:
        parts = urlsplit(url)
        port = parts.port
        httpx.URL(url)  # what delivery will parse: refuse here what it cannot (e.g. http://0177.0.0.1/)
    except (ValueError, httpx.InvalidURL) as exc:
        raise BlockedDestination("invalid_url", str(exc)) from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedDestination("scheme", f"only http and https URLs, got {scheme or 'none'!r}")
    if https_only and scheme != "https":
        raise BlockedDestination("https_only", "plain http endpoints are disabled (webhook.https_only)")
    if not parts.hostname:
        raise BlockedDestination("invalid_url", "no host in URL")
    if parts.username is not None or parts.password is not None:
        raise BlockedDestination("invalid_url", "credentials in the URL are not allowed; use the signature")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""(host, port) → IP address strings. Injectable so tests can play a rebinding DNS server."""


async def system_resolver(host: str, port: int) -> Sequence[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, checks every address, connects to the first checked one."""

    def __init__(
        self,
        policy: AddressPolicy,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def resolve(self, host: str, port: int, limit_s: float | None = None) -> str:
        """The IP to connect to for ``host``; raises BlockedDestination or httpcore.ConnectError."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            addresses: Sequence[str] = [str(literal)]
        else:
            try:
                async with asyncio.timeout(limit_s):
                    addresses = await self.resolver(host, port)
            except (OSError, TimeoutError) as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
            if not addresses:
                raise httpcore.ConnectError(f"{host} has no addresses")
        # Every answer must pass: a name answering both a public and a private address is refused.
        for address in addresses:
            reason = refusal(address, self.policy.allow)
            if reason is not None:
                raise BlockedDestination(reason, f"{host} resolves to {address}")
        return addresses[0]

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        ip = await self.resolve(host, port, timeout)
        return await self.inner.connect_tcp(
            ip, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedDestination("unix_socket", "webhooks are never sent over a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


_LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=16)


class PerEndpointPool(httpcore.AsyncConnectionPool):
    """One small httpcore pool per endpoint URL (scheme, host, port, path), behind one pool interface.

    httpcore assigns queued requests to connections with a scan over every connection of
    the pool, per request: with hundreds of connections in one pool that scan dominated
    the CPU of a webhook consumer. Per endpoint it covers a few connections, and one slow or
    busy endpoint can hold at most ``limits.max_connections`` sockets. (Endpoints sharing a
    host do not share connections: the price of that isolation is a few more handshakes.)
    At most ``max_pools`` pools are kept; past that, pools with no active connection are closed.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        limits: httpx.Limits,
        http2: bool,
        network_backend: httpcore.AsyncNetworkBackend,
        max_pools: int = 1024,
    ) -> None:
        super().__init__(ssl_context=ssl_context, max_connections=1, network_backend=network_backend)
        self._pool_args: dict[str, object] = {
            "ssl_context": ssl_context,
            "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry,
            "http1": True,
            "http2": http2,
            "network_backend": network_backend,
        }
        self.max_pools = max_pools
        self.pools: dict[tuple[bytes, bytes, int | None, bytes], httpcore.AsyncConnectionPool] = {}

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        key = (request.url.scheme, request.url.host, request.url.port, request.url.target)
        pool = self.pools.get(key)
        if pool is None:
            if len(self.pools) >= self.max_pools:
                await self._evict_idle()
            pool = self.pools[key] = httpcore.AsyncConnectionPool(**self._pool_args)  # type: ignore[arg-type]
        return await pool.handle_async_request(request)

    async def _evict_idle(self) -> None:
        for key, pool in list(self.pools.items()):
            if all(c.is_idle() or c.is_closed() for c in pool.connections):
                del self.pools[key]
                await pool.aclose()

    async def aclose(self) -> None:
        pools, self.pools = list(self.pools.values()), {}
        for pool in pools:
            await pool.aclose()
        await super().aclose()


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx transport whose every connection goes through :class:`GuardedBackend`.

    No proxies and no environment (``HTTP_PROXY`` would bypass the guard); the URL scheme
    and https-only rule are checked per request before any connection is made. ``limits``
    apply per endpoint URL (see :class:`PerEndpointPool`).
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver = system_resolver,
        limits: httpx.Limits = _LIMITS,
        max_pools: int = 1024,
        verify: ssl.SSLContext | bool = True,
        http2: bool = False,
    ) -> None:
        super().__init__(verify=verify, trust_env=False, limits=limits, http2=http2)
        self.policy = policy
        self.backend = GuardedBackend(policy, resolver)
        ssl_context = (
            verify
            if isinstance(verify, ssl.SSLContext)
            else httpx.create_ssl_context(verify=verify, trust_env=False)
        )
        # httpx takes no network_backend argument: replace the pool it built with ours.
        self._pool = PerEndpointPool(
            ssl_context=ssl_context,
            limits=limits,
            http2=http2,
            network_backend=self.backend,
            max_pools=max_pools,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        check_url(str(request.url), https_only=self.policy.https_only)
        return await super().handle_async_request(request)
