"""A running Herald process, scraped for real: `promtool check metrics`, then a Prometheus server.

One `herald run passthrough` subprocess (the real CLI entry point) runs against the dev stack for
the whole module; events flow through it so counters, histograms and lag gauges carry samples.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from consumers.devstack import DevStack
from consumers.emitter import build_event
from consumers.infra.settings import HeraldSettings
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from tests.conftest import make_settings
from tests.kafka_helpers import produce_raw, wait_for_records
from tests.ops._tools import require_tool

EVENTS = 7


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _start(args: list[str], log: Path, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(*args, env=env, stdout=out, stderr=subprocess.STDOUT)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _wait_ok(url: str, proc: asyncio.subprocess.Process, within: float) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise AssertionError(f"process exited with {proc.returncode} before {url} answered")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} not OK after {within}s")


async def _promtool_check_metrics(text: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        require_tool("promtool"),
        "check",
        "metrics",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(text.encode()), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@dataclass
class RunningHerald:
    settings: HeraldSettings
    port: int

    @property
    def consumed(self) -> str:
        return f'herald_consumed_total{{consumer="passthrough",topic="{self.settings.topic_prefix}.events"}}'


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def herald(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningHerald]:
    port = _free_port()
    settings = make_settings(stack, metrics_port=port)
    env = {
        **os.environ,
        **stack.env(),
        "HERALD_TOPIC_PREFIX": settings.topic_prefix,
        "HERALD_METRICS_HOST": "127.0.0.1",
        "HERALD_METRICS_PORT": str(port),
        "HERALD_PARTITIONS": "2",
        "HERALD_RUNTIME__SESSION_TIMEOUT_MS": "6000",
        "HERALD_RUNTIME__HEARTBEAT_INTERVAL_MS": "500",
    }
    log = tmp_path_factory.mktemp("herald") / "herald.log"
    proc = await _start([str(Path(sys.executable).parent / "herald"), "run", "passthrough"], log, env)
    try:
        await _wait_ok(f"http://127.0.0.1:{port}/readyz", proc, 60)
        codec = default_codec()
        await produce_raw(
            settings,
            Topics(settings.topic_prefix).events,
            [
                (f"u{i}".encode(), codec.encode(build_event("comment_reply", user_id=f"u{i}", data={"i": i})))
                for i in range(EVENTS)
            ],
        )
        await wait_for_records(settings, f"{settings.topic_prefix}.passthrough", EVENTS)
        yield RunningHerald(settings, port)
    finally:
        await _stop(proc)
        assert proc.returncode == 0, log.read_text(errors="replace")[-4000:]


async def test_live_scrape_passes_promtool_check_metrics(herald: RunningHerald) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        body = (await client.get(f"http://127.0.0.1:{herald.port}/metrics")).text
    assert f"{herald.consumed} {EVENTS}.0" in body
    assert "herald_handler_seconds_bucket" in body and "herald_consumer_lag{" in body
    code, out = await _promtool_check_metrics(body)
    assert code == 0, out


async def test_promtool_check_metrics_can_fail() -> None:
    """The lint above is not a no-op: a counter without _total is reported."""
    bad = "# HELP herald_oops Oops.\n# TYPE herald_oops counter\nherald_oops 1\n"
    code, out = await _promtool_check_metrics(bad)
    assert code != 0 and "_total" in out


async def test_prometheus_scrapes_herald(herald: RunningHerald, tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    target = {"targets": [f"127.0.0.1:{herald.port}"]}
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [{"job_name": "herald", "static_configs": [target]}],
            }
        )
    )
    log = tmp_path / "prometheus.log"
    proc = await _start(
        [
            require_tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
    )
    api = f"http://127.0.0.1:{port}/api/v1/query"
    result: list[dict[str, Any]] = []
    try:
        await _wait_ok(f"http://127.0.0.1:{port}/-/ready", proc, 30)
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline and not result:
                answer = (await client.get(api, params={"query": herald.consumed})).json()
                assert answer["status"] == "success", answer
                result = answer["data"]["result"]
                if not result:
                    await asyncio.sleep(0.5)
            up = (await client.get(api, params={"query": 'up{job="herald"}'})).json()["data"]["result"]
    finally:
        await _stop(proc)
    assert result, f"Prometheus never saw {herald.consumed}:\n{log.read_text()[-3000:]}"
    assert result[0]["metric"]["job"] == "herald"
    assert float(result[0]["value"][1]) == EVENTS
    assert [float(r["value"][1]) for r in up] == [1.0]
