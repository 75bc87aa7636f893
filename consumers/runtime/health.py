"""``/metrics``, ``/healthz`` and ``/readyz`` for one process, served in its event loop."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from consumers.runtime.http_server import LoopServer

__all__ = ["HealthServer"]

log = logging.getLogger(__name__)


class HealthServer:
    """Liveness is "the loop answers"; readiness is whatever ``is_ready`` says."""

    def __init__(self, host: str, port: int, is_ready: Callable[[], bool]) -> None:
        self.host = host
        self.port = port
        self._is_ready = is_ready
        self._server: LoopServer | None = None

    def app(self) -> Starlette:
        async def metrics(_: Request) -> Response:
            return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

        async def healthz(_: Request) -> Response:
            return PlainTextResponse("ok\n")

        async def readyz(_: Request) -> Response:
            ok = self._is_ready()
            return PlainTextResponse("ready\n" if ok else "not ready\n", status_code=200 if ok else 503)

        return Starlette(
            routes=[Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)]
        )

    async def start(self) -> None:
        self._server = LoopServer(self.app(), self.host, self.port)
        await self._server.start()
        self.port = self._server.port
        log.info("metrics and health on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
