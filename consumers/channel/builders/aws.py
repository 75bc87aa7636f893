"""AWS client options from settings (shared by the email and SMS builders and ``herald doctor``)."""

from __future__ import annotations

from channels.aws import AwsClientOptions
from consumers.infra.settings import HeraldSettings

__all__ = ["client_options"]


def client_options(settings: HeraldSettings) -> AwsClientOptions:
    aws = settings.aws
    return AwsClientOptions(
        region=aws.region,
        endpoint_url=aws.endpoint_url,
        access_key_id=aws.access_key_id.get_secret_value() if aws.access_key_id else None,
        secret_access_key=aws.secret_access_key.get_secret_value() if aws.secret_access_key else None,
        connect_timeout_s=aws.connect_timeout_s,
        read_timeout_s=aws.read_timeout_s,
        max_pool_connections=max(10, settings.channel.concurrency),
    )
