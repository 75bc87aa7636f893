"""Log in (an admin API key or a one-time link → a session cookie), log out, static files, and the
mounting of the whole console on the API app."""

from __future__ import annotations

import re
import secrets

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response

from consumers.api.admin.keys import parse_key
from consumers.console import routes_ops, routes_pages
from consumers.console.auth import cookie_name, csrf_matches, same_origin
from consumers.console.context import ConsoleContext
from consumers.console.web import (
    BadRequest,
    Forbidden,
    LoginRequired,
    OperatorSession,
    console_ctx,
    form,
    harden,
    page,
    redirect,
    require_csrf,
    secure_cookie,
    session_token,
)

__all__ = ["mount"]

_LOGIN_COOKIE = "herald_console_login"  # double-submit token of the login form (no session yet)
_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}

# Only a login link's own format pre-fills the form: a crafted ?link= must not plant another value.
_LINK = re.compile(r"hcl_[A-Za-z0-9_-]{43}")
# Credentials that cost a PostgreSQL lookup; their failures count against the client address.
_LOOKED_UP = ("hcl_", "hrk_")

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/login")
async def login_form(request: Request) -> Response:
    token = secrets.token_urlsafe(24)
    link = request.query_params.get("link", "")
    response = page(request, "login.html", None, login_csrf=token, link=link if _LINK.fullmatch(link) else "")
    ctx = console_ctx(request)
    response.set_cookie(
        _LOGIN_COOKIE,
        token,
        max_age=900,
        httponly=True,
        secure=secure_cookie(request, ctx),
        samesite="strict",
        path="/console",
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    ctx = console_ctx(request)
    fields = await form(request)
    if not same_origin(request.headers.get("origin"), request.headers.get("host", "")) or not csrf_matches(
        request.cookies.get(_LOGIN_COOKIE, ""), fields.get("login_csrf")
    ):
        raise Forbidden("login form expired or posted from elsewhere: reload it")
    credential = fields.get("credential", "").strip()
    host = request.client.host if request.client else None
    looked_up = ctx.guard is not None and credential.startswith(_LOOKED_UP)
    parsed = parse_key(credential)
    key_id = parsed[0] if parsed else None
    if looked_up and ctx.guard is not None:
        refused = await ctx.guard.refusal(host, key_id)
        if refused is not None:
            response = _login_error(
                request, 429, "Too many refused credentials from this address: retry later."
            )
            response.headers["Retry-After"] = str(max(1, round(refused.reset_s)))
            return response
    operator = await ctx.verifiers.verify(credential, ctx.clock.now())
    if operator is None:
        if looked_up and ctx.guard is not None:
            await ctx.guard.failed(host)
        return _login_error(
            request, 401, "Not accepted: use an admin-scoped API key or an unused, unexpired login link."
        )
    if key_id is not None and ctx.guard is not None:
        ctx.guard.verified(key_id)
    token, _ = await ctx.sessions.open(operator, ctx.clock.now())
    response = redirect("/console/")
    secure = secure_cookie(request, ctx)
    response.set_cookie(
        cookie_name(secure),
        token,
        max_age=int(ctx.settings.console.session_ttl_s),
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/",  # required by the __Host- prefix; the API's routes never read cookies
    )
    response.delete_cookie(_LOGIN_COOKIE, path="/console")
    return response


def _login_error(request: Request, status: int, error: str) -> Response:
    return page(
        request,
        "login.html",
        None,
        status=status,
        login_csrf=request.cookies.get(_LOGIN_COOKIE, ""),
        link="",
        error=error,
    )


@router.post("/logout")
async def logout(request: Request, session: OperatorSession) -> Response:
    ctx = console_ctx(request)
    require_csrf(request, session, await form(request))
    await ctx.sessions.close(session_token(request, ctx))
    response = redirect("/console/login")
    response.delete_cookie(cookie_name(secure_cookie(request, ctx)), path="/")
    return response


@router.get("/static/{name}")
async def static(request: Request, name: str) -> Response:
    if name not in _STATIC:
        return harden(PlainTextResponse("not found", status_code=404))
    return harden(FileResponse(console_ctx(request).static_dir / name, media_type=_STATIC[name]))


def mount(app: FastAPI, ctx: ConsoleContext) -> None:
    """Serve the console on ``app`` under /console/."""
    app.state.console = ctx

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _: LoginRequired) -> Response:
        if request.method in ("GET", "HEAD"):
            return redirect("/console/login")
        return harden(PlainTextResponse("log in first", status_code=403))

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, exc: BadRequest) -> Response:
        return harden(PlainTextResponse(f"bad request: {exc}", status_code=400))

    @app.exception_handler(Forbidden)
    async def forbidden(_: Request, exc: Forbidden) -> Response:
        return harden(PlainTextResponse(f"forbidden: {exc}", status_code=403))

    app.include_router(router)
    app.include_router(routes_pages.router)
    app.include_router(routes_ops.router)
