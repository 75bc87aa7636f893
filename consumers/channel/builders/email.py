"""The email providers from settings: SES v2 (one client, paced to the account's MaxSendRate) and SMTP."""

from __future__ import annotations

import logging

from channels.email.ses import DEFAULT_MAX_SEND_RATE, SesEmailAdapter, discover_max_send_rate
from channels.email.smtp import SmtpEmailAdapter
from channels.pacing import TokenBucket
from consumers.channel.builders.aws import open_aws_client
from consumers.infra.resources import Resources

__all__ = ["build_ses", "build_smtp"]

log = logging.getLogger(__name__)


async def build_ses(res: Resources) -> SesEmailAdapter:
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
        tenant_from=settings.email.tenant_from_addresses,
        close=stack.aclose,
    )


async def build_smtp(res: Resources) -> SmtpEmailAdapter:
    settings = res.settings
    smtp = settings.smtp
    log.info("email: SMTP via %s:%d (%s), %.1f/s", smtp.host, smtp.port, smtp.security, smtp.max_send_rate)
    return SmtpEmailAdapter(
        smtp,
        from_address=settings.email.from_address,
        bucket=TokenBucket(smtp.max_send_rate),
        unsubscribe_url=settings.email.unsubscribe_url,
        unsubscribe_mailto=settings.email.unsubscribe_mailto,
        tenant_from=settings.email.tenant_from_addresses,
    )
