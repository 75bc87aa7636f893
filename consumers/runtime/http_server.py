"""uvicorn serving an ASGI app inside the current event loop, on a socket bound up front."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

__all__ = ["LoopServer"]


class _QuietServer(uvicorn.Server):
    """The process owns SIGTERM/SIGINT (consumers/runtime/process.py); uvicorn must not take them over."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class LoopServer:
    """Port 0 picks a free port (read ``port`` after :meth:`start`)."""

    def __init__(self, app: ASGIApp, host: str, port: int, *, graceful_s: int = 5) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._graceful_s = graceful_s
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only then, and without
        # it Nagle + delayed ACK add ~40 ms to every keep-alive response (headers, then body).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=self._graceful_s,
        )
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                await self._task
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
