"""The email adapter (SES v2) from settings: one client, paced to the account's MaxSendRate."""

from __future__ import annotations

import logging

from channels.pacing import TokenBucket
from channels.ses import DEFAULT_MAX_SEND_RATE, SesEmailAdapter, discover_max_send_rate
from consumers.channel.builders.aws import open_aws_client
from consumers.infra.resources import Resources

__all__ = ["build"]

log = logging.getLogger(__name__)


async def build(res: Resources) -> SesEmailAdapter:
    settings = res.settings
    client, stack = await open_aws_client("sesv2", settings)
    rate = settings.email.max_send_rate
    source = "settings"
    if rate is None:
        rate, source = await discover_max_send_rate(client), "GetAccount"
    if rate is None:
        rate, source = DEFAULT_MAX_SEND_RATE, "default"
    log.info("email: pacing SES sends to %.1f/s (%s)", rate, source)
    return SesEmailAdapter(
        client,
        from_address=settings.email.from_address,
        bucket=TokenBucket(rate),
        configuration_set=settings.email.configuration_set,
        unsubscribe_url=settings.email.unsubscribe_url,
        unsubscribe_mailto=settings.email.unsubscribe_mailto,
        close=stack.aclose,
    )
