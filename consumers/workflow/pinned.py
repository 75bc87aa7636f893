"""A workflow run's own copy of its steps: what it started with, whatever the routing file says later.

A run is pinned to the steps of the route when it started (``herald_workflows.steps``, and the
digest step on ``herald_workflow_digests.step``), so a reload that inserts, removes or changes
a step never re-points a run waiting at a step index. The copy is compact JSON, one object per
step (``{"kind": "delay", "duration_s": 259200.0}``); pure, no I/O.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from consumers.workflow.steps import (
    Delay,
    Digest,
    Escalate,
    Overflow,
    Send,
    SendMode,
    Step,
    StepError,
    Throttle,
    Wait,
    WaitFor,
)
from schemas.models import Channel

__all__ = ["dump_step", "dump_steps", "load_step", "load_steps"]


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Channel | SendMode | WaitFor | Overflow):
        return value.value
    return value


def _fields(step: Step) -> dict[str, Any]:
    return {"kind": step.kind} | {f.name: _plain(getattr(step, f.name)) for f in dataclasses.fields(step)}


def dump_step(step: Step) -> str:
    """One step as compact JSON."""
    return json.dumps(_fields(step), separators=(",", ":"))


def dump_steps(steps: Sequence[Step]) -> str:
    """The steps as a compact JSON list."""
    return json.dumps([_fields(s) for s in steps], separators=(",", ":"))


def _channels(value: Any) -> tuple[Channel, ...]:
    return tuple(Channel(c) for c in value)


def _step(d: dict[str, Any]) -> Step:
    kind = d["kind"]
    if kind == "send":
        return Send(_channels(d["channels"]), SendMode(d["mode"]), _channels(d["opt_in"]))
    if kind == "wait":
        until = WaitFor(d["until"]) if d["until"] is not None else None
        return Wait(duration_s=d["duration_s"], until=until, timeout_s=d["timeout_s"])
    if kind == "escalate":
        return Escalate(_channels(d["channels"]))
    if kind == "digest":
        return Digest(Channel(d["channel"]), d["window_s"], d["send_after_s"], d["max_items"])
    if kind == "throttle":
        return Throttle(d["limit"], d["per_s"], Overflow(d["overflow"]))
    if kind == "delay":
        return Delay(d["duration_s"])
    raise StepError(f"unknown pinned workflow step {kind!r}")


def load_step(text: str) -> Step:
    """A step from :func:`dump_step`."""
    return _step(json.loads(text))


def load_steps(text: str) -> tuple[Step, ...]:
    """The steps from :func:`dump_steps`."""
    return tuple(_step(d) for d in json.loads(text))
