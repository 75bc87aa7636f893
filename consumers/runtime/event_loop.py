"""The event loop every Herald process runs on: uvloop by default, asyncio's own on request.

A consumer spends about a fifth of its CPU in the loop and its socket calls (epoll, send, recv),
the part uvloop does in libuv (docs/benchmarks.md has what it changed).
``HERALD_RUNTIME__EVENT_LOOP=asyncio`` falls back to the standard loop (to rule the loop out when
debugging, or where no uvloop wheel exists); nothing in Herald depends on which one runs. Benchmarks measure their baselines on the same loop as the processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

import uvloop

__all__ = ["EventLoop", "loop_factory", "run"]

EventLoop = Literal["uvloop", "asyncio"]

T = TypeVar("T")


def loop_factory(kind: EventLoop) -> Callable[[], asyncio.AbstractEventLoop]:
    """What creates a loop of ``kind``."""
    if kind == "uvloop":
        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], kind: EventLoop = "uvloop") -> T:
    """``asyncio.run(main)`` on a loop of ``kind``."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)
