"""TwilioSettings.options: what the adapter sends with, or which variable is missing."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from channels.sms.twilio_settings import TwilioOptions, TwilioSettings
from schemas.errors import ConfigurationError


def test_options_carry_the_account_and_sender() -> None:
    settings = TwilioSettings(account_sid="AC1", auth_token=SecretStr("tok"), messaging_service_sid="MG1")
    assert settings.options(max_segments=2) == TwilioOptions(
        account_sid="AC1", auth_token="tok", messaging_service_sid="MG1", max_segments=2
    )


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"auth_token": SecretStr("tok"), "from_number": "+15550100"}, "ACCOUNT_SID"),
        ({"account_sid": "AC1", "from_number": "+15550100"}, "AUTH_TOKEN"),
        ({"account_sid": "AC1", "auth_token": SecretStr("tok")}, "FROM_NUMBER"),
    ],
)
def test_a_missing_account_or_sender_names_the_variable(fields: dict[str, object], missing: str) -> None:
    with pytest.raises(ConfigurationError, match=missing):
        TwilioSettings.model_validate(fields).options(max_segments=3)
