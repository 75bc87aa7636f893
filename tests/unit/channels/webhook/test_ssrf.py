"""The SSRF policy: every refused class of address, IPv4 and IPv6, and the allow-list."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import httpcore
import pytest

from channels.webhook.ssrf import (
    AddressPolicy,
    BlockedDestination,
    GuardedBackend,
    Resolver,
    check_url,
    refusal,
)

REFUSED = [
    # IPv4
    ("0.0.0.0", "unspecified"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.0.1", "link_local"),
    ("169.254.169.254", "metadata"),
    ("169.254.170.2", "metadata"),
    ("100.100.100.200", "metadata"),
    ("168.63.129.16", "metadata"),
    ("100.64.0.1", "cgnat"),
    ("100.127.255.254", "cgnat"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),  # limited broadcast
    ("192.0.2.10", "private"),  # TEST-NET-1 (documentation)
    ("198.18.0.1", "private"),  # benchmarking
    ("0.1.2.3", "private"),  # "this network"
    # IPv6
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fe80::1", "link_local"),
    ("fe80::1%eth0", "link_local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fd00:ec2::254", "metadata"),
    ("ff02::1", "multicast"),
    ("ff05::2", "multicast"),
    ("fec0::1", "reserved"),  # deprecated site-local
    ("2001:db8::1", "private"),  # documentation
    ("100::1", "reserved"),  # discard-only
    # IPv4 inside IPv6
    ("::ffff:127.0.0.1", "ipv4_mapped"),
    ("::ffff:169.254.169.254", "ipv4_mapped"),
    ("::ffff:8.8.8.8", "ipv4_mapped"),  # mapped form refused outright, even for a public address
    ("::ffff:10.0.0.1", "ipv4_mapped"),
    ("64:ff9b::a00:1", "embedded_ipv4:private"),  # NAT64 of 10.0.0.1
    ("64:ff9b::7f00:1", "embedded_ipv4:loopback"),
    ("64:ff9b::a9fe:a9fe", "embedded_ipv4:metadata"),
    ("2002:7f00:1::1", "embedded_ipv4:loopback"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::1", "embedded_ipv4:metadata"),
    ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible
]


@pytest.mark.parametrize(("ip", "reason"), REFUSED)
def test_refused(ip: str, reason: str) -> None:
    assert refusal(ip) == reason


@pytest.mark.parametrize(
    "ip",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_allowed(ip: str) -> None:
    assert refusal(ip) is None


def _allow(*items: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return AddressPolicy.from_strings(items).allow


@pytest.mark.parametrize(
    ("ip", "allow", "reason"),
    [
        ("127.0.0.1", ("127.0.0.1",), None),
        ("127.0.0.2", ("127.0.0.1",), "loopback"),
        ("10.1.2.3", ("10.0.0.0/8",), None),
        ("10.1.2.3", ("192.168.0.0/16",), "private"),
        ("::1", ("127.0.0.1",), "loopback"),  # families never cross
        ("::1", ("::1",), None),
        ("::ffff:127.0.0.1", ("127.0.0.1",), "ipv4_mapped"),  # allowing the v4 does not allow the mapped form
        ("64:ff9b::a00:1", ("10.0.0.0/8",), None),  # NAT64 judged by what it embeds
        # metadata addresses need the exact address, never a range
        ("169.254.169.254", ("169.254.0.0/16",), "metadata"),
        ("169.254.169.254", ("0.0.0.0/0",), "metadata"),
        ("169.254.169.254", ("169.254.169.254",), None),
        ("fd00:ec2::254", ("fd00::/8",), "metadata"),
    ],
)
def test_allow_list(ip: str, allow: tuple[str, ...], reason: str | None) -> None:
    assert refusal(ip, _allow(*allow)) == reason


@pytest.mark.parametrize(
    ("url", "https_only", "reason"),
    [
        ("ftp://example.com/x", False, "scheme"),
        ("file:///etc/passwd", False, "scheme"),
        ("gopher://example.com", False, "scheme"),
        ("example.com/hook", False, "scheme"),
        ("http://example.com/hook", True, "https_only"),
        ("https:///nohost", False, "invalid_url"),
        ("https://user:pw@example.com/", False, "invalid_url"),
        ("https://example.com:99999/", False, "invalid_url"),
    ],
)
def test_refused_urls(url: str, https_only: bool, reason: str) -> None:
    with pytest.raises(BlockedDestination) as info:
        check_url(url, https_only=https_only)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hooks.example.com/x?y=1", ("https", "hooks.example.com", 443)),
        ("http://hooks.example.com:8080/", ("http", "hooks.example.com", 8080)),
        ("HTTPS://[2606:4700::1]/", ("https", "2606:4700::1", 443)),
    ],
)
def test_accepted_urls(url: str, expected: tuple[str, str, int]) -> None:
    assert check_url(url) == expected


def _resolver(answers: dict[str, Sequence[str]], calls: list[str]) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return answers[host]

    return resolve


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        (["10.0.0.5"], "private"),
        (["93.184.216.34", "127.0.0.1"], "loopback"),  # one bad answer spoils the name
        (["::ffff:169.254.169.254"], "ipv4_mapped"),
        (["169.254.169.254"], "metadata"),
        (["fd00:ec2::254"], "metadata"),
    ],
)
async def test_backend_refuses_names_resolving_to_refused_addresses(answers: list[str], reason: str) -> None:
    calls: list[str] = []
    backend = GuardedBackend(AddressPolicy(), _resolver({"evil.test": answers}, calls))
    with pytest.raises(BlockedDestination) as info:
        await backend.connect_tcp("evil.test", 443, timeout=1)
    assert info.value.reason == reason
    assert calls == ["evil.test"]


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("169.254.169.254", "metadata"),
        ("0.0.0.0", "unspecified"),
    ],
)
async def test_backend_refuses_literals_without_dns(host: str, reason: str) -> None:
    calls: list[str] = []
    backend = GuardedBackend(AddressPolicy(), _resolver({}, calls))
    with pytest.raises(BlockedDestination) as info:
        await backend.connect_tcp(host, 80, timeout=1)
    assert info.value.reason == reason and calls == []


async def test_backend_resolution_failure_is_a_connect_error() -> None:
    async def broken(host: str, port: int) -> Sequence[str]:
        raise OSError("Name or service not known")

    with pytest.raises(httpcore.ConnectError):
        await GuardedBackend(AddressPolicy(), broken).connect_tcp("nowhere.test", 443, timeout=1)
    with pytest.raises(httpcore.ConnectError):
        await GuardedBackend(AddressPolicy(), _resolver({"empty.test": []}, [])).connect_tcp("empty.test", 1)


async def test_backend_never_opens_unix_sockets() -> None:
    with pytest.raises(BlockedDestination):
        await GuardedBackend(AddressPolicy()).connect_unix_socket("/var/run/docker.sock")
