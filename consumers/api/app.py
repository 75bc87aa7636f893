"""The FastAPI application: the routers, problem details, the body limit, ``/openapi.json``.

:func:`create_app` takes an :class:`~consumers.api.deps.ApiContext` (the process's clients), so
tests and ``herald run api`` build the same app.
"""

from __future__ import annotations

from fastapi import FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware

from consumers.api import (
    routes_inbox,
    routes_providers,
    routes_settings,
    routes_static,
    routes_unsubscribe,
    routes_webapp,
)
from consumers.api.admin.mount import BATCH_PATHS, admin_routers
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
        # Swagger UI loads its script from a CDN into this origin (the console's, too): opt-in only.
        docs_url="/docs" if ctx.api.swagger_ui else None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_problem_handlers(app)
    app.add_middleware(
        BodyLimit,
        max_bytes=ctx.api.max_body_bytes,
        larger=dict.fromkeys(BATCH_PATHS, ctx.admin.settings.batch_max_bytes) if ctx.admin else None,
    )
    app.include_router(routes_inbox.router(ctx.api))
    app.include_router(routes_settings.router)
    app.include_router(routes_webapp.router)
    app.include_router(routes_unsubscribe.router())
    app.include_router(routes_providers.router())
    app.include_router(routes_static.router(ctx.api))
    if ctx.admin is not None and ctx.admin.keys is not None:  # off without HERALD_ADMIN__KEY_PEPPER
        for admin_router in admin_routers():  # service API keys only (consumers/api/admin)
            app.include_router(admin_router)
    if (
        ctx.api.cors_origins
    ):  # only the listed origins may call from a browser; tokens are headers, not cookies
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(ctx.api.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            allow_credentials=False,
            max_age=600,
        )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    return app
