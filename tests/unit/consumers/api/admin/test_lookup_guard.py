"""What counts as one client for failed key lookups, and which key ids stay admitted past the limit."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from consumers.api.admin.lookup_guard import LookupGuard, client_bucket


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_ipv6_addresses_in_one_64_are_one_client(prefix: int, a: int, b: int) -> None:
    one = ipaddress.IPv6Address((prefix << 64) | a)
    other = ipaddress.IPv6Address((prefix << 64) | b)
    assert client_bucket(str(one)) == client_bucket(str(other)).lower()
    if one.ipv4_mapped is None:
        assert client_bucket(str(one)).endswith("/64")


def test_addresses_in_other_64s_and_ipv4_are_told_apart() -> None:
    assert client_bucket("2001:db8:0:1::1") != client_bucket("2001:db8:0:2::1")
    assert client_bucket("2001:db8::1") == client_bucket("2001:DB8::ffff:1") == "2001:db8::/64"
    assert client_bucket("10.0.0.1") != client_bucket("10.0.0.2")
    assert client_bucket("::ffff:10.0.0.1") == "10.0.0.1"
    assert client_bucket(None) == client_bucket("") == "unknown"
    assert client_bucket("testclient") == "testclient"


def test_verified_key_ids_are_remembered_for_a_while_and_in_a_bounded_number() -> None:
    now = [0.0]
    guard = LookupGuard(None, remember=2, remember_s=100.0, monotonic=lambda: now[0])
    guard.verified("a")
    guard.verified("b")
    assert guard.recently_verified("a") and not guard.recently_verified("c")
    guard.verified("a")  # used again: now the most recent
    guard.verified("c")  # pushes out b, the least recently verified
    assert guard.recently_verified("a") and guard.recently_verified("c")
    assert not guard.recently_verified("b")
    now[0] = 100.0
    assert not guard.recently_verified("a")
