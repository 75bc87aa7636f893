"""Log in (an admin API key or a one-time link → a session cookie), log out, static files, and the
mounting of the whole console on the API app."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response

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

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/login")
async def login_form(request: Request) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(
        request, "login.html", None, login_csrf=token, link=request.query_params.get("link", "")[:200]
    )
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
    operator = await ctx.verifiers.verify(fields.get("credential", ""), ctx.clock.now())
    if operator is None:
        return page(
            request,
            "login.html",
            None,
            status=401,
            login_csrf=request.cookies.get(_LOGIN_COOKIE, ""),
            link="",
            error="Not accepted: use an admin-scoped API key or an unused, unexpired login link.",
        )
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
