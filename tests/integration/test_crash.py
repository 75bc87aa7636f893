"""Real processes, real signals: SIGKILL before commit loses nothing; SIGTERM finishes and commits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from consumers.devstack import DevStack
from consumers.emitter import build_event
from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import dlq
from schemas.codec import default_codec
from tests.kafka_helpers import committed_offsets, produce_raw, read_all, wait_for_records

ROOT = Path(__file__).resolve().parents[2]


def _spawn(
    stack: DevStack,
    mode: str,
    *,
    source: str,
    target: str,
    group: str,
    marker: Path,
    delay: float = 0.0,
    grace: float = 10.0,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **stack.env(),
        "HERALD_RUNTIME__SESSION_TIMEOUT_MS": "6000",
        "HERALD_RUNTIME__HEARTBEAT_INTERVAL_MS": "500",
        "HERALD_RUNTIME__POLL_TIMEOUT_MS": "100",
        "HERALD_RUNTIME__SHUTDOWN_GRACE_S": str(grace),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.crash_consumer",
            "--mode",
            mode,
            "--source",
            source,
            "--target",
            target,
            "--group",
            group,
            "--marker",
            str(marker),
            "--delay",
            str(delay),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"consumer exited early: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("consumer never reached the marker")
        await asyncio.sleep(0.05)


async def _setup(settings: HeraldSettings, n: int) -> tuple[str, str, list[bytes]]:
    source, target = f"{settings.topic_prefix}.events", f"{settings.topic_prefix}.out"
    await create_topics(settings, [source, dlq(source), target], partitions=1)
    events = [default_codec().encode(build_event("comment_reply", user_id=f"u{i}")) for i in range(n)]
    await produce_raw(settings, source, [(f"u{i}".encode(), e) for i, e in enumerate(events)])
    return source, target, events


async def test_sigkill_after_produce_before_commit_replays_the_input(
    stack: DevStack, settings: HeraldSettings, tmp_path: Path
) -> None:
    source, target, events = await _setup(settings, 20)
    group = f"{settings.topic_prefix}-kill"
    marker = tmp_path / "marker"
    proc = _spawn(stack, "block-commit", source=source, target=target, group=group, marker=marker)
    await _wait_for_file(marker, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    produced = await read_all(settings, target)
    assert sorted(r.value for r in produced) == sorted(events)  # outputs were acknowledged ...
    assert await committed_offsets(settings, group, source) == {0: 0}  # ... but the input not committed

    proc = _spawn(stack, "normal", source=source, target=target, group=group, marker=tmp_path / "unused")
    try:
        replayed = await wait_for_records(settings, target, 2 * len(events))
        deadline = time.monotonic() + 30
        while await committed_offsets(settings, group, source) != {0: len(events)}:
            assert time.monotonic() < deadline, "restarted consumer never committed"
            await asyncio.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    # Every input was processed again after the crash: nothing lost (duplicates carry the same bytes).
    values = [r.value for r in replayed]
    assert all(values.count(e) == 2 for e in events)


async def test_sigterm_mid_batch_finishes_commits_and_exits_zero(
    stack: DevStack, settings: HeraldSettings, tmp_path: Path
) -> None:
    source, target, events = await _setup(settings, 10)
    group = f"{settings.topic_prefix}-term"
    marker = tmp_path / "marker"
    grace = 8.0
    proc = _spawn(
        stack, "slow", source=source, target=target, group=group, marker=marker, delay=2.0, grace=grace
    )
    await _wait_for_file(marker, proc)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # mid-batch: the handler is sleeping
    code = await asyncio.to_thread(proc.wait, grace + 5)
    elapsed = time.monotonic() - t0
    assert code == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert elapsed < grace
    assert len(await read_all(settings, target)) == len(events)  # the in-flight batch finished
    assert await committed_offsets(settings, group, source) == {0: len(events)}  # and was committed
