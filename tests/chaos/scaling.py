"""Scale a Herald process to N replicas and back, the way KEDA does: real processes in the same
consumer group, started and then stopped with SIGTERM (Kubernetes' stop), never SIGKILL.

    replicas = Replicas(pipeline)
    await replicas.scale("push", 6)    # the pipeline's own process plus 5 more
    await replicas.scale("push", 1)    # SIGTERM the extras, newest first; wait for their exit
    replicas.stopped                   # (name, exit code, seconds from SIGTERM to exit)

Exit code 0 means the process finished its batch in flight and committed within its grace
period (``consumers.runtime.process.serve``); 1 means it was abandoned mid-batch.

:class:`GroupWatch` times the rebalances: it samples ``herald_assigned_partitions`` on every live
member of one process's group (four times a second; a member that has not been assigned yet shows
no value, one assigned nothing shows 0). The group is *covered* when its members hold every
partition between them, *settled* when every member that answers has joined and the partitions
are spread evenly over them. The
longest uncovered stretch is the rebalance a record could wait through.
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
from tests.chaos.faults import group_of
from tests.chaos.pipeline import PROCESSES, Pipeline

__all__ = ["GroupWatch", "Replicas", "Stopped", "balanced", "longest_uncovered"]


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

    def members(self, name: str) -> list[tuple[subprocess.Popen[bytes], int]]:
        """(process, metrics port) of every running replica of ``name``, the pipeline's own first."""
        own = self.pipeline.procs[name]
        out = [(own, self.pipeline.ports[name])] if own.poll() is None else []
        return out + [(p, self.ports[p.pid]) for p in self.extra.get(name, []) if p.poll() is None]

    async def live(self, timeout_s: float = 120.0, names: list[str] | None = None) -> float:
        """Wait until every replica answers ``/healthz`` (started; it joins its group next); seconds.
        With ``names``, every running replica of those, the pipeline's own included."""
        t0 = time.monotonic()
        if names is None:
            procs = [(p, self.ports[p.pid]) for ps in self.extra.values() for p in ps]
        else:
            procs = [m for n in names for m in self.members(n)]
        async with httpx.AsyncClient(timeout=2) as client:
            for proc, port in procs:
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"replica {proc.args!r} exited with {proc.returncode}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
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


def balanced(counts: list[int | None], partitions: int) -> bool:
    """Every member that answered has joined (None: no assignment yet), every partition is held
    once, and they are spread evenly (round robin) over the members."""
    held = [c for c in counts if c is not None]
    return bool(held) and len(held) == len(counts) and sum(held) == partitions and max(held) - min(held) <= 1


def longest_uncovered(samples: list[tuple[float, list[int | None]]], partitions: int) -> float:
    """Longest stretch, in seconds, from a sample whose members held fewer than ``partitions`` to
    the next one where they held them all again (still uncovered at the end: up to the last sample)."""
    longest, since = 0.0, None
    for at, counts in samples:
        if sum(c or 0 for c in counts) < partitions:
            since = at if since is None else since
        elif since is not None:
            longest, since = max(longest, at - since), None
    if since is not None and samples:
        longest = max(longest, samples[-1][0] - since)
    return longest


@dataclass
class GroupWatch:
    """Samples the partitions each live member of ``name``'s group holds, until :meth:`stop`."""

    replicas: Replicas
    name: str
    samples: list[tuple[float, list[int | None]]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    @property
    def group(self) -> str:
        return group_of(self.replicas.pipeline, PROCESSES[self.name])[0]

    @property
    def partitions(self) -> int:
        pipeline = self.replicas.pipeline
        return pipeline.settings.partitions * len(group_of(pipeline, PROCESSES[self.name])[1])

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        needle = f'herald_assigned_partitions{{group="{self.group}"}} '
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                counts: list[int | None] = []
                for _, port in self.replicas.members(self.name):
                    with contextlib.suppress(httpx.HTTPError):
                        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                        held = [ln for ln in text.splitlines() if ln.startswith(needle)]
                        counts.append(int(float(held[0].rsplit(" ", 1)[1])) if held else None)
                self.samples.append((time.monotonic(), counts))
                await asyncio.sleep(0.25)

    async def settled(self, since: float, timeout_s: float = 120.0) -> float:
        """Seconds from ``since`` until a sample taken after it shows the group settled."""
        while time.monotonic() - since < timeout_s:
            for at, counts in self.samples:
                if at > since and balanced(counts, self.partitions):
                    return at - since
            await asyncio.sleep(0.25)
        raise TimeoutError(f"{self.group} not settled {timeout_s}s after the step: {self.samples[-3:]}")

    def rebalance_s(self, start: float, end: float) -> float:
        """The longest stretch in [start, end] during which some partition had no member."""
        return longest_uncovered([s for s in self.samples if start <= s[0] <= end], self.partitions)
