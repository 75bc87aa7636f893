"""BodyLimit over plain ASGI: the batch paths' bodies are not read before the app decides to."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from consumers.api.limits import BodyLimit
from consumers.api.problems import ProblemError

CHUNK = b"x" * 65_536


def _request(path: str, chunks: int) -> tuple[Scope, Receive, list[int]]:
    scope: Scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    reads = [0]

    async def receive() -> Message:
        reads[0] += 1
        if reads[0] > chunks:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": CHUNK, "more_body": reads[0] < chunks}

    return scope, receive, reads


async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
    """An app answering 401 before reading anything (the admin routes check the key first)."""
    await send({"type": "http.response.start", "status": 401, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _read_all(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _sent(app: Any, path: str, chunks: int) -> tuple[list[Message], int]:
    scope, receive, reads = _request(path, chunks)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent, reads[0]


async def test_a_batch_body_is_not_read_before_the_app_asks() -> None:
    limit = BodyLimit(_refuse, max_bytes=65_536, larger={"/batch": 8 * 1024 * 1024})
    sent, reads = await _sent(limit, "/batch", 100)
    assert (sent[0]["status"], reads) == (401, 0)
    sent, reads = await _sent(limit, "/other", 100)  # small limit: read up to it, then 413
    assert (sent[0]["status"], reads) == (413, 2)


async def test_a_batch_body_read_by_the_app_is_counted_and_refused_past_its_limit() -> None:
    limit = BodyLimit(_read_all, max_bytes=65_536, larger={"/batch": 4 * len(CHUNK)})
    sent, reads = await _sent(limit, "/batch", 4)
    assert (sent[0]["status"], reads) == (200, 4)
    with pytest.raises(ProblemError) as refused:  # the problem handlers answer it in the app
        await _sent(limit, "/batch", 5)
    assert refused.value.status == 413
