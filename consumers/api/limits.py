"""Request body limit: larger bodies get a 413 problem before any handler reads them.

Every method but GET/HEAD/OPTIONS is limited (a DELETE may carry a body, and the route
decides only after the body is read whether the caller may send one at all).

Bodies up to the small default limit are read here, before the app. The paths with a larger limit
of their own (the admin API's batches, 8 MiB) are not: their handlers read the body only after the
API key checked out, through a receive that counts and refuses past the limit, so an
unauthenticated upload is answered 401 without being buffered (N concurrent ones no longer cost
N × 8 MiB)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consumers.api.problems import ProblemError, problem_response

__all__ = ["BodyLimit"]

_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyLimit:
    """Pure ASGI middleware. The body is read up to the limit (API bodies are small) and then
    replayed to the app, so a chunked body that grows past the limit is refused as well."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}  # exact paths with a limit of their own (the admin API's batches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _BODYLESS:
            await self.app(scope, receive, send)
            return
        larger = self.larger.get(scope.get("path", ""))
        limit = self.max_bytes if larger is None else larger
        too_big = problem_response(
            413, f"request body over {limit} bytes", kind="too-large", instance=scope.get("path")
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await too_big(scope, receive, send)
                    return
        if larger is not None:
            await self.app(scope, _counting(receive, limit), send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)


def _counting(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises a 413 problem once the body passes ``limit`` (the route's handler
    reads the body, so the problem handlers answer it)."""
    size = 0

    async def counted() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise ProblemError(413, f"request body over {limit} bytes", kind="too-large")
        return message

    return counted


def _replay(messages: list[Message], then: Receive) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return await then()  # waits for the real disconnect

    return receive
