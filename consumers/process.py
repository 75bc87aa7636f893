"""One Herald process: its runners and background loops, health server, signals, grace period."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from consumers.health import HealthServer
from consumers.runtime import Runner
from consumers.settings import HeraldSettings

__all__ = ["BackgroundLoop", "serve"]

log = logging.getLogger(__name__)

BackgroundLoop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""A coroutine that runs until the event is set (scheduler poller, janitor...)."""


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

    tasks = [asyncio.create_task(r.run(), name=f"runner:{r.handler.name}") for r in runners]
    tasks += [asyncio.create_task(fn(stopping), name=f"loop:{getattr(fn, '__name__', fn)}") for fn in loops]
    code = 0
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed", t.get_name(), exc_info=t.exception())
                code = 1
        request_stop()
        _, late = await asyncio.wait(tasks, timeout=settings.runtime.shutdown_grace_s)
        if late:
            log.error(
                "grace period over: abandoning %s (uncommitted work will be replayed)",
                [t.get_name() for t in late],
            )
            for t in late:
                t.cancel()
            code = code or 1
    finally:
        if on_stop is not None:
            await on_stop()
        await health.stop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    return code
