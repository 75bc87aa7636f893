"""AWS settings (``HERALD_AWS__*``), apart from the client: reading settings imports no aioboto3.

:class:`AwsSettings` is the one declaration of these knobs; :mod:`channels.aws` opens clients with it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

__all__ = ["AwsSettings"]


class AwsSettings(BaseModel, frozen=True):
    """SES and SNS clients (credentials unset: the default AWS chain, e.g. an IAM role)."""

    region: str = Field("us-east-1", description="AWS region of SES and SNS.")
    endpoint_url: str | None = Field(None, description="Override (moto in the dev stack).")
    access_key_id: SecretStr | None = Field(None, description="Access key; unset: the default AWS chain.")
    secret_access_key: SecretStr | None = Field(None, description="Secret key; unset: the default AWS chain.")
    connect_timeout_s: float = Field(3.0, gt=0, description="SES/SNS connect timeout.")
    read_timeout_s: float = Field(
        10.0, gt=0, description="SES/SNS read timeout (a timeout is a retryable failure)."
    )
