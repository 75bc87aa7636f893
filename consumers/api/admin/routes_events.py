"""``POST /v1/events``: emit DomainEvents over HTTP, for services without a Kafka client.

Each event is validated against the contract (fields, addressee, a route for its type),
encoded exactly as the Python emitter does (Avro single-object encoding, keyed by user or
topic) and produced with acks=all; 202 comes only after the broker acknowledged every new
event. A repeated event id within ``admin.event_dedupe_ttl_s`` of its ack is acknowledged
without sending; one whose first send is not acked yet is a 503 (see :mod:`.dedupe`).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError

from consumers.api.admin.auth import Caller, require
from consumers.api.admin.body import json_body
from consumers.api.admin.context import AdminContext
from consumers.api.admin.dedupe import Claim, EventIds
from consumers.api.admin.event_models import (
    AcceptedEvent,
    EventIn,
    EventsAccepted,
    FieldProblem,
    parse_events,
    send_at_problem,
    to_domain_event,
    unknown_type,
)
from consumers.api.admin.keys import Scope
from consumers.api.deps import ApiContext, kafka_down
from consumers.api.problems import ProblemError, problem_responses
from consumers.emitter import partition_key
from schemas.identifiers import InvalidIdentifier, check_event
from schemas.models import DomainEvent, utcnow

__all__ = ["router"]


def _admin(ctx: ApiContext) -> AdminContext:
    assert ctx.admin is not None  # the routes' auth dependency answered 503 otherwise
    return ctx.admin


Emitting = Annotated[Caller, Depends(require(Scope.EMIT))]

_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        EventIn.model_json_schema(),
                        {
                            "type": "array",
                            "items": EventIn.model_json_schema(),
                            "minItems": 1,
                            "maxItems": 500,
                        },
                    ]
                }
            }
        },
    }
}


def _tenant(e: EventIn, caller: Caller) -> str | None:
    bound = caller.key.tenant
    if bound is not None and e.tenant is not None and e.tenant != bound:
        raise ProblemError(403, "this key is bound to another tenant", kind="forbidden-tenant")
    return e.tenant or caller.tenant or None


def _check(ctx: ApiContext, events: list[EventIn], as_list: bool) -> None:
    assert ctx.admin is not None
    errors: list[dict[str, Any]] = []
    for i, e in enumerate(events):
        where: tuple[str | int, ...] = ("body", i) if as_list else ("body",)
        why = unknown_type(ctx.admin.routing, e.type)
        if why is not None:
            errors.append({"loc": (*where, "type"), "msg": why, "type": "unknown_event_type"})
    if errors:
        raise RequestValidationError(errors)


def _domain_events(events: list[EventIn], as_list: bool, caller: Caller) -> list[DomainEvent]:
    """The DomainEvents; 422 naming each identifier the shared check refuses (``body[2].user_id``)."""
    now = utcnow()
    domain = [to_domain_event(e, _tenant(e, caller), now, uuid.uuid4()) for e in events]
    errors: list[dict[str, Any]] = []
    for i, event in enumerate(domain):
        where: tuple[str | int, ...] = ("body", i) if as_list else ("body",)
        try:
            check_event(event)
        except InvalidIdentifier as exc:
            errors.append({"loc": (*where, exc.field), "msg": exc.problem, "type": "invalid_identifier"})
        late = send_at_problem(event.send_at, now)
        if late is not None:
            errors.append({"loc": (*where, "send_at"), "msg": late, "type": "send_at_too_far"})
    if errors:
        raise RequestValidationError(errors)
    return domain


async def _produce(ctx: ApiContext, events: list[DomainEvent]) -> None:
    # Enqueued one after another, in order (events of one user keep their order on its
    # partition); each enqueue returns at once unless the producer's buffer for a partition is
    # full. The acks are then awaited together.
    sends = [
        await ctx.producer.send(ctx.topics.events, ctx.codec.encode(e), key=partition_key(e)) for e in events
    ]
    await asyncio.gather(*sends)


async def _send(
    ctx: ApiContext,
    ids: EventIds,
    new: list[DomainEvent],
    in_flight: list[DomainEvent],
    retry_after_s: int = 2,
) -> None:
    """Produce the new events and mark them done; on any way out without the broker's ack (a
    refusal, a KafkaError, the pending TTL running out, a cancelled request) release this
    request's pending marks."""
    claimed = [(e.tenant, e.event_id) for e in new]
    sent = False
    try:
        if in_flight:
            # Another request holds these ids and its send is not acked yet: the event may or may
            # not be sent. "duplicate" could be false; sending again is not needed. The caller
            # retries the request as after any 503, once the mark has expired at the latest.
            raise ProblemError(
                503,
                f"event {in_flight[0].event_id!r} is being sent by another request; retry the request",
                kind="event-in-flight",
                headers={"Retry-After": str(retry_after_s)},
            )
        try:
            # A send may not outlive its pending marks: past their TTL a retry would send again.
            async with asyncio.timeout_at(ids.expires_at):
                await _produce(ctx, new)
        except KafkaError as exc:
            raise kafka_down("the events were not sent") from exc
        except TimeoutError as exc:
            raise kafka_down(f"the events were not sent (no ack within {ids.pending_ttl_s} s)") from exc
        sent = True
    finally:
        # shielded: a second cancellation must not leave the marks behind until they expire
        await asyncio.shield(ids.done(claimed) if sent else ids.release(claimed))


def router() -> APIRouter:
    r = APIRouter(tags=["admin: events"], responses=problem_responses(401, 403, 413, 422, 429, 503))

    @r.post("/v1/events", status_code=202, response_model=EventsAccepted, openapi_extra=_BODY_SCHEMA)
    async def post_events(request: Request, caller: Emitting) -> EventsAccepted:
        """Emit one event (a JSON object) or a batch (an array of up to 500); 202 once the broker acked."""
        ctx: ApiContext = request.app.state.ctx
        raw = await json_body(request)
        try:
            events, as_list = parse_events(raw, _admin(ctx).settings.events_batch_max)
        except FieldProblem as exc:
            raise RequestValidationError(exc.errors) from None
        _check(ctx, events, as_list)
        domain = _domain_events(events, as_list, caller)
        ids = EventIds(
            _admin(ctx).redis,
            prefix=_admin(ctx).settings.event_dedupe_prefix,
            ttl_s=_admin(ctx).settings.event_dedupe_ttl_s,
            pending_ttl_s=_admin(ctx).settings.event_pending_ttl_s,
        )
        claims = await ids.claim([(e.tenant, e.event_id) for e in domain])
        states = list(zip(domain, claims.states, strict=True))
        await _send(
            ctx,
            ids,
            [e for e, c in states if c is Claim.NEW],
            in_flight=[e for e, c in states if c is Claim.PENDING],
            retry_after_s=claims.retry_after_s,
        )
        return EventsAccepted(
            events=[AcceptedEvent(event_id=e.event_id, duplicate=c is Claim.DONE) for e, c in states]
        )

    return r
