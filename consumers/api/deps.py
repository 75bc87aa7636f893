"""What every route depends on: the process's clients (:class:`ApiContext`) and the caller.

:func:`principal` authenticates the bearer token and counts the request against the token's
rate limit; routes take the user only from it, so no request can name another user.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import StreamingResponse

from channels.in_app.inbox_pg import InboxService
from channels.push.devices_pg import PgDeviceTokens
from consumers.api.admin.context import AdminContext
from consumers.api.admin.keys import looks_like_key
from consumers.api.auth import AuthError, Principal, TokenKeys, verify_token
from consumers.api.feedback import ProviderFeedback
from consumers.api.inbox_query import InboxQueries, InboxRow
from consumers.api.models import InboxItemOut
from consumers.api.preferences import PreferenceSlot
from consumers.api.problems import ProblemError
from consumers.api.ratelimit import RateLimiter
from consumers.api.stream import InboxHub, event_stream
from consumers.api.tickets import StreamTickets
from consumers.inbox.reads import InboxReads
from consumers.infra.settings import ApiSettings
from consumers.runtime.topics import Topics
from schemas.codec import Codec
from schemas.models import Channel

__all__ = ["ApiContext", "Ctx", "User", "inbox_stream", "invalid", "item_out", "kafka_down", "principal"]


@dataclass
class ApiContext:
    api: ApiSettings
    keys: TokenKeys
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    topics: Topics
    codec: Codec
    limiter: RateLimiter
    hub: InboxHub
    slots: dict[tuple[str, Channel], PreferenceSlot]
    tickets: StreamTickets | None = None  # the browser components' stream tickets (Redis)
    feedback: ProviderFeedback | None = None  # /v1/providers/...: SES events, Twilio callbacks
    admin: AdminContext | None = None  # the admin API (service keys, recipients, events)

    def __post_init__(self) -> None:
        self.queries = InboxQueries(self.pool)
        self.reads = InboxReads(InboxService(self.pool), self.producer, self.topics, self.codec)
        self.devices = PgDeviceTokens(self.pool)


_bearer = HTTPBearer(auto_error=False, description="A JWT whose `sub` is the user id.")


def _ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


async def principal(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Authenticate the bearer token, then count the request against the token's rate limit."""
    ctx = _ctx(request)
    if creds is None:
        raise ProblemError(
            401,
            "missing bearer token",
            kind="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="herald"'},
        )
    if looks_like_key(creds.credentials):  # service keys never reach the users' routes
        raise ProblemError(
            401,
            "user routes take a user token, not a service API key",
            kind="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="herald", error="invalid_token"'},
        )
    try:
        who = verify_token(creds.credentials, ctx.keys, ctx.api)
    except AuthError as exc:
        raise ProblemError(
            401,
            str(exc),
            kind="unauthorized",
            headers={
                "WWW-Authenticate": f'Bearer realm="herald", error="invalid_token", error_description="{exc}"'
            },
        ) from exc
    decision = await ctx.limiter.hit(who.token_id)
    if not decision.allowed:
        raise ProblemError(
            429,
            f"more than {decision.limit} requests in {ctx.api.rate_limit_window_s}s",
            kind="rate-limited",
            headers={
                "Retry-After": str(max(1, round(decision.reset_s))),
                "RateLimit-Limit": str(decision.limit),
                "RateLimit-Remaining": "0",
            },
        )
    return who


User = Annotated[Principal, Depends(principal)]
Ctx = Annotated[ApiContext, Depends(_ctx)]


def item_out(row: InboxRow) -> dict[str, Any]:
    return InboxItemOut(
        id=row.id,
        notification_id=row.notification_id,
        type=row.type,
        category=row.category,
        title=row.title,
        body=row.body,
        data=row.data,
        created_at=row.created_at,
        read_at=row.read_at,
        expires_at=row.expires_at,
    ).model_dump(mode="json")


def inbox_stream(
    ctx: ApiContext,
    user_id: str,
    last_event_id: str | None,
    tenant: str = "",
    *,
    valid_until: float | None = None,
) -> StreamingResponse:
    """The user's live inbox as server-sent events, resuming after ``last_event_id`` (already validated),
    ending when the credential that opened it expires (``valid_until``, epoch seconds)."""
    body = event_stream(
        ctx.hub,
        user_id,
        tenant,
        ctx.queries,
        last_event_id=last_event_id,
        heartbeat_s=ctx.api.sse_heartbeat_s,
        replay_max=ctx.api.sse_replay_max,
        render=item_out,
        opened_at=datetime.now(UTC),
        lifetime_s=None if valid_until is None else valid_until - time.time(),
    )
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def kafka_down(what: str) -> ProblemError:
    return ProblemError(
        503,
        f"{what}; the event bus did not acknowledge, retry the request",
        kind="unavailable",
        headers={"Retry-After": "2"},
    )


def invalid(loc: tuple[str, ...], msg: str, type_: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": msg, "type": type_}])
