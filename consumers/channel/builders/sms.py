"""The SMS adapter (SNS Publish) from settings."""

from __future__ import annotations

from channels.pacing import TokenBucket
from channels.sns_sms import SnsSmsAdapter
from consumers.channel.builders.aws import open_aws_client
from consumers.infra.resources import Resources

__all__ = ["build_sns"]


async def build_sns(res: Resources) -> SnsSmsAdapter:
    settings = res.settings
    client, stack = await open_aws_client("sns", settings)
    return SnsSmsAdapter(
        client,
        bucket=TokenBucket(settings.sms.max_send_rate),
        sender_id=settings.sms.sender_id,
        max_segments=settings.sms.max_segments,
        close=stack.aclose,
    )
