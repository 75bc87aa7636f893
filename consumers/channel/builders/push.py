"""The push adapter (FCM HTTP v1) from ``settings.push``."""

from __future__ import annotations

from channels.base import ChannelAdapter
from channels.push.devices_pg import PgDeviceTokens
from channels.push.fcm import FcmAdapter, make_client
from channels.push.fcm_auth import FcmAuth, load_service_account
from consumers.infra.resources import Resources
from schemas.errors import ConfigurationError

__all__ = ["build"]


async def build(res: Resources) -> ChannelAdapter:
    cfg = res.settings.push
    secret = cfg.service_account_json.get_secret_value() if cfg.service_account_json else None
    try:
        info = load_service_account(file=cfg.service_account_file, info_json=secret, token_uri=cfg.token_uri)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"push: cannot load the FCM service account: {exc}") from exc
    project_id = cfg.project_id or info.get("project_id")
    if not project_id:
        raise ConfigurationError(
            "push: no project id (set HERALD_PUSH__PROJECT_ID or use a service account that has one)"
        )
    auth = FcmAuth(info, margin_s=cfg.token_refresh_margin_s, clock=res.clock.now)
    return FcmAdapter(
        client=make_client(
            cfg.fcm_base_url, timeout_s=cfg.request_timeout_s, max_connections=cfg.max_connections
        ),
        auth=auth,
        devices=PgDeviceTokens(await res.pool()),
        project_id=str(project_id),
        ttl_s=cfg.ttl_s,
        max_payload_bytes=cfg.max_payload_bytes,
        clock=res.clock.now,
    )
