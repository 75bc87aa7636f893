"""SMTP provider settings (``HERALD_SMTP__*``), apart from the adapter: reading settings imports no
aiosmtplib. :class:`SmtpSettings` is the one declaration of these knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr

__all__ = ["SmtpSettings"]


class SmtpSettings(BaseModel, frozen=True):
    """The SMTP email provider (``smtp`` in ``HERALD_PROVIDERS__EMAIL``)."""

    host: str = Field("127.0.0.1", description="SMTP server (relay or submission) host.")
    port: int = Field(
        587, ge=1, le=65535, description="587 for STARTTLS submission, 465 for implicit TLS, 25 for relay."
    )
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls: upgrade after EHLO (required); tls: TLS from the first byte."
    )
    username: str | None = Field(None, description="AUTH user; unset: no AUTH.")
    password: SecretStr | None = Field(None, description="AUTH password.")
    validate_certs: bool = Field(True, description="Verify the server's TLS certificate.")
    ca_file: Path | None = Field(None, description="CA bundle that signs the server's certificate.")
    timeout_s: float = Field(
        10.0,
        gt=0,
        description="Connect and per-command timeout (before DATA a timeout retries; during DATA it is provider_timeout).",
    )
    pool_size: int = Field(8, gt=0, description="SMTP connections kept open per process.")
    max_send_rate: float = Field(50.0, gt=0, description="Messages per second per process.")
