"""``kill -USR1 <pid>``: a running Herald process logs where it stands, without stopping.

Logged at WARNING under ``consumers.runtime.taskdump``: each runner's state (assignment, revocation
generation, the group's generation, batch age, whether the batch lock is held, the batch in flight
and the stage of its acks/commit), then every asyncio task of the process with its stack, innermost
frame last. A process that stopped consuming shows which ``await`` it is parked on.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

__all__ = ["DescribesItself", "format_state", "format_tasks", "install", "report"]

log = logging.getLogger(__name__)


class DescribesItself(Protocol):
    """Anything whose state is worth printing in a dump (a :class:`~consumers.runtime.runner.Runner`)."""

    def describe(self) -> Mapping[str, object]: ...


def format_state(name: str, state: Mapping[str, object]) -> str:
    return f"{name}: " + ", ".join(f"{k}={v}" for k, v in state.items())


def format_tasks(tasks: Iterable[asyncio.Task[Any]], current: asyncio.Task[Any] | None = None) -> str:
    """Every task's name, coroutine and stack (the frames it is suspended in), sorted by name."""
    out = io.StringIO()
    ordered = sorted(tasks, key=lambda t: t.get_name())
    out.write(f"{len(ordered)} asyncio task(s)\n")
    for task in ordered:
        if task is current:
            continue  # the dump itself
        coro = task.get_coro()
        out.write(f"--- task {task.get_name()} ({getattr(coro, '__qualname__', coro)})")
        out.write(" done\n" if task.done() else "\n")
        if not task.done():
            stack = io.StringIO()
            task.print_stack(file=stack)
            # print_stack repeats the task in its first line; keep the frames.
            out.writelines(stack.getvalue().splitlines(keepends=True)[1:])
    return out.getvalue()


def report(runners: Sequence[DescribesItself], names: Sequence[str] | None = None) -> str:
    """The whole dump as one text (the runners' states, then the tasks); call it in the loop."""
    lines = [format_state(names[i] if names else f"runner {i}", r.describe()) for i, r in enumerate(runners)]
    try:
        current = asyncio.current_task()
    except RuntimeError:
        current = None
    lines.append(format_tasks(asyncio.all_tasks(), current))
    return "\n".join(lines)


def install(
    runners: Sequence[DescribesItself], names: Sequence[str] | None = None, sig: int = signal.SIGUSR1
) -> Callable[[], None]:
    """Log :func:`report` on ``sig`` (SIGUSR1) in the running loop; returns the uninstaller."""
    loop = asyncio.get_running_loop()

    def dump() -> None:
        try:
            log.warning("task dump (signal %s)\n%s", signal.Signals(sig).name, report(runners, names))
        except Exception:  # a diagnostic never takes the process down
            log.exception("task dump failed")

    loop.add_signal_handler(sig, dump)

    def uninstall() -> None:
        loop.remove_signal_handler(sig)

    return uninstall
