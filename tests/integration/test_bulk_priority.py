"""``herald run channel --lane bulk`` yields the CPU: it and its workers run at
``HERALD_RUNTIME__BULK_NICE``, every thread of them, and fetch with
``HERALD_RUNTIME__BULK_FETCH_MAX_WAIT_MS``; the priority lane keeps the priority it was started
with and its own fetch wait."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from consumers.devstack import DevStack
from consumers.runtime.workers import free_loopback_port
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
BASE = os.getpriority(os.PRIO_PROCESS, 0)  # what the processes inherit from the test run


def _nice_of_threads(pid: int) -> set[int]:
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        out.add(int(stat[stat.rindex(")") + 2 :].split()[16]))  # field 19 of proc(5)
    return out


async def _ready(port: int, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"not ready within {timeout}s:\n{log.read_text()[-3000:]}")


async def test_the_bulk_lane_and_its_workers_run_at_a_lower_priority_the_priority_lane_does_not(
    stack: DevStack, tmp_path: Path
) -> None:
    settings = make_settings(stack)
    env = {
        **os.environ,
        **stack.env(),
        "HERALD_TOPIC_PREFIX": settings.topic_prefix,
        "HERALD_METRICS_HOST": "127.0.0.1",
        "HERALD_CHANNEL__DRY_RUN": "true",
        "HERALD_RUNTIME__BULK_NICE": "15",
        "HERALD_RUNTIME__BULK_FETCH_MAX_WAIT_MS": "123",
    }
    procs: dict[str, tuple[subprocess.Popen[bytes], int, Path]] = {}
    for lane, extra in (("bulk", ["--workers", "2"]), ("priority", [])):
        port = free_loopback_port()
        log = tmp_path / f"{lane}.log"
        argv = [sys.executable, "-m", "consumers.cli.main", "run", "channel", "--channel", "email"]
        with log.open("ab") as out:
            procs[lane] = (
                subprocess.Popen(  # noqa: ASYNC220
                    [*argv, "--lane", lane, *extra],
                    cwd=ROOT,
                    env={**env, "HERALD_METRICS_PORT": str(port)},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                ),
                port,
                log,
            )
    try:
        for _, port, log in procs.values():
            await _ready(port, log)
        bulk, _, bulk_log = procs["bulk"]
        workers = [int(p) for p in re.findall(r"worker \d+ started: pid=(\d+)", bulk_log.read_text())]
        assert len(workers) == 2
        expected = {max(BASE, 15)}
        assert _nice_of_threads(bulk.pid) == expected  # the supervisor
        for pid in workers:
            assert _nice_of_threads(pid) == expected  # every thread of every worker
        assert _nice_of_threads(procs["priority"][0].pid) == {BASE}
        # The supervisor and both workers (they log to its output) fetch with the bulk wait.
        assert bulk_log.read_text().count("fetch wait 123 ms") == 3
        assert "fetch wait" not in procs["priority"][2].read_text()
    finally:
        for proc, _, _ in procs.values():
            proc.terminate()
        for proc, _, _ in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
