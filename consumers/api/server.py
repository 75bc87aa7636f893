"""Open the API's clients from :class:`~consumers.infra.resources.Resources` and serve the app with uvicorn."""

from __future__ import annotations

import logging

import httpx

from consumers.api.admin.mount import admin_context
from consumers.api.auth import TokenKeys
from consumers.api.deps import ApiContext
from consumers.api.feedback import ProviderFeedback, ses_feedback_warning
from consumers.api.preferences import preference_slots
from consumers.api.ratelimit import RateLimiter
from consumers.api.stream import InboxHub
from consumers.api.tickets import StreamTickets
from consumers.classifier.routing import load_routing
from consumers.infra.resources import Resources
from consumers.infra.suppressions import SuppressionStore
from consumers.runtime.http_server import LoopServer
from schemas.codec import default_codec

__all__ = ["ApiServer", "open_context"]

log = logging.getLogger(__name__)


async def open_context(res: Resources) -> ApiContext:
    """Raises ValueError for a bad key configuration (before anything is opened)."""
    settings = res.settings
    keys = TokenKeys.from_settings(settings.api)
    routing = load_routing(settings.classifier.routing_file)
    pool = await res.pool()
    producer = await res.producer()
    await res.create_topics([res.topics.receipts, res.topics.events])  # POST /v1/events produces
    api = settings.api
    warning = ses_feedback_warning(settings.email.configuration_set, settings.providers.feedback)
    if warning is not None:
        log.warning("%s", warning)
    limiter = RateLimiter(
        res.redis(),
        limit=api.rate_limit_requests,
        window_s=api.rate_limit_window_s,
        prefix=api.rate_limit_key_prefix,
    )
    return ApiContext(
        api=api,
        keys=keys,
        pool=pool,
        producer=producer,
        topics=res.topics,
        codec=default_codec(),
        limiter=limiter,
        hub=InboxHub(settings.database_url.get_secret_value(), max_streams_per_user=api.sse_streams_per_user),
        slots=preference_slots(routing),
        tickets=StreamTickets(
            res.redis(), ttl_s=api.stream_ticket_ttl_s, prefix=api.stream_ticket_key_prefix
        ),
        feedback=ProviderFeedback(
            settings.providers.feedback,
            SuppressionStore(pool),
            producer,
            res.topics,
            default_codec(),
            httpx.AsyncClient(follow_redirects=False),
            twilio_auth_token=settings.twilio.auth_token.get_secret_value()
            if settings.twilio.auth_token
            else None,
            twilio_callback_url=settings.twilio.status_callback_url,
        ),
        admin=admin_context(settings.admin, pool, res.redis(), routing),
    )


class ApiServer(LoopServer):
    """The API app in the current event loop."""

    async def start(self) -> None:
        await super().start()
        log.info("API on %s (OpenAPI at %s/openapi.json)", self.url, self.url)
