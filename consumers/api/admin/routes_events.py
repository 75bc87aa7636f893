"""``POST /v1/events``: emit DomainEvents over HTTP, for services without a Kafka client.

Each event is validated against the contract (fields, addressee, a route for its type),
encoded exactly as the Python emitter does (Avro single-object encoding, keyed by user or
topic) and produced with acks=all; 202 comes only after the broker acknowledged every new
event. A repeated event id within ``admin.event_dedupe_ttl_s`` is acknowledged without sending.
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
from consumers.api.admin.dedupe import EventIds
from consumers.api.admin.event_models import (
    AcceptedEvent,
    EventIn,
    EventsAccepted,
    FieldProblem,
    parse_events,
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
        try:
            check_event(event)
        except InvalidIdentifier as exc:
            where: tuple[str | int, ...] = ("body", i) if as_list else ("body",)
            errors.append({"loc": (*where, exc.field), "msg": exc.problem, "type": "invalid_identifier"})
    if errors:
        raise RequestValidationError(errors)
    return domain


async def _produce(ctx: ApiContext, events: list[DomainEvent]) -> None:
    sends = [
        await ctx.producer.send(ctx.topics.events, ctx.codec.encode(e), key=partition_key(e)) for e in events
    ]
    await asyncio.gather(*sends)


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
        )
        fresh = await ids.claim([(e.tenant, e.event_id) for e in domain])
        new = [e for e, is_new in zip(domain, fresh, strict=True) if is_new]
        try:
            await _produce(ctx, new)
        except KafkaError as exc:
            await ids.release([(e.tenant, e.event_id) for e in new])
            raise kafka_down("the events were not sent") from exc
        return EventsAccepted(
            events=[
                AcceptedEvent(event_id=e.event_id, duplicate=not is_new)
                for e, is_new in zip(domain, fresh, strict=True)
            ]
        )

    return r
