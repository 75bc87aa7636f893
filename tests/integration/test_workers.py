"""``herald run passthrough --workers 2`` against the real broker: two group members in one
supervisor, one /metrics and /readyz for both, a killed worker restarted, SIGTERM drains all."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from consumers.devstack import DevStack
from consumers.emitter import build_event
from consumers.runtime.topics import Topics
from consumers.runtime.workers import free_loopback_port
from schemas.codec import default_codec
from tests.conftest import make_settings
from tests.kafka_helpers import produce_raw, read_all

ROOT = Path(__file__).resolve().parents[2]


async def _until(predicate: object, what: str, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout}s:\n{log.read_text()[-3000:]}")


def _started(log: Path) -> list[tuple[int, int]]:
    return [(int(i), int(p)) for i, p in re.findall(r"worker (\d+) started: pid=(\d+)", log.read_text())]


def _events(numbers: range) -> list[tuple[bytes, bytes]]:
    codec = default_codec()
    return [(f"k{i}".encode(), codec.encode(build_event("comment_reply", user_id=f"u{i}"))) for i in numbers]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_two_workers_share_a_group_survive_a_kill_and_drain_on_sigterm(
    stack: DevStack, tmp_path: Path
) -> None:
    settings = make_settings(stack)
    topics = Topics(settings.topic_prefix)
    target = f"{settings.topic_prefix}.passthrough"
    port = free_loopback_port()
    env = {
        **os.environ,
        **stack.env(),
        "HERALD_TOPIC_PREFIX": settings.topic_prefix,
        "HERALD_PARTITIONS": "4",
        "HERALD_METRICS_HOST": "127.0.0.1",
        "HERALD_METRICS_PORT": str(port),
        "HERALD_RUNTIME__SESSION_TIMEOUT_MS": "6000",
        "HERALD_RUNTIME__HEARTBEAT_INTERVAL_MS": "500",
        "HERALD_RUNTIME__POLL_TIMEOUT_MS": "100",
    }
    log = tmp_path / "supervisor.log"
    argv = [sys.executable, "-m", "consumers.cli.main", "run", "passthrough", "--workers", "2"]
    argv += ["--group", f"{settings.topic_prefix}-pt"]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as http:

            async def ready() -> bool:
                try:
                    return (await http.get(f"{base}/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await _until(ready, "both workers ready", log)
            metrics = (await http.get(f"{base}/metrics")).text
            assert 'worker="0"' in metrics and 'worker="1"' in metrics, metrics[-2000:]

            async def forwarded(n: int) -> bool:
                return len({r.value for r in await read_all(settings, target)}) >= n

            sent = _events(range(200))
            await produce_raw(settings, topics.events, sent)
            await _until(lambda: forwarded(200), "first 200 forwarded", log)

            first = dict(_started(log))
            os.kill(first[0], signal.SIGKILL)
            await _until(lambda: _restart_seen(log), "worker 0 restarted", log)
            await _until(ready, "ready again after the restart", log)
            sent += _events(range(200, 400))
            await produce_raw(settings, topics.events, sent[200:])
            await _until(lambda: forwarded(400), "all 400 forwarded", log)

        pids = [pid for _, pid in _started(log)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        assert not any(_alive(p) for p in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    values = {r.value for r in await read_all(settings, target)}
    assert values == {v for _, v in sent}


async def _restart_seen(log: Path) -> bool:
    return [i for i, _ in _started(log)].count(0) == 2


async def test_workers_stop_when_their_supervisor_is_killed(stack: DevStack, tmp_path: Path) -> None:
    """Outside a container nothing reaps orphans: a SIGKILLed supervisor must not leave workers
    consuming in the group."""
    settings = make_settings(stack)
    env = {
        **os.environ,
        **stack.env(),
        "HERALD_TOPIC_PREFIX": settings.topic_prefix,
        "HERALD_METRICS_PORT": "0",
    }
    log = tmp_path / "supervisor.log"
    argv = [sys.executable, "-m", "consumers.cli.main", "run", "passthrough", "--workers", "2"]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: ASYNC220

    async def both_started() -> bool:
        return len(_started(log)) == 2

    try:
        await _until(both_started, "two workers started", log)
    finally:
        proc.kill()
        proc.wait(10)
    pids = [pid for _, pid in _started(log)]

    async def all_gone() -> bool:
        return not any(_alive(p) for p in pids)

    await _until(all_gone, "workers gone after their supervisor's SIGKILL", log, timeout=60)
