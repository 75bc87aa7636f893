"""Open the API's clients from :class:`~consumers.resources.Resources` and serve the app with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from consumers.api.auth import TokenKeys
from consumers.api.deps import ApiContext
from consumers.api.preferences import preference_slots
from consumers.api.ratelimit import RateLimiter
from consumers.api.stream import InboxHub
from consumers.classifier.routing import load_routing
from consumers.kafka import create_topics
from consumers.resources import Resources
from schemas.codec import default_codec

__all__ = ["ApiServer", "open_context"]

log = logging.getLogger(__name__)


async def open_context(res: Resources) -> ApiContext:
    """Raises ValueError for a bad key configuration (before anything is opened)."""
    settings = res.settings
    keys = TokenKeys.from_settings(settings.api)
    routing = load_routing(settings.classifier.routing_file)
    pool = await res.pool()
    producer = await res.producer()
    await create_topics(settings, [res.topics.receipts])
    api = settings.api
    limiter = RateLimiter(
        res.redis(),
        limit=api.rate_limit_requests,
        window_s=api.rate_limit_window_s,
        prefix=api.rate_limit_key_prefix,
    )
    return ApiContext(
        api=api,
        keys=keys,
        pool=pool,
        producer=producer,
        topics=res.topics,
        codec=default_codec(),
        limiter=limiter,
        hub=InboxHub(settings.database_url),
        slots=preference_slots(routing),
    )


class _QuietServer(uvicorn.Server):
    """The process owns SIGTERM/SIGINT (consumers/process.py); uvicorn must not take them over."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """uvicorn in the current event loop, on a socket bound up front (port 0 picks a free one)."""

    def __init__(self, app: FastAPI, host: str, port: int, *, graceful_s: int = 5) -> None:
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
        log.info("API on %s (OpenAPI at %s/openapi.json)", self.url, self.url)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
