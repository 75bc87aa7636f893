"""The SMS providers from settings: SNS Publish and Twilio's Messages API."""

from __future__ import annotations

from channels.pacing import TokenBucket
from channels.sms.sns import SnsSmsAdapter
from channels.sms.twilio import TwilioSmsAdapter, make_client
from consumers.channel.builders.aws import open_aws_client
from consumers.infra.resources import Resources

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
    options = cfg.options(max_segments=res.settings.sms.max_segments)
    client = make_client(cfg.base_url, timeout_s=cfg.timeout_s, max_connections=cfg.max_connections)
    return TwilioSmsAdapter(client, options, bucket=TokenBucket(cfg.max_send_rate))
