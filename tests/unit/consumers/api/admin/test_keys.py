"""Service API keys, pure: format, hash, scopes."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.api.admin.keys import Scope, allows, hash_secret, new_key, parse_key, parse_scopes


@given(st.binary(min_size=38, max_size=38))
def test_a_new_key_parses_back_to_its_id_and_secret(seed: bytes) -> None:
    chunks = iter([seed[:6], seed[6:]])
    key = new_key(lambda n: next(chunks))
    assert parse_key(key.token) == (key.key_id, key.secret)
    assert key.token.startswith("hrk_") and len(key.key_id) == 12


@pytest.mark.parametrize(
    "token", ["", "hrk_", "hrk_0123456789ab_short", "Bearer x", "hrk_XYZ456789abc_" + "a" * 43]
)
def test_malformed_keys_do_not_parse(token: str) -> None:
    assert parse_key(token) is None


def test_the_hash_depends_on_the_pepper_and_hides_the_secret() -> None:
    key = new_key(os.urandom)
    a, b = hash_secret(b"pepper-1", key.secret), hash_secret(b"pepper-2", key.secret)
    assert a != b and len(a) == 32 and key.secret.encode() not in a


@pytest.mark.parametrize(
    ("granted", "needed", "ok"),
    [
        (["emit"], Scope.EMIT, True),
        (["emit"], Scope.RECIPIENTS_READ, False),
        (["recipients:write"], Scope.RECIPIENTS_READ, True),
        (["recipients:read"], Scope.RECIPIENTS_WRITE, False),
        (["admin"], Scope.TOPICS_WRITE, True),
        (["topics:write"], Scope.EMIT, False),
        (["bogus", "emit"], Scope.EMIT, True),
        ([], Scope.EMIT, False),
    ],
)
def test_scopes(granted: list[str], needed: Scope, ok: bool) -> None:
    assert allows(granted, needed) is ok


def test_parse_scopes() -> None:
    assert parse_scopes("emit, recipients:write,emit") == (Scope.EMIT, Scope.RECIPIENTS_WRITE)
    with pytest.raises(ValueError, match="unknown scope 'email'"):
        parse_scopes("email")
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes(" , ")
