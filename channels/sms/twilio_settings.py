"""Twilio provider settings (``HERALD_TWILIO__*``), apart from the adapter: reading settings imports
no HTTP client (and, through the SNS helpers the adapter shares, no aioboto3)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field, SecretStr

from schemas.errors import ConfigurationError

__all__ = ["TwilioOptions", "TwilioSettings"]


@dataclass(frozen=True, slots=True)
class TwilioOptions:
    account_sid: str
    auth_token: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    status_callback_url: str | None = None
    max_segments: int = 3


class TwilioSettings(BaseModel, frozen=True):
    """The Twilio SMS provider (``twilio`` in ``HERALD_PROVIDERS__SMS``)."""

    account_sid: str | None = Field(None, description="Account SID (AC...); also the Basic-auth user.")
    auth_token: SecretStr | None = Field(
        None, description="Auth token: Basic-auth password, callback signing key."
    )
    from_number: str | None = Field(None, description="E.164 sender number (or set messaging_service_sid).")
    messaging_service_sid: str | None = Field(
        None, description="MG...; used instead of from_number when set."
    )
    base_url: str = Field("https://api.twilio.com", description="API root (a local fake in tests).")
    status_callback_url: str | None = Field(
        None, description="Public URL of POST /v1/providers/twilio/status; unset: no status callbacks."
    )
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one API request.")
    max_connections: int = Field(20, gt=0, description="Pooled HTTP connections.")
    max_send_rate: float = Field(20.0, gt=0, description="Messages per second per process.")

    def options(self, *, max_segments: int) -> TwilioOptions:
        """What the adapter sends with; a missing account or sender is a configuration error."""
        if not self.account_sid or self.auth_token is None:
            raise ConfigurationError(
                "sms: twilio needs HERALD_TWILIO__ACCOUNT_SID and HERALD_TWILIO__AUTH_TOKEN"
            )
        if not (self.from_number or self.messaging_service_sid):
            raise ConfigurationError(
                "sms: twilio needs HERALD_TWILIO__FROM_NUMBER or HERALD_TWILIO__MESSAGING_SERVICE_SID"
            )
        return TwilioOptions(
            account_sid=self.account_sid,
            auth_token=self.auth_token.get_secret_value(),
            from_number=self.from_number,
            messaging_service_sid=self.messaging_service_sid,
            status_callback_url=self.status_callback_url,
            max_segments=max_segments,
        )
