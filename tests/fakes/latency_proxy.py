"""A TCP proxy on loopback that makes a dependency slow rather than dead.

    with LatencyProxy(("127.0.0.1", pg_port)) as proxy:   # its own thread and event loop
        dsn = f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"
        proxy.set(delay_s=0.2)      # every answer arrives 200 ms late: +200 ms per round trip
        proxy.set(delay_s=2.0)
        proxy.set(stall=True)       # connections stay open, nothing comes back (packet loss)
        proxy.set()                 # healthy again; stalled bytes are delivered, in order

Protocol-agnostic (PostgreSQL, Redis, HTTP): the delay applies to the server → client
direction, chunk by chunk and in order, so one request/response exchange costs one delay.
A stall holds bytes in both directions without closing anything, as a black-holed route
does: clients see it only through their own timeouts. It runs in a thread of its own so the
test's event loop (and the processes under test) see a real, independent network hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Self

__all__ = ["LatencyProxy", "Slowness"]

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Slowness:
    delay_s: float = 0.0  # added to every server → client chunk
    stall: bool = False  # hold everything, close nothing


class LatencyProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.slowness = Slowness()
        self.connections = 0  # accepted so far
        self.open = 0  # open now
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._resume: asyncio.Event | None = None
        self._ready = threading.Event()

    # -- control (any thread) ------------------------------------------------------------------
    def set(self, delay_s: float = 0.0, *, stall: bool = False) -> None:
        self.slowness = Slowness(delay_s, stall)
        loop, resume = self._loop, self._resume
        if loop is not None and resume is not None:
            loop.call_soon_threadsafe(resume.clear if stall else resume.set)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="latency-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("latency proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._resume = asyncio.Event()
        self._resume.set()
        self._server = loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            # until every connection's task has finished: one left pending is collected later,
            # closing its sockets on a closed loop inside whichever test runs then
            loop.run_until_complete(_finished(tasks))
            loop.close()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            self.open -= 1
            client_w.close()
            return
        try:
            await asyncio.gather(
                self._pump(client_r, server_w, delayed=False),
                self._pump(server_r, client_w, delayed=True),
            )
        finally:
            self.open -= 1
            for w in (client_w, server_w):
                w.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delayed: bool
    ) -> None:
        """Copy one direction; answers wait out the delay in order (a queue keeps them sequenced)."""
        assert self._resume is not None
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            assert self._resume is not None
            while True:
                due, chunk = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._resume.wait()
                if not chunk:
                    return
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                chunk = await reader.read(_CHUNK)
                delay = self.slowness.delay_s if delayed else 0.0
                await queue.put((time.monotonic() + delay, chunk))
                if not chunk:
                    break
            await sender
        except (ConnectionError, asyncio.CancelledError):
            sender.cancel()
        finally:
            with contextlib.suppress(Exception):
                if writer.can_write_eof():
                    writer.write_eof()


async def _finished(tasks: set[asyncio.Task[object]]) -> None:
    """Every one of ``tasks`` done (gathered inside the loop: with none, gather asks for a loop)."""
    await asyncio.gather(*tasks, return_exceptions=True)
