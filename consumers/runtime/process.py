"""One Herald process: what it runs (:class:`ProcessSpec`), how it was asked to run
(:class:`ProcessOptions`), and :func:`serve`, which runs it with a health server, signals and a
grace period. Every process module exposes ``async def build(res, options) -> ProcessSpec``."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from consumers.infra.resources import Resources
from consumers.infra.settings import HeraldSettings
from consumers.runtime.health import HealthServer
from consumers.runtime.metrics import count_legacy_headers
from consumers.runtime.runner import Runner
from consumers.runtime.taskdump import install as install_task_dump
from schemas.codec import default_codec

__all__ = ["BackgroundLoop", "ProcessFactory", "ProcessOptions", "ProcessSpec", "serve"]

log = logging.getLogger(__name__)

BackgroundLoop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""A coroutine that runs until the event is set (scheduler poller, janitor...)."""


@dataclass(frozen=True, slots=True)
class ProcessOptions:
    """How a process was asked to run; each process reads the fields that concern it."""

    channel: str | None = None  # channel process: email, sms, push, in_app, webhook
    lane: str = "priority"  # channel process: priority or bulk
    group: str | None = None  # consumer group id; None = the process's default
    target: str | None = None  # passthrough: topic to forward to


@dataclass
class ProcessSpec:
    """What a process runs: Kafka runners, background loops, and what to close at the end."""

    runners: list[Runner[Any]] = field(default_factory=list)
    loops: list[BackgroundLoop] = field(default_factory=list)
    on_stop: Callable[[], Awaitable[None]] | None = None


ProcessFactory = Callable[[Resources, ProcessOptions], Awaitable[ProcessSpec]]


async def serve(
    settings: HeraldSettings,
    runners: Sequence[Runner[Any]],
    loops: Sequence[BackgroundLoop] = (),
    *,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    install_signals: bool = True,
) -> int:
    """Run until SIGTERM/SIGINT; then finish in-flight work within the grace period. Returns an exit code."""
    stopping = asyncio.Event()
    count_legacy_headers(default_codec())  # every process decodes with the shared codec
    health = HealthServer(
        settings.metrics_host,
        settings.metrics_port,
        lambda: all(r.ready for r in runners) and not stopping.is_set(),
    )
    await health.start()

    def request_stop() -> None:
        if not stopping.is_set():
            log.info("stopping: finishing in-flight work (grace %.0fs)", settings.runtime.shutdown_grace_s)
        stopping.set()
        for r in runners:
            r.stop()

    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, request_stop)
        remove_dump = install_task_dump(runners, [r.handler.name for r in runners])

    tasks = [asyncio.create_task(r.run(), name=f"runner:{r.handler.name}") for r in runners]
    tasks += [asyncio.create_task(fn(stopping), name=f"loop:{getattr(fn, '__name__', fn)}") for fn in loops]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        code = _report_failures(done)
        request_stop()
        code = max(code, await _finish_within(tasks, settings.runtime.shutdown_grace_s))
    finally:
        if on_stop is not None:
            await on_stop()
        await health.stop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            remove_dump()
    return code


def _report_failures(done: Iterable[asyncio.Task[Any]]) -> int:
    """Log every task that ended with an exception; the exit code: 1 if any did."""
    code = 0
    for t in done:
        if not t.cancelled() and t.exception() is not None:
            log.error("%s failed", t.get_name(), exc_info=t.exception())
            code = 1
    return code


async def _finish_within(tasks: Sequence[asyncio.Task[Any]], grace_s: float) -> int:
    """Let the tasks finish; cancel those still running after ``grace_s``. The exit code: 1 if any were."""
    _, late = await asyncio.wait(tasks, timeout=grace_s)
    if not late:
        return 0
    log.error(
        "grace period over: abandoning %s (uncommitted work will be replayed)",
        [t.get_name() for t in late],
    )
    for t in late:
        t.cancel()
    return 1
