"""Reload the routing file on SIGHUP without stopping: a bad file keeps the table in use.

The new table is swapped in between batches (the classifier reads ``table`` once per batch),
so in-flight work finishes under the table it started with and nothing is lost or replayed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from consumers.classifier.routing import RoutingError, RoutingTable

__all__ = ["RoutingReloader"]

log = logging.getLogger(__name__)


class RoutingReloader:
    """Holds the current table; ``reload()`` replaces it only with a valid one."""

    def __init__(self, load: Callable[[], RoutingTable], apply: Callable[[RoutingTable], None]) -> None:
        self._load = load
        self._apply = apply
        self.reloads = 0
        self.last_error: str | None = None

    def reload(self) -> bool:
        """Load the file again; True when the new table is in use."""
        try:
            table = self._load()
        except RoutingError as exc:
            self.last_error = str(exc)
            log.error("routing reload refused, keeping the table in use: %s", exc)
            return False
        self._apply(table)
        self.reloads += 1
        self.last_error = None
        log.info("routing reloaded: %d routes", len(table.routes))
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        """A background loop: reload on every SIGHUP until the process stops."""
        hup = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, hup.set)
        try:
            while not stopping.is_set():
                waiters = [asyncio.create_task(hup.wait()), asyncio.create_task(stopping.wait())]
                _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                if hup.is_set():
                    hup.clear()
                    self.reload()
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
