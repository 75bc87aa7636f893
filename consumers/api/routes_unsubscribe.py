"""``/v1/unsubscribe/{token}``: the page an email's unsubscribe link opens, and RFC 8058 one-click.

``GET`` only shows a confirmation page (mail scanners fetch links; a GET must never change
anything); its button, or a mail client's one-click ``POST`` with the body
``List-Unsubscribe=One-Click``, turns the category's email off. Critical categories cannot be
turned off, and the page says so. Unset ``HERALD_API__UNSUBSCRIBE_SECRET``: every link is a 404.
"""

from __future__ import annotations

import time
from typing import Annotated

import jinja2
from fastapi import APIRouter, Path, Request
from starlette.responses import HTMLResponse

from consumers.api.deps import Ctx
from consumers.api.problems import ProblemError, problem_responses
from consumers.api.unsubscribe_token import (
    MAX_TOKEN_CHARS,
    BadUnsubscribeToken,
    UnsubscribeClaim,
    verify_unsubscribe,
)
from schemas.models import Channel

__all__ = ["router"]

_ONE_CLICK = "List-Unsubscribe=One-Click"

_PAGE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>{{ heading }}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2933}
button{font:inherit;padding:.5rem 1rem;border-radius:.4rem;border:1px solid #1f2933;background:#1f2933;color:#fff;
cursor:pointer}a{color:#2251cc}</style></head>
<body><main><h1>{{ heading }}</h1><p>{{ message }}</p>
{% if form %}<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe from {{ category }} emails</button></form>{% endif %}
<p><a href="{{ centre }}">Manage all your notification preferences</a></p></main></body></html>
"""
)


def _page(
    ctx: Ctx, status: int, heading: str, message: str, *, category: str = "", form: bool = False
) -> HTMLResponse:
    html = _PAGE.render(
        heading=heading, message=message, category=category, form=form, centre=ctx.api.preference_centre_url
    )
    return HTMLResponse(
        html, status_code=status, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


def _claim(ctx: Ctx, token: str) -> UnsubscribeClaim:
    secret = ctx.api.unsubscribe_secret
    if secret is None:
        raise ProblemError(404, "unsubscribe links are not enabled")
    return verify_unsubscribe([secret.get_secret_value().encode()], token, now=int(time.time()))


def _html(status: int, description: str) -> dict[int | str, dict[str, object]]:
    return {status: {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}}


_Token = Annotated[str, Path(min_length=3, max_length=MAX_TOKEN_CHARS)]


def router() -> APIRouter:
    r = APIRouter(prefix="/v1/unsubscribe", tags=["unsubscribe"])

    @r.get(
        "/{token}",
        response_class=HTMLResponse,
        summary="The confirmation page of an unsubscribe link",
        responses={**problem_responses(404), **_html(400, "A malformed, forged or expired link (a page)")},
    )
    async def confirm(token: _Token, ctx: Ctx) -> HTMLResponse:
        try:
            claim = _claim(ctx, token)
        except BadUnsubscribeToken as exc:
            return _page(
                ctx, 400, "This link does not work", f"{exc}. You can still change your preferences."
            )
        slot = ctx.slots.get((claim.category, Channel.EMAIL))
        if slot is not None and slot.locked:
            return _page(ctx, 200, "These emails cannot be turned off", _locked(claim.category))
        return _page(
            ctx,
            200,
            "Unsubscribe?",
            f"You will no longer get {claim.category} emails. Other notifications are not affected.",
            category=claim.category,
            form=True,
        )

    @r.post(
        "/{token}",
        response_class=HTMLResponse,
        summary="Unsubscribe (RFC 8058 one-click or the page's button)",
    )
    async def one_click(token: _Token, request: Request, ctx: Ctx) -> HTMLResponse:
        body = (await request.body()).decode("utf-8", "replace").strip()
        if body != _ONE_CLICK:
            raise ProblemError(400, f"the body must be {_ONE_CLICK}")
        try:
            claim = _claim(ctx, token)
        except BadUnsubscribeToken as exc:
            raise ProblemError(400, str(exc)) from exc
        slot = ctx.slots.get((claim.category, Channel.EMAIL))
        if slot is not None and slot.locked:
            return _page(ctx, 409, "These emails cannot be turned off", _locked(claim.category))
        await ctx.pool.execute(
            """
            INSERT INTO herald_preferences (tenant, user_id, category, channel, enabled)
            VALUES ($3, $1, $2, 'email', false)
            ON CONFLICT (tenant, user_id, category, channel) DO UPDATE SET enabled = false, updated_at = now()
            """,
            claim.user_id,
            claim.category,
            claim.tenant,
        )
        return _page(ctx, 200, "You are unsubscribed", f"You will no longer get {claim.category} emails.")

    return r


def _locked(category: str) -> str:
    return f"{category} emails are critical (for example security alerts): they are always delivered."
