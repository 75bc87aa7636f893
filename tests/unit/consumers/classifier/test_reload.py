"""SIGHUP reloads the routing file; a bad file keeps the table in use."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumers.classifier.reload import RoutingReloader
from consumers.classifier.routing import RoutingTable, load_routing
from schemas.models import Channel

E, S, P, IA, W = Channel.EMAIL, Channel.SMS, Channel.PUSH, Channel.IN_APP, Channel.WEBHOOK


# -- reload -----------------------------------------------------------------------------------------
def _write(path: Path, routes: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump({"routes": routes}))


ROUTE_A = {"match": "a", "tier": "low", "category": "c", "channels": ["email"], "template": "t"}
ROUTE_B = {"match": "b", "tier": "high", "category": "c", "template": "t", "steps": [{"send": ["sms"]}]}


async def test_sighup_reloads_and_a_bad_file_keeps_the_old_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "routing.yaml"
    _write(path, [ROUTE_A])
    in_use: list[RoutingTable] = [load_routing(path)]
    reloader = RoutingReloader(lambda: load_routing(path), in_use.append)
    stopping = asyncio.Event()
    task = asyncio.create_task(reloader.run(stopping))
    await asyncio.sleep(0.05)

    _write(path, [ROUTE_A, ROUTE_B])
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(100):
        if reloader.reloads:
            break
        await asyncio.sleep(0.01)
    assert in_use[-1].match("b") is not None

    path.write_text("routes: [{match: c, tier: high, category: x, template: t, steps: [{wait: 5m}]}]")
    os.kill(os.getpid(), signal.SIGHUP)
    for _ in range(100):
        if reloader.last_error:
            break
        await asyncio.sleep(0.01)
    assert len(in_use) == 2  # the bad file was not applied
    assert "can never send" in (reloader.last_error or "")
    assert "routing reload refused, keeping the table in use" in caplog.text
    stopping.set()
    await task
