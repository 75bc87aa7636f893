"""Herald processes for benchmarks: start with metrics ports, wait until ready, read RSS, stop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.devstack import DevStack
from consumers.devstack.processes import free_port, spawn_herald, stop
from consumers.infra.settings import HeraldSettings

__all__ = ["STACK_TREES", "CommitWatch", "HeraldProcs", "committed_total", "rss_mib", "stack_pids"]

LOGS = Path(".herald-bench")
STACK_TREES = frozenset({"stack-postgres"})  # a backend process per connection: count the children


def stack_pids(stack: DevStack) -> dict[str, int | None]:
    """The embedded servers' pids (``stack-kafka``, ``stack-postgres``...), for a CPU window;
    servers named by the environment (not ours to read) are left out."""
    return {f"stack-{name}": svc.proc.pid for name, svc in stack.services.items() if svc.proc is not None}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class HeraldProcs:
    stack: DevStack
    settings: HeraldSettings
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = field(default_factory=dict)
    _started: dict[str, float] = field(default_factory=dict)  # started, not yet seen ready
    slowest_start_s: ClassVar[float] = 0.0  # the slowest start → ready seen in this run

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.stack.env(),
            "HERALD_TOPIC_PREFIX": self.settings.topic_prefix,
            "HERALD_RUNTIME__SESSION_TIMEOUT_MS": "6000",
            "HERALD_RUNTIME__HEARTBEAT_INTERVAL_MS": "500",
            **self.extra_env,
        }

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        LOGS.mkdir(exist_ok=True)
        port = free_port()
        proc = spawn_herald(
            argv, env={**self.env(), "HERALD_METRICS_PORT": str(port)}, log=LOGS / f"{name}.log"
        )
        self.procs[name] = (proc, port)
        self._started[name] = time.monotonic()
        return proc

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Until every process answers ``/readyz`` 200 in the same pass: a consumer is ready when it
        holds partitions, so all of them at once means their groups have settled with every member.

        ``timeout`` defaults to 10× the slowest start-up seen so far in this run (at least 300 s):
        a loaded machine that started the first processes slowly gets that much longer.
        """
        if timeout is None:
            timeout = max(300.0, 10 * HeraldProcs.slowest_start_s)
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while True:
                waiting = {name: await self._readyz(client, name) for name in self.procs}
                waiting = {name: why for name, why in waiting.items() if why is not None}
                if not waiting:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {timeout:.0f}s (last /readyz: {waiting})")
                await asyncio.sleep(0.2)
        now = time.monotonic()
        for name in list(self._started):
            HeraldProcs.slowest_start_s = max(HeraldProcs.slowest_start_s, now - self._started.pop(name))

    async def _readyz(self, client: httpx.AsyncClient, name: str) -> str | None:
        """None if ``name`` is ready, else why not."""
        proc, port = self.procs[name]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {LOGS / name}.log")
        try:
            answer = await client.get(f"http://127.0.0.1:{port}/readyz")
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return None if answer.status_code == 200 else answer.text.strip().replace("\n", "; ")

    def stop_all(self) -> None:
        for proc, _ in self.procs.values():
            stop(proc)
        self.procs.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop_all()


class CommitWatch:
    """The offsets ``group`` has committed on ``topic``, read as often as asked over one connection
    (a consumer per reading costs a start-up each time, and lags behind a fast group)."""

    def __init__(self, settings: HeraldSettings, group: str, topic: str) -> None:
        self.topic = topic
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False
        )
        self._tps: list[TopicPartition] = []

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        await self._consumer._client.force_metadata_update()
        parts = self._consumer.partitions_for_topic(self.topic) or set()
        self._tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def committed(self) -> int:
        return sum([(await self._consumer.committed(tp)) or 0 for tp in self._tps])


async def committed_total(settings: HeraldSettings, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
        return sum([(await consumer.committed(TopicPartition(topic, p))) or 0 for p in parts])
    finally:
        await consumer.stop()
