"""``/v1/inbox``: list (unread first), count, one row, mark read, and the event stream."""
# No `from __future__ import annotations`: FastAPI must evaluate the list's query constraints, which
# close over the settings.

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Header, Query
from starlette.responses import StreamingResponse

from channels.in_app.inbox_pg import decode_cursor
from consumers.api.deps import Ctx, User, inbox_stream, invalid, item_out, kafka_down
from consumers.api.models import InboxItemOut, InboxPageOut, MarkReadIn, MarkReadOut, UnreadCount
from consumers.api.problems import ProblemError, problem_responses
from consumers.infra.settings import ApiSettings

__all__ = ["router"]

# The routes whose signatures do not depend on the settings (they read ``ctx.api`` per request).
_routes = APIRouter()


def router(api: ApiSettings) -> APIRouter:
    """The inbox routes. The list's page-size bounds come from the settings, so it is built per app."""
    r = APIRouter(prefix="/v1/inbox", tags=["inbox"])
    r.add_api_route(
        "",
        _list_inbox(api),
        methods=["GET"],
        response_model=InboxPageOut,
        summary="The inbox: unread first, newest first, keyset pages",
    )
    r.include_router(_routes)
    return r


def _list_inbox(api: ApiSettings) -> Callable[..., Awaitable[InboxPageOut]]:
    async def list_inbox(
        who: User,
        ctx: Ctx,
        limit: Annotated[int, Query(ge=1, le=api.page_size_max)] = api.page_size_default,
        cursor: Annotated[
            str | None, Query(max_length=200, description="`next_cursor` of the previous page")
        ] = None,
        unread_only: bool = False,
    ) -> InboxPageOut:
        try:
            page = await ctx.queries.page(
                who.user_id, limit=limit, cursor=cursor, unread_only=unread_only, tenant=who.tenant
            )
        except ValueError as exc:
            raise invalid(("query", "cursor"), "not a cursor this API returned", "cursor") from exc
        return InboxPageOut(
            items=[InboxItemOut(**item_out(r)) for r in page.items], next_cursor=page.next_cursor
        )

    return list_inbox


@_routes.get("/unread-count", response_model=UnreadCount, summary="How many unread rows")
async def unread_count(who: User, ctx: Ctx) -> UnreadCount:
    return UnreadCount(unread=await ctx.reads.inbox.unread_count(who.user_id, who.tenant))


@_routes.post(
    "/read",
    response_model=MarkReadOut,
    summary="Mark rows read (publishes `read` receipts)",
    responses=problem_responses(404, 503),
)
async def mark_read(body: MarkReadIn, who: User, ctx: Ctx) -> MarkReadOut:
    ids = list(dict.fromkeys(body.ids))
    if len(ids) > ctx.api.max_ids:
        raise invalid(("body", "ids"), f"at most {ctx.api.max_ids} ids", "too_long")
    missing = set(ids) - await ctx.queries.owned(who.user_id, ids, who.tenant)
    if missing:
        raise ProblemError(404, f"no such inbox rows: {', '.join(sorted(map(str, missing)))}")
    try:
        rows = await ctx.reads.mark_read(who.user_id, ids, who.tenant)
    except KafkaError as exc:
        raise kafka_down("rows marked read") from exc
    return MarkReadOut(read=[r.id for r in rows])


@_routes.post(
    "/read-all",
    response_model=MarkReadOut,
    summary="Mark every unread row read",
    responses=problem_responses(503),
)
async def mark_all_read(who: User, ctx: Ctx) -> MarkReadOut:
    try:
        rows = await ctx.reads.mark_all_read(who.user_id, who.tenant)
    except KafkaError as exc:
        raise kafka_down("rows marked read") from exc
    return MarkReadOut(read=[r.id for r in rows])


@_routes.get(
    "/stream",
    summary="Server-Sent Events: new notifications as they arrive",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "`event: notification` with an inbox item as data; resume with `Last-Event-ID`.",
        }
    },
)
async def stream(
    who: User,
    ctx: Ctx,
    last_event_id: Annotated[str | None, Header(max_length=200)] = None,
) -> StreamingResponse:
    if last_event_id is not None:
        try:
            decode_cursor(last_event_id)
        except ValueError as exc:
            raise invalid(("header", "last-event-id"), "not an event id this API sent", "event_id") from exc
    return inbox_stream(ctx, who.user_id, last_event_id, who.tenant, valid_until=who.valid_until)


@_routes.get(
    "/{item_id}", response_model=InboxItemOut, summary="One inbox row", responses=problem_responses(404)
)
async def get_item(item_id: uuid.UUID, who: User, ctx: Ctx) -> InboxItemOut:
    row = await ctx.queries.get(who.user_id, item_id, who.tenant)
    if row is None:
        raise ProblemError(404, "no such inbox row")
    return InboxItemOut(**item_out(row))
