"""Herald processes for benchmarks: start with metrics ports, wait until ready, read RSS, stop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.devstack import DevStack
from consumers.devstack.processes import free_port, spawn_herald, stop
from consumers.infra.settings import HeraldSettings

__all__ = ["HeraldProcs", "committed_total", "rss_mib"]

LOGS = Path(".herald-bench")


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
        return proc

    async def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            for name, (proc, port) in self.procs.items():
                last = "no answer"
                while True:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with {proc.returncode}; see {LOGS / name}.log")
                    try:
                        answer = await client.get(f"http://127.0.0.1:{port}/readyz")
                        if answer.status_code == 200:
                            break
                        last = answer.text.strip().replace("\n", "; ")
                    except httpx.HTTPError as exc:
                        last = f"{type(exc).__name__}"
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} not ready after {timeout}s (last /readyz: {last})")
                    await asyncio.sleep(0.2)

    def stop_all(self) -> None:
        for proc, _ in self.procs.values():
            stop(proc)
        self.procs.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop_all()


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
