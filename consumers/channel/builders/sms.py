"""The SMS adapter (SNS Publish) from settings."""

from __future__ import annotations

from channels.aws import open_client
from channels.pacing import TokenBucket
from channels.sns_sms import SnsSmsAdapter
from consumers.channel.builders.aws import client_options
from consumers.infra.resources import Resources

__all__ = ["build"]


async def build(res: Resources) -> SnsSmsAdapter:
    settings = res.settings
    client, stack = await open_client("sns", client_options(settings))
    return SnsSmsAdapter(
        client,
        bucket=TokenBucket(settings.sms.max_send_rate),
        sender_id=settings.sms.sender_id,
        max_segments=settings.sms.max_segments,
        close=stack.aclose,
    )
