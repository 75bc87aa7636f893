"""What the browser components need beyond the inbox API: stream tickets, the ticketed event
stream and archiving.

``POST /v1/stream-tickets`` trades the bearer token (sent in a header by ``fetch``) for a
single-use ticket; ``GET /v1/stream?ticket=…`` is ``GET /v1/inbox/stream`` for ``EventSource``,
which can send neither a header nor, on a fresh connection, ``Last-Event-ID`` (so it is also
accepted as the ``last_event_id`` query parameter). A reconnecting client mints a new ticket.
"""

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query
from pydantic import BaseModel, Field
from starlette.responses import StreamingResponse

from channels.in_app.inbox_pg import decode_cursor
from consumers.api.deps import Ctx, User, inbox_stream, invalid
from consumers.api.models import MarkReadIn
from consumers.api.problems import ProblemError, problem_responses
from consumers.api.tickets import StreamTickets, TicketStoreDown
from consumers.inbox.archiving import archive_user_rows

__all__ = ["ArchiveOut", "StreamTicketOut", "router"]

log = logging.getLogger(__name__)


class StreamTicketOut(BaseModel):
    ticket: str = Field(description="Pass as `ticket` to GET /v1/stream; valid once, for `expires_in_s`.")
    expires_in_s: int


class ArchiveOut(BaseModel):
    archived: list[str] = Field(description="The inbox row ids removed from the inbox.")


def _tickets(ctx: Ctx) -> StreamTickets:
    if ctx.tickets is None:
        raise ProblemError(503, "stream tickets are not configured", kind="unavailable")
    return ctx.tickets


def _down(exc: TicketStoreDown) -> ProblemError:
    # The cause (Redis's own message) names hosts and ports: it goes to the log, not to the caller.
    log.warning("%s: %s", exc, exc.__cause__)
    return ProblemError(503, str(exc), kind="unavailable", headers={"Retry-After": "2"})


router = APIRouter(prefix="/v1")


@router.post(
    "/stream-tickets",
    response_model=StreamTicketOut,
    status_code=201,
    tags=["inbox"],
    summary="A single-use, one-minute ticket that opens GET /v1/stream (for EventSource)",
    responses=problem_responses(503),
)
async def mint_ticket(who: User, ctx: Ctx) -> StreamTicketOut:
    tickets = _tickets(ctx)
    try:
        ticket = await tickets.mint(who.user_id, who.tenant, who.valid_until)
    except TicketStoreDown as exc:
        raise _down(exc) from exc
    return StreamTicketOut(ticket=ticket, expires_in_s=tickets.ttl_s)


@router.get(
    "/stream",
    tags=["inbox"],
    summary="GET /v1/inbox/stream authenticated by a stream ticket instead of a bearer token",
    response_class=StreamingResponse,
    responses={
        **problem_responses(401, 429, 503),
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
    },
)
async def ticketed_stream(
    ctx: Ctx,
    ticket: Annotated[str, Query(min_length=16, max_length=100)],
    last_event_id_q: Annotated[str | None, Query(alias="last_event_id", max_length=200)] = None,
    last_event_id: Annotated[str | None, Header(max_length=200)] = None,
) -> StreamingResponse:
    resume = last_event_id or last_event_id_q or None
    if resume is not None:
        try:
            decode_cursor(resume)
        except ValueError as exc:
            raise invalid(("query", "last_event_id"), "not an event id this API sent", "event_id") from exc
    try:
        holder = await _tickets(ctx).redeem(ticket)
    except TicketStoreDown as exc:
        raise _down(exc) from exc
    if holder is None:
        raise ProblemError(401, "unknown, expired or already used stream ticket", kind="unauthorized")
    return inbox_stream(ctx, holder.user_id, resume, holder.tenant, valid_until=holder.valid_until)


@router.post(
    "/inbox/archive",
    response_model=ArchiveOut,
    tags=["inbox"],
    summary="Move rows from the inbox to the archive (as the janitor does with old read rows)",
    responses=problem_responses(404),
)
async def archive(body: MarkReadIn, who: User, ctx: Ctx) -> ArchiveOut:
    ids = list(dict.fromkeys(body.ids))
    if len(ids) > ctx.api.max_ids:
        raise invalid(("body", "ids"), f"at most {ctx.api.max_ids} ids", "too_long")
    missing = set(ids) - await ctx.queries.owned(who.user_id, ids, who.tenant)
    if missing:
        raise ProblemError(404, f"no such inbox rows: {', '.join(sorted(map(str, missing)))}")
    moved = await archive_user_rows(ctx.pool, who.user_id, ids, datetime.now(UTC), who.tenant)
    return ArchiveOut(archived=[str(i) for i in moved])
