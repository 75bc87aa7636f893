"""A webhook receiver: a real HTTP/1.1 server on 127.0.0.1 (h11 over asyncio streams).

Every request is verified on receipt twice: with Herald's own ``channels.webhook.signing.verify`` and
with the independent ``standardwebhooks`` library. Each path is an endpoint with its own
secrets and behaviour: fail the first N requests, be slow, answer 410, ask to abort, or
answer a fixed status. Deliveries are recorded (by ``webhook-id``) with both verdicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import h11
import standardwebhooks

from channels.webhook.signing import WebhookVerificationError, verify

__all__ = ["Behaviour", "Delivery", "WebhookReceiver", "running_receiver"]


@dataclass
class Behaviour:
    fail_first: int = 0  # answer fail_status to the first N requests, then status
    fail_status: int = 500
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # added to every answer (e.g. abort, Retry-After)
    body: bytes = b"ok"
    requests: int = 0


@dataclass(frozen=True)
class Delivery:
    path: str
    webhook_id: str | None
    headers: dict[str, str]
    body: bytes
    verified_ours: bool
    verified_theirs: bool
    status: int
    at: float

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300 and self.verified_ours and self.verified_theirs


class WebhookReceiver:
    def __init__(self) -> None:
        self.endpoints: dict[str, tuple[list[str], Behaviour]] = {}
        self.deliveries: list[Delivery] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def endpoint(self, path: str, secrets: Sequence[str], behaviour: Behaviour | None = None) -> str:
        """Serve ``path`` expecting signatures by any of ``secrets``; return its URL."""
        self.endpoints[path] = (list(secrets), behaviour or Behaviour())
        return self.base_url + path

    def for_path(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Request):
                    request, body = event, bytearray()
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    assert request is not None
                    status, headers, payload = await self._answer(request, bytes(body))
                    headers = [*headers, ("content-length", str(len(payload)))]
                    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
                    writer.write(conn.send(h11.Data(data=payload)))
                    writer.write(conn.send(h11.EndOfMessage()))
                    await writer.drain()
                    if conn.our_state is h11.MUST_CLOSE:
                        break
                    conn.start_next_cycle()
                else:  # ConnectionClosed, PAUSED
                    break
        except (h11.RemoteProtocolError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # a slow answer still pending when the test's loop shuts down: nothing to report
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, request: h11.Request, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        path = request.target.decode()
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        known = self.endpoints.get(path)
        if known is None:
            return 404, [], b"no such endpoint"
        secrets, behaviour = known
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            behaviour.requests += 1
            if behaviour.delay_s:
                await asyncio.sleep(behaviour.delay_s)
            ours = theirs = True
            try:
                verify(secrets, headers, body, now=time.time())
            except WebhookVerificationError:
                ours = False
            try:
                # the library accepts one secret: any of the endpoint's secrets will do (rotation)
                theirs = any(_theirs(s, headers, body) for s in secrets)
            except Exception:
                theirs = False
            if behaviour.requests <= behaviour.fail_first:
                status = behaviour.fail_status
            elif not (ours and theirs):
                status = 401
            else:
                status = behaviour.status
            self.deliveries.append(
                Delivery(
                    path, headers.get("webhook-id"), headers, body, ours, theirs, status, time.monotonic()
                )
            )
            return status, list(behaviour.headers.items()), behaviour.body
        finally:
            self.in_flight -= 1


def _theirs(secret: str, headers: dict[str, str], body: bytes) -> bool:
    try:
        standardwebhooks.Webhook(secret).verify(body, headers)
    except standardwebhooks.webhooks.WebhookVerificationError:
        return False
    return True


@contextlib.asynccontextmanager
async def running_receiver() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()
