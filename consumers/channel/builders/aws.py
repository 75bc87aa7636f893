"""An AWS client for this process (shared by the email and SMS builders and ``herald doctor``)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from channels.aws import open_client
from consumers.infra.settings import HeraldSettings

__all__ = ["open_aws_client"]


async def open_aws_client(service: str, settings: HeraldSettings) -> tuple[Any, AsyncExitStack]:
    """(client, stack) for ``service``, pooled for as many calls as the channel consumer makes at once."""
    return await open_client(
        service, settings.aws, max_pool_connections=max(10, settings.channel.concurrency)
    )
