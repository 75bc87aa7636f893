"""``herald run api``: the apps' HTTP API, with the inbox stream's LISTEN loop beside it."""

from __future__ import annotations

import argparse
import asyncio

from consumers.api.app import create_app
from consumers.api.server import ApiServer, open_context
from consumers.cli.errors import CliError
from consumers.cli.run import ProcessSpec
from consumers.resources import Resources

__all__ = ["build"]


async def build(res: Resources, _: argparse.Namespace) -> ProcessSpec:
    try:
        ctx = await open_context(res)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    server = ApiServer(create_app(ctx), res.settings.api.host, res.settings.api.port)

    async def serve_api(stopping: asyncio.Event) -> None:
        await server.start()
        await stopping.wait()
        ctx.hub.close()  # ends open event streams, so uvicorn need not wait for their clients
        await server.stop()

    return ProcessSpec(loops=[ctx.hub.run, serve_api])
