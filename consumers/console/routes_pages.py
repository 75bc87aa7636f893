"""Read-only console pages: search, a notification's timeline, providers, live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from consumers.console.breakers import BreakerView, breaker_views
from consumers.console.timeline import build_timeline
from consumers.console.web import BadRequest, OperatorSession, console_ctx, harden, page
from consumers.ledger.queries import TIMELINE_OTHERS, TIMELINE_RECEIPTS, Search
from schemas.identifiers import identifier_problem

__all__ = ["router"]

router = APIRouter(prefix="/console", include_in_schema=False)

_FILTERS = ("event_id", "notification_id", "user_id", "recipient", "status")


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    when = when if when.tzinfo is not None else when.replace(tzinfo=datetime.now().astimezone().tzinfo)
    try:
        when.astimezone(UTC)  # 0001-01-01T00:00+14:00 is before year 1 in UTC: the store cannot hold it
    except OverflowError:
        return None
    return when


def _filter(params: dict[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()[:200]
    if not value:
        return None
    problem = identifier_problem(value, limit=200)
    if problem is not None:  # a NUL or control character can name nothing in the store
        raise BadRequest(f"{name}: {problem}")
    return value


def search_of(params: dict[str, str]) -> Search:
    """The search form's fields (blank ones ignored; bad times ignored rather than failing; a
    control character in a field is a 400 naming the field)."""
    values: dict[str, Any] = {k: _filter(params, k) for k in _FILTERS}
    return Search(**values, since=_time(params.get("since")), until=_time(params.get("until")))


@router.get("/")
async def search(request: Request, session: OperatorSession) -> Response:
    ctx = console_ctx(request)
    params = dict(request.query_params)
    q = search_of(params)
    results = [] if q.empty else await ctx.reader.search(q)
    results.sort(key=lambda r: r["recorded_at"], reverse=True)
    return page(request, "search.html", session, q=params, searched=not q.empty, results=results)


@router.get("/n/{notification_id}")
async def timeline(request: Request, session: OperatorSession, notification_id: str) -> Response:
    ctx = console_ctx(request)
    if (problem := identifier_problem(notification_id, limit=200)) is not None:
        raise BadRequest(f"notification id: {problem}")
    rows, more = await ctx.reader.timeline(notification_id)
    status = 200 if rows else 404
    t = build_timeline(notification_id, rows)
    return page(
        request,
        "timeline.html",
        session,
        status=status,
        t=t,
        more=more,
        limits=(TIMELINE_RECEIPTS, TIMELINE_OTHERS),
    )


@router.get("/providers")
async def providers(request: Request, session: OperatorSession) -> Response:
    ctx = console_ctx(request)
    since = ctx.clock.now() - timedelta(hours=1)
    rows = await ctx.reader.providers(since)
    for r in rows:
        r["success_rate"] = r["sent"] / r["attempts"] if r["attempts"] else None
    breakers: list[BreakerView] = []
    breaker_error: str | None = None
    if ctx.redis is not None:
        breakers, breaker_error = await breaker_views(ctx.redis, ctx.settings.topic_prefix)
    circuit = {(b.channel, b.provider): b for b in breakers}
    return page(
        request,
        "providers.html",
        session,
        rows=rows,
        since=since,
        breakers=breakers,
        circuit=circuit,
        breaker_error=breaker_error,
    )


async def live_data(request: Request) -> dict[str, Any]:
    ctx = console_ctx(request)
    window = ctx.settings.console.live_window_s
    since = ctx.clock.now() - timedelta(seconds=window)
    rows = await ctx.reader.rates(since, bucket_s=60)
    events = await ctx.pool.fetchval(
        "SELECT count(DISTINCT event_id) FROM herald_activity WHERE recorded_at >= $1 AND kind = 'outcome'",
        since,
    )
    deliveries: dict[str, dict[str, int]] = {}
    for r in rows:
        deliveries.setdefault(r["channel"], {}).setdefault(r["status"], 0)
        deliveries[r["channel"]][r["status"]] += r["n"]
    per_s = {ch: {st: round(n / window, 3) for st, n in by.items()} for ch, by in deliveries.items()}
    lag = [{"at": s.at.isoformat(timespec="seconds"), "lag": s.lag} for s in ctx.lag.samples]
    return {
        "window_s": window,
        "events_per_s": round((events or 0) / window, 3),
        "deliveries_per_s": per_s,
        "lag": lag,
        "lag_error": ctx.lag.error,
        "minutes": [
            {"at": r["bucket"].isoformat(), "channel": r["channel"], "status": r["status"], "n": r["n"]}
            for r in rows
        ],
    }


@router.get("/live")
async def live(request: Request, session: OperatorSession) -> Response:
    return page(request, "live.html", session, data=await live_data(request))


@router.get("/live.json")
async def live_json(request: Request, session: OperatorSession) -> Response:
    return harden(JSONResponse(await live_data(request)))
