"""``herald run <process> --workers N``: N worker processes in one container, supervised.

Python runs one event loop on one core; a pod with four cores needs four processes, and four
Deployments would be four things to scale. The supervisor starts N copies of the same process
(each an ordinary member of the consumer group: Kafka spreads partitions across them), restarts
one that dies (see :mod:`consumers.runtime.worker_policy`), and on SIGTERM/SIGINT passes the signal
to every worker and waits for them to drain and commit. Workers serve their metrics on loopback
ports the supervisor picks; the supervisor's own ``/metrics`` merges them (label ``worker``) and
``/readyz`` is ready only when every worker is.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from consumers.infra.settings import HeraldSettings
from consumers.runtime.http_server import LoopServer
from consumers.runtime.metrics_merge import MergedMetrics, merge_expositions
from consumers.runtime.worker_policy import RestartPolicy, restart_delay

__all__ = ["Supervisor", "free_loopback_port"]

log = logging.getLogger(__name__)

_LOOPBACK = "127.0.0.1"


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the worker, before exec: SIGTERM when the supervisor dies, even by SIGKILL, so a
    supervisor killed outside a container never leaves workers behind in the consumer group."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def free_loopback_port() -> int:
    """A port nothing listens on right now (the worker binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class _Worker:
    index: int
    port: int
    proc: asyncio.subprocess.Process | None = None
    # Only the exits the restart policy can count are kept (the supervisor sizes it): a pod up
    # for months stays bounded.
    exits: deque[float] = field(default_factory=deque)
    restarts: int = 0


class Supervisor:
    """Keeps ``count`` copies of ``command`` running until stopped; returns an exit code."""

    def __init__(
        self,
        command: Sequence[str],
        count: int,
        settings: HeraldSettings,
        *,
        env: Mapping[str, str] | None = None,
        policy: RestartPolicy | None = None,
    ) -> None:
        if count < 1:
            raise ValueError(f"workers must be >= 1, got {count}")
        self.command = list(command)
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        self.policy = policy or RestartPolicy()
        kept = self.policy.max_restarts + 1
        self.workers = [_Worker(i, free_loopback_port(), exits=deque(maxlen=kept)) for i in range(count)]
        self.stopping = asyncio.Event()
        self.gave_up = False
        self._merged = MergedMetrics()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._merged)
        self.port = settings.metrics_port

    async def run(self, *, install_signals: bool = True) -> int:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        server = LoopServer(self._app(), self.settings.metrics_host, self.settings.metrics_port)
        await server.start()
        self.port = server.port
        log.info("supervising %d workers; metrics on http://%s:%d", len(self.workers), server.host, self.port)
        try:
            codes = await asyncio.gather(*(self._keep(w) for w in self.workers))
        finally:
            await server.stop()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        return 1 if self.gave_up else max(0, *codes)

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: passing SIGTERM to %d workers", len(self.workers))
        self.stopping.set()

    async def _spawn(self, w: _Worker) -> asyncio.subprocess.Process:
        env = {**self.env, "HERALD_METRICS_HOST": _LOOPBACK, "HERALD_METRICS_PORT": str(w.port)}
        proc = await asyncio.create_subprocess_exec(*self.command, env=env, preexec_fn=_die_with_parent)
        log.info("worker %d started: pid=%d metrics=http://%s:%d", w.index, proc.pid, _LOOPBACK, w.port)
        return proc

    async def _keep(self, w: _Worker) -> int:
        """Run worker ``w`` until stopping; restart it when it exits by itself."""
        while True:
            w.proc = proc = await self._spawn(w)
            exited = asyncio.create_task(proc.wait())
            stop = asyncio.create_task(self.stopping.wait())
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
            if self.stopping.is_set():
                stop.cancel()
                return await self._drain(proc, exited)
            stop.cancel()
            now = time.monotonic()
            w.exits.append(now)
            delay = restart_delay(self.policy, w.exits, now)
            if delay is None:
                log.error(
                    "worker %d exited %d times within %.0fs: giving up",
                    w.index,
                    len(w.exits),
                    self.policy.window_s,
                )
                self.gave_up = True
                self.stop()
                return 1
            log.warning("worker %d exited with %s; restarting in %.1fs", w.index, proc.returncode, delay)
            w.restarts += 1
            try:
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)
                return 0  # stopped while waiting to restart: nothing runs
            except TimeoutError:
                continue

    async def _drain(self, proc: asyncio.subprocess.Process, exited: asyncio.Task[int]) -> int:
        """SIGTERM, then the worker's own grace period (plus a margin); SIGKILL only after that."""
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(exited, timeout=self.settings.runtime.shutdown_grace_s + 5.0)
        except TimeoutError:
            log.error("worker pid=%d did not stop within its grace period: killing it", proc.pid)
            proc.kill()
            await proc.wait()
            return 1

    async def _scrape(self, client: httpx.AsyncClient, w: _Worker, path: str) -> httpx.Response | None:
        try:
            return await client.get(f"http://{_LOOPBACK}:{w.port}{path}", timeout=2.0)
        except httpx.HTTPError:
            return None

    def _app(self) -> Starlette:
        async def metrics(_: Request) -> Response:
            async with httpx.AsyncClient() as client:
                answers = await asyncio.gather(*(self._scrape(client, w, "/metrics") for w in self.workers))
            texts = [
                (str(w.index), a.text) for w, a in zip(self.workers, answers, strict=True) if a is not None
            ]
            self._merged.families = merge_expositions(texts)
            return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)

        async def healthz(_: Request) -> Response:
            return PlainTextResponse("ok\n")

        async def readyz(_: Request) -> Response:
            async with httpx.AsyncClient() as client:
                answers = await asyncio.gather(*(self._scrape(client, w, "/readyz") for w in self.workers))
            ready = not self.stopping.is_set() and all(
                a is not None and a.status_code == 200 for a in answers
            )
            body = "".join(
                f"worker {w.index}: {'ready' if a is not None and a.status_code == 200 else 'not ready'}\n"
                for w, a in zip(self.workers, answers, strict=True)
            )
            return PlainTextResponse(body, status_code=200 if ready else 503)

        return Starlette(
            routes=[Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)]
        )
