"""``herald run api``: the apps' HTTP API, with the inbox stream's LISTEN loop beside it, and the
operators' console under /console/ (with its lag sampler)."""

from __future__ import annotations

import asyncio

from consumers.api.app import create_app
from consumers.api.server import ApiServer, open_context
from consumers.console.context import ConsoleContext
from consumers.console.operator_keys import operator_keys
from consumers.console.routes_auth import mount as mount_console
from consumers.infra.resources import Resources
from consumers.runtime.process import BackgroundLoop, ProcessOptions, ProcessSpec
from schemas.errors import ConfigurationError

__all__ = ["build"]


async def build(res: Resources, _: ProcessOptions) -> ProcessSpec:
    try:
        ctx = await open_context(res)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    app = create_app(ctx)
    loops: list[BackgroundLoop] = [ctx.hub.run]
    if res.settings.console.enabled:
        console = ConsoleContext(
            res.settings,
            ctx.pool,
            key_verifier=operator_keys(ctx.admin.keys if ctx.admin is not None else None),
            redis=res.redis(),
            guard=ctx.admin.guard if ctx.admin is not None else None,
        )
        mount_console(app, console)
        loops.append(console.lag.run)
    server = ApiServer(app, res.settings.api.host, res.settings.api.port)

    async def serve_api(stopping: asyncio.Event) -> None:
        await server.start()
        await stopping.wait()
        ctx.hub.close()  # ends open event streams, so uvicorn need not wait for their clients
        await server.stop()

    loops.append(serve_api)
    if ctx.admin is not None:
        loops.append(ctx.admin.run_flusher)  # keys' last use, written in batches
    return ProcessSpec(loops=loops)
