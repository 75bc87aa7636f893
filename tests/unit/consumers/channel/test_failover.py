"""Which providers a message may use, and how an answer counts: pure functions, as tables."""

from __future__ import annotations

import pytest

from channels.base import Outcome
from consumers.channel.breaker import Result
from consumers.channel.failover import breaker_result, chain_providers, fails_over, provider_chain
from consumers.infra.provider_settings import ProvidersSettings
from schemas.models import Channel, Lane, Tier

ROUTES = ProvidersSettings(
    email=["ses", "smtp"],
    sms=["sns", "twilio"],
    by_lane={Lane.BULK: {Channel.EMAIL: ["smtp"]}},
    by_tier={Tier.CRITICAL: {Channel.SMS: ["twilio", "sns"], Channel.EMAIL: ["ses", "smtp"]}},
)


@pytest.mark.parametrize(
    ("channel", "tier", "lane", "chain"),
    [
        (Channel.EMAIL, Tier.HIGH, Lane.PRIORITY, ("ses", "smtp")),
        (Channel.EMAIL, Tier.LOW, Lane.BULK, ("smtp",)),  # the lane's route
        (Channel.EMAIL, Tier.CRITICAL, Lane.BULK, ("ses", "smtp")),  # a tier route wins over the lane's
        (Channel.SMS, Tier.CRITICAL, Lane.PRIORITY, ("twilio", "sns")),
        (Channel.SMS, Tier.HIGH, Lane.BULK, ("sns", "twilio")),  # no bulk route for sms: the default
    ],
)
def test_provider_chain(channel: Channel, tier: Tier, lane: Lane, chain: tuple[str, ...]) -> None:
    assert provider_chain(ROUTES, channel, tier, lane) == chain


def test_a_process_builds_every_provider_any_tier_may_use() -> None:
    assert chain_providers(ROUTES, Channel.EMAIL, Lane.BULK) == ("smtp", "ses")
    assert chain_providers(ROUTES, Channel.SMS, Lane.PRIORITY) == ("sns", "twilio")
    assert chain_providers(ProvidersSettings(), Channel.EMAIL, Lane.PRIORITY) == ("ses",)


@pytest.mark.parametrize(
    ("outcome", "result", "next_provider"),
    [
        (Outcome.sent("ses", "id"), Result.SUCCESS, False),
        (Outcome("failed_permanent", "ses", reason="invalid_address"), Result.PERMANENT, False),
        (Outcome("failed_retryable", "ses", reason="provider_serviceunavailable"), Result.RETRYABLE, True),
        (Outcome("failed_retryable", "smtp", reason="provider_auth"), Result.RETRYABLE, True),
        # it may have been accepted: no second provider, the retry path resends with the same key
        (Outcome("failed_retryable", "ses", reason="provider_timeout"), Result.RETRYABLE, False),
        # a tenant's sender refused here may be verified at the next provider; one tenant's setup
        # counts neither against the breaker every tenant shares nor for it
        (Outcome("failed_retryable", "smtp", reason="tenant_sender_config"), Result.IGNORED, True),
        (Outcome("failed_retryable", "ses", reason="tenant_sender_config"), Result.IGNORED, True),
        (Outcome("failed_permanent", "smtp", reason="rejected"), Result.PERMANENT, False),
    ],
)
def test_how_an_answer_counts(outcome: Outcome, result: Result, next_provider: bool) -> None:
    assert breaker_result(outcome) is result
    assert fails_over(outcome) is next_provider
