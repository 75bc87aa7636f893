"""A webhook receiver for ``herald dev``: verifies Standard Webhooks signatures and keeps what arrived."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from channels.webhook.signing import WebhookVerificationError, verify

__all__ = ["WebhookSink"]


@dataclass
class WebhookSink:
    secret: str
    received: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        try:
            verified = verify(self.secret, dict(request.headers), body, now=time.time())
        except WebhookVerificationError as exc:
            self.received.append({"ok": False, "error": str(exc)})
            return JSONResponse({"error": str(exc)}, status_code=400)
        self.received.append({"ok": True, "id": verified.msg_id, "bytes": len(body)})
        return JSONResponse({"ok": True})

    def start(self) -> Self:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/hooks", self._hook, methods=["POST"])])
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        )
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
