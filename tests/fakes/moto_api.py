"""Reading back what moto (SES v2, SNS) really accepted, and preparing its state."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import httpx

from channels.aws import AwsSettings, open_client

__all__ = ["aws_options", "ensure_identity", "sent_mail", "sent_sms"]


def aws_options(endpoint_url: str, **overrides: Any) -> AwsSettings:
    base: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "access_key_id": "testing",
        "secret_access_key": "testing",
        "connect_timeout_s": 5.0,
        "read_timeout_s": 10.0,
    }
    base.update(overrides)
    return AwsSettings(**base)


async def ensure_identity(moto_url: str, identity: str = "example.com") -> None:
    """Verify the sender domain in moto (SES rejects mail from unverified identities)."""
    client, stack = await open_client("sesv2", aws_options(moto_url))
    try:
        existing = await client.list_email_identities()
        if identity not in {i["IdentityName"] for i in existing.get("EmailIdentities", [])}:
            await client.create_email_identity(EmailIdentity=identity)
    finally:
        await stack.aclose()


async def _data(moto_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{moto_url}/moto-api/data.json")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


async def sent_mail(moto_url: str, to: str | None = None) -> list[EmailMessage]:
    """Raw messages moto accepted (optionally only those addressed to ``to``), parsed."""
    data = await _data(moto_url)
    out: list[EmailMessage] = []
    for raw in data.get("ses", {}).get("RawMessage", []):
        msg = email.message_from_string(raw["raw_data"], policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        if to is None or msg["To"] == to:
            out.append(msg)
    return out


async def sent_sms(moto_url: str, phone: str | None = None) -> list[dict[str, Any]]:
    data = await _data(moto_url)
    return [s for s in data.get("sns", {}).get("SMS", []) if phone is None or s["phone_number"] == phone]
