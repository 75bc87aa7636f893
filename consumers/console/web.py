"""The console's HTTP plumbing: rendering with security headers, form bodies, the session
dependency and the CSRF check every state-changing route calls."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from consumers.console.auth import Session, cookie_name, csrf_matches, same_origin, use_secure_cookie
from consumers.console.context import ConsoleContext
from consumers.console.flash import flash_text
from schemas.errors import HeraldError

__all__ = [
    "SECURITY_HEADERS",
    "BadRequest",
    "Forbidden",
    "LoginRequired",
    "OperatorSession",
    "console_ctx",
    "form",
    "harden",
    "page",
    "redirect",
    "require_csrf",
    "secure_cookie",
    "session_token",
]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_MAX_FORM_BYTES = 16_384


class BadRequest(HeraldError):
    """A console form or query that cannot be acted on (unknown topic, disabled endpoint...)."""


class LoginRequired(HeraldError):
    """No valid session: pages redirect to the login form, forms get 403."""


class Forbidden(HeraldError):
    """A state-changing request without a matching CSRF token or from another origin."""


def console_ctx(request: Request) -> ConsoleContext:
    ctx: ConsoleContext = request.app.state.console
    return ctx


def secure_cookie(request: Request, ctx: ConsoleContext) -> bool:
    return use_secure_cookie(
        ctx.settings.console.secure_cookies, request.headers.get("host", ""), request.url.scheme
    )


def session_token(request: Request, ctx: ConsoleContext) -> str | None:
    return request.cookies.get(cookie_name(secure_cookie(request, ctx)))


async def _session(request: Request) -> Session:
    ctx = console_ctx(request)
    session = await ctx.sessions.get(session_token(request, ctx), ctx.clock.now())
    if session is None:
        raise LoginRequired()
    return session


OperatorSession = Annotated[Session, Depends(_session)]


def harden(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def page(
    request: Request, name: str, session: Session | None, status: int = 200, **values: Any
) -> HTMLResponse:
    ctx = console_ctx(request)
    html = ctx.env.get_template(name).render(
        session=session,
        csrf=session.csrf_token if session else "",
        path=request.url.path,
        msg=flash_text(request.query_params, ctx.dlq_topics),
        **values,
    )
    response = HTMLResponse(html, status_code=status)
    harden(response)
    return response


def redirect(path: str, **query: str) -> RedirectResponse:
    target = f"{path}?{urlencode(query)}" if query else path
    response = RedirectResponse(target, status_code=303)
    harden(response)
    return response


async def form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the console's forms post nothing else)."""
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise Forbidden("form too large")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def require_csrf(request: Request, session: Session, fields: dict[str, str]) -> None:
    if not same_origin(request.headers.get("origin"), request.headers.get("host", "")):
        raise Forbidden("cross-origin request refused")
    if not csrf_matches(session.csrf_token, fields.get("csrf")):
        raise Forbidden("missing or wrong CSRF token")
