"""Console pages that change things: dead letters (inspect, replay with audit) and webhook
endpoints (disable, enable, rotate the secret, replay failed messages since T). Every POST checks
the session's CSRF token and the Origin; every action names the session's operator."""

from __future__ import annotations

import json
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response

from consumers.console.endpoint_ops import endpoint_health, parse_since, replay_pending
from consumers.console.flash import flash_query
from consumers.console.web import BadRequest, OperatorSession, console_ctx, form, page, redirect, require_csrf
from consumers.ledger.deadletters import audit_log, describe, replay, show
from schemas.errors import ConfigurationError

__all__ = ["router"]

router = APIRouter(prefix="/console", include_in_schema=False)


def _dlq_topic(request: Request, topic: str) -> str:
    prefix = f"{console_ctx(request).settings.topic_prefix}."
    if not (topic.startswith(prefix) and topic.endswith(".dlq")):
        raise BadRequest(f"{topic!r} is not a dead-letter topic of this Herald")
    return topic


@router.get("/dlq")
async def dead_letters(request: Request, session: OperatorSession) -> Response:
    ctx = console_ctx(request)
    counts = await ctx.reader.dead_letter_counts(ctx.settings.topic_prefix)
    audit = await audit_log(ctx.pool, 20)
    return page(request, "dlq.html", session, counts=counts, audit=audit)


@router.get("/dlq/list")
async def dead_letter_list(
    request: Request, session: OperatorSession, topic: str, reason: str | None = None
) -> Response:
    ctx = console_ctx(request)
    rows = await ctx.reader.dead_letters(_dlq_topic(request, topic), reason or None)
    return page(request, "dlq_list.html", session, topic=topic, reason=reason or "", rows=rows)


@router.get("/dlq/record")
async def dead_letter(
    request: Request, session: OperatorSession, topic: str, partition: int, offset: int
) -> Response:
    ctx = console_ctx(request)
    record = await show(ctx.settings, _dlq_topic(request, topic), partition, offset)
    if record is None:
        return page(request, "dlq_record.html", session, status=404, record=None, topic=topic)
    described = describe(record)
    if "body" in described:
        described["body_json"] = json.dumps(described["body"], indent=2, default=str, ensure_ascii=False)
    return page(request, "dlq_record.html", session, record=described, topic=topic)


@router.post("/dlq/replay")
async def dead_letter_replay(request: Request, session: OperatorSession) -> Response:
    ctx = console_ctx(request)
    fields = await form(request)
    require_csrf(request, session, fields)
    topic = _dlq_topic(request, fields.get("topic", ""))
    reason = fields.get("reason") or None
    try:
        partition = int(fields["partition"]) if fields.get("partition") else None
        offset = int(fields["offset"]) if fields.get("offset") else None
    except ValueError:
        raise BadRequest("partition and offset are numbers") from None
    if (offset is None) == (reason is None):
        raise BadRequest("replay one record (partition and offset) or every record with a reason")
    selector = f"at={partition}:{offset}" if offset is not None else f"reason={reason}"
    result = await replay(
        ctx.settings,
        ctx.pool,
        topic,
        lambda r: reason is None or r.reason == reason,
        actor=session.operator.name,
        selector=selector,
        partition=partition,
        offset=offset,
    )
    done = flash_query("dlq_replayed", n=len(result.replayed), topic=topic, skipped=result.skipped)
    return redirect("/console/dlq", **done)


@router.get("/endpoints")
async def endpoints(request: Request, session: OperatorSession) -> Response:
    ctx = console_ctx(request)
    eps = await ctx.endpoints.list_endpoints()
    health = await endpoint_health(ctx.pool, ctx.clock.now() - timedelta(hours=24))
    return page(request, "endpoints.html", session, endpoints=eps, health=health, secret=None)


@router.post("/endpoints/{endpoint_id}/{action}")
async def endpoint_action(
    request: Request, session: OperatorSession, endpoint_id: str, action: str
) -> Response:
    ctx = console_ctx(request)
    fields = await form(request)
    require_csrf(request, session, fields)
    now = ctx.clock.now()
    ep = await ctx.endpoints.get(endpoint_id)
    if ep is None:
        raise BadRequest(f"no webhook endpoint {endpoint_id!r}")
    if action == "disable":
        await ctx.endpoints.disable(endpoint_id, reason=f"manual ({session.operator.name})"[:200], now=now)
        return redirect("/console/endpoints", **flash_query("endpoint_disabled", endpoint=endpoint_id))
    if action == "enable":
        await ctx.endpoints.enable(endpoint_id)
        return redirect("/console/endpoints", **flash_query("endpoint_enabled", endpoint=endpoint_id))
    if action == "rotate":
        rotated = await ctx.endpoints.rotate_secret(
            endpoint_id, now=now, grace_s=ctx.settings.webhook.rotation_grace_s
        )
        assert rotated is not None
        eps = await ctx.endpoints.list_endpoints()
        health = await endpoint_health(ctx.pool, now - timedelta(hours=24))
        # Shown once, in this response only: never in a URL, a log or a later page.
        return page(
            request,
            "endpoints.html",
            session,
            endpoints=eps,
            health=health,
            secret=(endpoint_id, rotated.secrets[0]),
        )
    if action == "replay":
        try:
            since = parse_since(fields.get("since") or "24h", now)
            count = await replay_pending(ctx.settings, ctx.endpoints, ep, since, now)
        except ConfigurationError as exc:
            raise BadRequest(str(exc)) from exc
        done = flash_query("endpoint_resent", endpoint=endpoint_id, n=count, since=f"{since:%Y-%m-%dT%H:%M}")
        return redirect("/console/endpoints", **done)
    raise BadRequest(f"unknown action {action!r}")
