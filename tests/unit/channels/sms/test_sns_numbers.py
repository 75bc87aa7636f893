"""SMS numbers: E.164 form, then a real country code and a length its plan allows (phonenumbers)."""

from __future__ import annotations

import pytest

from channels.sms.sns import phone_problem


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("+14155550199", None),
        ("+15555550100", None),  # fictional but of a possible length: SNS decides
        ("+4915112345678", None),
        ("+351912345678", None),
        ("+999999999999", "unknown country code"),
        ("+12345678", "too short for its country"),
        ("+1415555019912345", "not an E.164"),
        ("+35191234567890", "too long for its country"),
        ("4155550199", "not an E.164"),
    ],
)
def test_phone_numbers_need_a_real_country_code_and_length(number: str, problem: str | None) -> None:
    found = phone_problem(number)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found, found
