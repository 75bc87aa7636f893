"""Breaker state as the console reads it from Redis (pure parsing)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumers.channel.breaker import BreakerState, Circuit
from consumers.console.breakers import parse_breaker


def test_a_breaker_entry_becomes_a_view() -> None:
    raw = BreakerState(Circuit.OPEN, since=1_780_000_000.0, consecutive=5).to_json()
    view = parse_breaker("h", "h:breaker:email:ses", raw)
    assert view is not None
    assert (view.channel, view.provider, view.circuit, view.consecutive_failures) == (
        "email",
        "ses",
        "open",
        5,
    )
    assert view.since == datetime.fromtimestamp(1_780_000_000.0, UTC)
    assert parse_breaker("h", "h:breaker:sms:twilio", BreakerState().to_json()).since is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("other:breaker:email:ses", BreakerState().to_json()),  # another Herald's prefix
        ("h:breaker:email", BreakerState().to_json()),  # no provider
        ("h:breaker:email:ses", "not json"),
        ("h:breaker:email:ses", '{"circuit": "melted"}'),
        ("h:breaker:email:ses", '{"unknown": 1}'),
    ],
)
def test_anything_else_is_ignored(key: str, raw: str) -> None:
    assert parse_breaker("h", key, raw) is None
