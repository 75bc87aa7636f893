"""Cookie, origin and CSRF decisions of the console (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.console.auth import cookie_name, csrf_matches, same_origin, use_secure_cookie


@pytest.mark.parametrize(
    ("mode", "host", "scheme", "secure"),
    [
        ("auto", "127.0.0.1:8080", "http", False),
        ("auto", "localhost:8080", "http", False),
        ("auto", "[::1]:8080", "http", False),
        ("auto", "LOCALHOST", "http", False),
        ("auto", "127.0.0.1:8080", "https", True),
        ("auto", "herald.internal:8080", "http", True),  # behind a TLS proxy: the browser sees https
        ("auto", "localhost.evil.com", "http", True),
        ("always", "127.0.0.1", "http", True),
        ("never", "herald.example.com", "https", False),
    ],
)
def test_secure_cookie(mode: str, host: str, scheme: str, secure: bool) -> None:
    assert use_secure_cookie(mode, host, scheme) is secure
    assert cookie_name(secure).startswith("__Host-") is secure


@pytest.mark.parametrize(
    ("origin", "host", "ok"),
    [
        (None, "h:1", True),
        ("http://h:1", "h:1", True),
        ("https://H:1", "h:1", True),
        ("http://h:2", "h:1", False),
        ("https://evil.example", "h:1", False),
        ("null", "h:1", False),
    ],
)
def test_same_origin(origin: str | None, host: str, ok: bool) -> None:
    assert same_origin(origin, host) is ok


@given(st.text(min_size=1), st.text())
def test_csrf_matches_only_the_same_token(expected: str, presented: str) -> None:
    assert csrf_matches(expected, presented) is (expected == presented)
    assert (
        csrf_matches(expected, expected)
        and not csrf_matches(expected, None)
        and not csrf_matches(expected, "")
    )
