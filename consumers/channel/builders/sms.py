"""The SMS providers from settings: SNS Publish and Twilio's Messages API."""

from __future__ import annotations

from channels.pacing import TokenBucket
from channels.sms.sns import SnsSmsAdapter
from channels.sms.twilio import TwilioOptions, TwilioSmsAdapter, make_client
from consumers.channel.builders.aws import open_aws_client
from consumers.infra.resources import Resources
from schemas.errors import ConfigurationError

__all__ = ["build_sns", "build_twilio"]


async def build_sns(res: Resources) -> SnsSmsAdapter:
    settings = res.settings
    client, stack = await open_aws_client("sns", settings)
    return SnsSmsAdapter(
        client,
        bucket=TokenBucket(settings.sms.max_send_rate),
        sender_id=settings.sms.sender_id,
        max_segments=settings.sms.max_segments,
        tenant_sender_ids=settings.sms.tenant_sender_ids,
        close=stack.aclose,
    )


async def build_twilio(res: Resources) -> TwilioSmsAdapter:
    cfg = res.settings.twilio
    if not cfg.account_sid or cfg.auth_token is None:
        raise ConfigurationError("sms: twilio needs HERALD_TWILIO__ACCOUNT_SID and HERALD_TWILIO__AUTH_TOKEN")
    if not (cfg.from_number or cfg.messaging_service_sid):
        raise ConfigurationError(
            "sms: twilio needs HERALD_TWILIO__FROM_NUMBER or HERALD_TWILIO__MESSAGING_SERVICE_SID"
        )
    options = TwilioOptions(
        account_sid=cfg.account_sid,
        auth_token=cfg.auth_token.get_secret_value(),
        from_number=cfg.from_number,
        messaging_service_sid=cfg.messaging_service_sid,
        status_callback_url=cfg.status_callback_url,
        max_segments=res.settings.sms.max_segments,
    )
    client = make_client(cfg.base_url, timeout_s=cfg.timeout_s, max_connections=cfg.max_connections)
    return TwilioSmsAdapter(client, options, bucket=TokenBucket(cfg.max_send_rate))
