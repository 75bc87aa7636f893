"""SNS SMS pure parts: E.164, segment counting, SMSType, the error table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.base import FailureKind
from channels.sms.sns import classify, is_e164, segments, sms_type
from schemas.models import Lane, Tier

PERMANENT, RETRYABLE = FailureKind.PERMANENT, FailureKind.RETRYABLE


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("+15555550100", True),
        ("+351912345678", True),
        ("+491711234567", True),
        ("+123456789012345", True),  # 15 digits, the maximum
        ("+1234567890123456", False),  # 16
        ("15555550100", False),
        ("+05555550100", False),
        ("+1 555 555 0100", False),
        ("+1-555-555-0100", False),
        ("+", False),
        ("", False),
        ("+1555abc0100", False),
        ("+15555550100\n", False),
    ],
)
def test_e164(number: str, ok: bool) -> None:
    assert is_e164(number) is ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),
        ("a" * 307, ("GSM-7", 3)),
        ("€" * 80, ("GSM-7", 1)),  # extension characters cost two septets
        ("€" * 81, ("GSM-7", 2)),
        ("é" * 160, ("GSM-7", 1)),  # in the basic set
        ("ç" * 70, ("UCS-2", 1)),  # lowercase ç is not
        ("ç" * 71, ("UCS-2", 2)),
        ("ã" * 134, ("UCS-2", 2)),
        ("ã" * 135, ("UCS-2", 3)),
        ("😀" * 35, ("UCS-2", 1)),  # surrogate pairs: two units each
        ("😀" * 36, ("UCS-2", 2)),
        ("", ("GSM-7", 1)),
    ],
)
def test_segments(text: str, expected: tuple[str, int]) -> None:
    assert segments(text) == expected


@given(st.text(max_size=500))
def test_segments_never_undercount(text: str) -> None:
    encoding, count = segments(text)
    per = {"GSM-7": (160, 153), "UCS-2": (70, 67)}[encoding]
    units = (
        len(text.encode("utf-16-le")) // 2
        if encoding == "UCS-2"
        else len(text) + sum(c in "^{}\\[~]|€\f" for c in text)
    )
    assert count >= 1 and (units <= per[0] if count == 1 else units <= count * per[1])


@pytest.mark.parametrize(
    ("tier", "lane", "kind"),
    [
        (Tier.CRITICAL, Lane.PRIORITY, "Transactional"),
        (Tier.HIGH, Lane.PRIORITY, "Transactional"),
        (Tier.MEDIUM, Lane.PRIORITY, "Transactional"),
        (Tier.SYSTEM, Lane.PRIORITY, "Transactional"),
        (Tier.LOW, Lane.BULK, "Promotional"),
        (Tier.LOW, Lane.PRIORITY, "Promotional"),
        (Tier.MEDIUM, Lane.BULK, "Promotional"),
    ],
)
def test_sms_type(tier: Tier, lane: Lane, kind: str) -> None:
    assert sms_type(tier, lane) == kind


@pytest.mark.parametrize(
    ("code", "status", "verdict"),
    [
        ("InvalidParameter", 400, PERMANENT),
        ("InvalidParameterValue", 400, PERMANENT),
        ("OptedOut", 400, PERMANENT),
        ("AuthorizationError", 403, RETRYABLE),  # our IAM policy: provider_auth, the breaker opens
        ("InvalidClientTokenId", 403, RETRYABLE),
        ("Throttling", 400, RETRYABLE),
        ("Throttled", 400, RETRYABLE),
        ("KMSThrottling", 400, RETRYABLE),
        ("InternalError", 500, RETRYABLE),
        ("Unknown5xx", 502, RETRYABLE),
        ("Unknown4xx", 400, PERMANENT),
        ("Unknown", None, RETRYABLE),
    ],
)
def test_error_table(code: str, status: int | None, verdict: FailureKind) -> None:
    assert classify(code, status).kind == verdict


def test_refused_permissions_retry_as_provider_auth() -> None:
    assert classify("AuthorizationError", 403).outcome("sns", "AuthorizationError").reason == "provider_auth"
