"""The web components' bundle at a versioned path, and the demo page of ``herald dev``.

``GET /web/{version}/herald.js`` serves ``web/dist/herald.js`` (built by ``make setup``) with
an immutable cache header: a new version is a new URL. ``/demo`` and ``/demo/token`` exist only
when ``HERALD_API__DEMO_USER`` is set (``herald dev`` does): the page's token callback fetches
a short-lived token for that user, as a real app would from its own backend.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, HTMLResponse, JSONResponse

from consumers.api.auth import mint_token
from consumers.api.deps import Ctx
from consumers.api.problems import ProblemError
from consumers.infra.settings import ApiSettings

__all__ = ["BUNDLE", "WEB_DIR", "bundle_path", "router", "web_version"]

WEB_DIR = Path(__file__).resolve().parent / "web"
BUNDLE = WEB_DIR / "dist" / "herald.js"
_DEMO_TOKEN_TTL = timedelta(minutes=15)


@functools.cache
def web_version() -> str:
    version: str = json.loads((WEB_DIR / "package.json").read_text())["version"]
    return version


def bundle_path() -> str:
    return f"/web/{web_version()}/herald.js"


def router(api: ApiSettings) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/web/{version}/herald.js")
    async def bundle(version: str) -> FileResponse:
        if version != web_version():
            raise ProblemError(404, f"this API serves version {web_version()} at {bundle_path()}")
        if not BUNDLE.is_file():
            raise ProblemError(404, "the web components are not built (run `make setup`)")
        return FileResponse(
            BUNDLE,
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    if api.demo_user is None:
        return r
    demo_user = api.demo_user

    @r.get("/demo")
    async def demo() -> HTMLResponse:
        html = (WEB_DIR / "demo.html").read_text().replace("{{BUNDLE}}", bundle_path())
        return HTMLResponse(html.replace("{{USER}}", demo_user), headers={"Cache-Control": "no-store"})

    @r.get("/demo/token")
    async def demo_token(ctx: Ctx) -> JSONResponse:
        token = mint_token(ctx.keys, ctx.api, demo_user, now=datetime.now(UTC), ttl=_DEMO_TOKEN_TTL)
        return JSONResponse({"token": token, "user": demo_user}, headers={"Cache-Control": "no-store"})

    return r
