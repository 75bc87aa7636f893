"""The channel process refuses a delivery ledger that forgets a key before its last retry."""

from __future__ import annotations

import pytest

from consumers.channel.process import _check_ledger_ttl
from consumers.infra.settings import ChannelConsumerSettings, FallbackSettings, HeraldSettings
from schemas.errors import ConfigurationError

WEBHOOK = [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]  # 99,305 s


def _settings(ttl_s: int) -> HeraldSettings:
    return HeraldSettings(
        channel=ChannelConsumerSettings(ledger_ttl_s=ttl_s),
        fallback=FallbackSettings(retry_schedules_s={"webhook": WEBHOOK}, retry_jitter=0.2),
    )


def test_the_ledger_outlives_the_longest_retry_run() -> None:
    # Sends not attempted go on until the later of 99,305 s x 1.2 (119,166 s) and the unattempted
    # max age (a day); the last one planned then waits at most 36,000 s, and a real try per step
    # (7) may follow, each waiting at most 36,000 s: 407,166 s.
    _check_ledger_ttl(_settings(407_166))
    with pytest.raises(ConfigurationError, match="407166 s"):
        _check_ledger_ttl(_settings(407_165))
    with pytest.raises(ConfigurationError):
        _check_ledger_ttl(_settings(155_166))  # the schedule's time and a step: not enough


def test_the_defaults_pass() -> None:
    _check_ledger_ttl(HeraldSettings())
