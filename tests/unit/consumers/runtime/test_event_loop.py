"""Processes run on the loop the settings name."""

from __future__ import annotations

import asyncio

import uvloop

from consumers.infra.settings import RuntimeSettings
from consumers.runtime import event_loop


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_the_default_is_uvloop() -> None:
    assert RuntimeSettings().event_loop == "uvloop"
    assert event_loop.run(_loop_type()) is uvloop.Loop


def test_asyncio_on_request() -> None:
    loop_type = event_loop.run(_loop_type(), "asyncio")
    assert not issubclass(loop_type, uvloop.Loop)
    assert issubclass(loop_type, asyncio.BaseEventLoop)
