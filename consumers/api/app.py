"""The FastAPI application: the routers, problem details, the body limit, ``/openapi.json``.

:func:`create_app` takes an :class:`~consumers.api.deps.ApiContext` (the process's clients), so
tests and ``herald run api`` build the same app.
"""

from __future__ import annotations

from fastapi import FastAPI, Response

from consumers.api import routes_inbox, routes_settings
from consumers.api.deps import ApiContext
from consumers.api.limits import BodyLimit
from consumers.api.problems import install_problem_handlers, problem_responses

__all__ = ["create_app"]


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="Herald API",
        version="1",
        description="The in-app inbox, notification preferences, quiet hours, push devices and receipts of "
        "the user named by the bearer token. Errors are RFC 9457 problem details.",
        responses=problem_responses(400, 401, 413, 422, 429),
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_problem_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=ctx.api.max_body_bytes)
    app.include_router(routes_inbox.router(ctx.api))
    app.include_router(routes_settings.router())

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    return app
