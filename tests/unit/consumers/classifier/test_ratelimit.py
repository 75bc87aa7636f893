"""The pure rate-limit policy: limits per tier, bucket keys, what to do when Redis is down."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from consumers.classifier.ratelimit import LimiterDown, bucket_key, limit_for, on_limiter_down
from consumers.infra.settings import ClassifierSettings
from schemas.models import Channel, Tier

LIMITS = {"critical": 1, "high": 30, "medium": 20, "low": 3, "system": 0}


@pytest.mark.parametrize(
    ("tier", "expected"),
    [(Tier.CRITICAL, None), (Tier.HIGH, 30), (Tier.MEDIUM, 20), (Tier.LOW, 3), (Tier.SYSTEM, None)],
)
def test_limit_per_tier(tier: Tier, expected: int | None) -> None:
    assert limit_for(tier, LIMITS) == expected


def test_critical_is_exempt_even_when_configured_and_missing_entries_are_unlimited() -> None:
    assert limit_for(Tier.CRITICAL, {"critical": 1}) is None
    assert limit_for(Tier.HIGH, {}) is None


def test_default_limits_cover_every_limited_tier() -> None:
    limits = {str(t): n for t, n in ClassifierSettings().rate_limits_per_hour.items()}
    assert all(limit_for(t, limits) for t in (Tier.HIGH, Tier.MEDIUM, Tier.LOW))


@pytest.mark.parametrize(
    "bad",
    [
        {"rate_limits_per_hour": {"meduim": 3}},
        {"quiet_hours_channels": ["fax"]},
        {"defer_tiers_when_limiter_down": ["lowest"]},
    ],
)
def test_settings_reject_unknown_tiers_and_channels(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ClassifierSettings(**bad)


def test_settings_from_the_environment_shape() -> None:
    s = ClassifierSettings.model_validate(
        {
            "rate_limits_per_hour": {"low": 5},
            "quiet_hours_channels": ["push"],
            "defer_tiers_when_limiter_down": [],
        }
    )
    assert s.rate_limits_per_hour == {Tier.LOW: 5} and s.quiet_hours_channels == [Channel.PUSH]


@pytest.mark.parametrize(
    ("tier", "defer_tiers", "expected"),
    [
        (Tier.CRITICAL, ["critical", "high", "low"], LimiterDown.ALLOW),  # must flow, whatever is configured
        (Tier.HIGH, ["critical", "high", "low"], LimiterDown.ALLOW),
        (Tier.MEDIUM, ["low"], LimiterDown.ALLOW),
        (Tier.MEDIUM, ["medium", "low"], LimiterDown.DEFER),
        (Tier.LOW, ["low"], LimiterDown.DEFER),
        (Tier.LOW, [], LimiterDown.ALLOW),
        (Tier.SYSTEM, ["low"], LimiterDown.ALLOW),
    ],
)
def test_redis_down_policy(tier: Tier, defer_tiers: list[str], expected: LimiterDown) -> None:
    assert on_limiter_down(tier, defer_tiers) is expected


def test_buckets_are_per_user_channel_and_clock_hour() -> None:
    t = datetime(2025, 5, 1, 10, 0, 0, tzinfo=UTC)
    same_hour = datetime(2025, 5, 1, 10, 59, 59, tzinfo=UTC)
    next_hour = datetime(2025, 5, 1, 11, 0, 0, tzinfo=UTC)
    k = bucket_key("rl", "u1", Channel.EMAIL, t)
    assert k == bucket_key("rl", "u1", Channel.EMAIL, same_hour)
    assert (
        len(
            {
                k,
                bucket_key("rl", "u1", Channel.EMAIL, next_hour),
                bucket_key("rl", "u2", Channel.EMAIL, t),
                bucket_key("rl", "u1", Channel.PUSH, t),
                bucket_key("rl", "u1", Channel.EMAIL, t, "acme"),  # the same id in another tenant
                bucket_key("rl", "acme:u1", Channel.EMAIL, t),
                bucket_key("rl", "u1", Channel.EMAIL, t, "acme:x"),
            }
        )
        == 7
    )
    assert bucket_key("rl", "u1", Channel.EMAIL, t, "") == k  # the default tenant's keys are unchanged
