"""Scale a Herald process to N replicas and back, the way KEDA does: real processes in the same
consumer group, started and then stopped with SIGTERM (Kubernetes' stop), never SIGKILL.

    replicas = Replicas(pipeline)
    await replicas.scale("push", 6)    # the pipeline's own process plus 5 more
    await replicas.scale("push", 1)    # SIGTERM the extras, newest first; wait for their exit
    replicas.stopped                   # (name, exit code, seconds from SIGTERM to exit)

Exit code 0 means the process finished its batch in flight and committed within its grace
period (``consumers.runtime.process.serve``); 1 means it was abandoned mid-batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass, field

import httpx

from consumers.devstack.processes import free_port, spawn_herald
from tests.chaos.pipeline import PROCESSES, Pipeline

__all__ = ["Replicas", "Stopped"]


@dataclass(frozen=True)
class Stopped:
    name: str
    rc: int
    exit_s: float  # SIGTERM -> exit


@dataclass
class Replicas:
    pipeline: Pipeline
    extra: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    stopped: list[Stopped] = field(default_factory=list)
    started: int = 0
    ports: dict[int, int] = field(default_factory=dict)  # pid -> metrics/health port

    def count(self, name: str) -> int:
        return 1 + len(self.extra.get(name, []))

    def rss_pids(self) -> dict[str, int]:
        return {f"{n}#{i + 2}": p.pid for n, ps in self.extra.items() for i, p in enumerate(ps)}

    async def scale(self, name: str, n: int) -> None:
        """Run ``n`` replicas of ``name`` (the pipeline's own counts as one)."""
        extra = self.extra.setdefault(name, [])
        while len(extra) < n - 1:
            self.started += 1
            port = free_port()
            env = {**self.pipeline.env(name), "HERALD_METRICS_PORT": str(port)}
            log = self.pipeline.root / f"{name}-replica{self.started}.log"
            proc = spawn_herald(PROCESSES[name], env=env, log=log)
            self.ports[proc.pid] = port
            extra.append(proc)
        stopping = []
        while len(extra) > max(0, n - 1):
            proc = extra.pop()
            proc.send_signal(signal.SIGTERM)
            stopping.append((proc, time.monotonic()))
        for proc, t0 in stopping:
            rc = await asyncio.to_thread(_wait, proc)
            self.stopped.append(Stopped(name, rc, time.monotonic() - t0))

    async def live(self, timeout_s: float = 120.0) -> float:
        """Wait until every replica answers ``/healthz`` (started; it joins its group next); seconds."""
        t0 = time.monotonic()
        async with httpx.AsyncClient(timeout=2) as client:
            for proc in [p for ps in self.extra.values() for p in ps]:
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"replica {proc.args!r} exited with {proc.returncode}")
                    with contextlib.suppress(httpx.HTTPError):
                        url = f"http://127.0.0.1:{self.ports[proc.pid]}/healthz"
                        if (await client.get(url)).status_code == 200:
                            break
                    if time.monotonic() - t0 > timeout_s:
                        raise TimeoutError(f"replica {proc.args!r} not live after {timeout_s}s")
                    await asyncio.sleep(0.2)
        return time.monotonic() - t0

    async def close(self) -> None:
        for name in list(self.extra):
            await self.scale(name, 1)


def _wait(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9
