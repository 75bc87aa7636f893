"""A workflow run's own copy of its route: what it started with, whatever the routing file says later.

A run is pinned to the steps of its route when it started, and to what it needs from the route
to send (tier, category, template, lane): ``herald_workflows.pinned``, and for a digest its
digest step on ``herald_workflow_digests.pinned``. A reload that inserts, removes or changes a
step never re-points a run waiting at a step index, and a process whose routing file does not
have the route yet (reloaded later than the classifier) or any more (renamed) still runs it.

The copy is compact JSON (``{"tier": "high", ..., "steps": [{"kind": "delay", ...}]}``). Read
back, it is validated as a routing file's steps are (:func:`~consumers.workflow.steps.parse_steps`:
bounds, at most 50 steps, a step that sends): a copy that is not valid is refused with a
:class:`~consumers.workflow.steps.StepError`, never run. Pure, no I/O.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from consumers.classifier.routing import Route, lane_for
from consumers.workflow.presets import digest_after, escalation_after
from consumers.workflow.steps import Escalate, Overflow, Send, SendMode, Step, StepError, WaitFor, parse_steps
from schemas.models import Channel, Lane, Tier

__all__ = ["Pin", "collides", "dump_pin", "load_pin", "run_route"]


@dataclass(frozen=True, slots=True)
class Pin:
    """What a run took from its route when it started."""

    tier: Tier
    category: str
    template: str
    lane: Lane
    steps: tuple[Step, ...]

    def route(self, match: str) -> Route:
        """The route as the run started under it (its own steps), for a table that lacks it."""
        override = self.lane if self.lane is not lane_for(self.tier) else None
        return Route(
            match=match,
            tier=self.tier,
            category=self.category,
            channels=(),  # every send step names its own channels
            template=self.template,
            steps=self.steps,
            custom=True,
            lane_override=override,
        )


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Channel | SendMode | WaitFor | Overflow):
        return value.value
    return value


def _fields(step: Step) -> dict[str, Any]:
    return {"kind": step.kind} | {f.name: _plain(getattr(step, f.name)) for f in dataclasses.fields(step)}


# The classifier pins every workflow event it classifies: the same few routes, over and over
# (12.7 µs a dump, measured). A route's parts are hashable; a table's routes fit many times over.
@functools.lru_cache(maxsize=1024)
def _dump(tier: Tier, category: str, template: str, lane: Lane, steps: tuple[Step, ...]) -> str:
    pin = {"tier": tier.value, "category": category, "template": template, "lane": lane.value}
    return json.dumps(pin | {"steps": [_fields(s) for s in steps]}, separators=(",", ":"))


def dump_pin(route: Route, steps: tuple[Step, ...] | None = None) -> str:
    """The run's copy of ``route``: its steps (or ``steps``, a digest's one) and what it sends with."""
    return _dump(
        route.tier, route.category, route.template, route.lane, route.steps if steps is None else steps
    )


def _raw(d: Any) -> dict[str, Any]:
    """A copied step as the routing file writes it, for :func:`parse_steps` to check again."""
    kind = d["kind"]
    if kind == "send":
        return {"send": {"channels": d["channels"], "mode": d["mode"], "opt_in": d["opt_in"]}}
    if kind == "wait":
        if d["until"] is None:
            return {"wait": d["duration_s"]}
        return {"wait": {"until": d["until"], "timeout": d["timeout_s"]}}
    if kind == "escalate":
        return {"escalate": d["channels"]}
    if kind == "digest":
        opts = ("channel", "window_s", "send_after_s", "max_items")
        return {"digest": {k.removesuffix("_s"): d[k] for k in opts}}
    if kind == "throttle":
        return {"throttle": {"limit": d["limit"], "per": d["per_s"], "overflow": d["overflow"]}}
    if kind == "delay":
        return {"delay": d["duration_s"]}
    raise ValueError(f"unknown step {kind!r}")


def load_pin(text: str) -> Pin:
    """The copy from :func:`dump_pin`; a :class:`StepError` says what is wrong with it."""
    try:
        d = json.loads(text)
        tier, lane, steps = Tier(d["tier"]), Lane(d["lane"]), [_raw(s) for s in d["steps"]]
        category, template = str(d["category"]), str(d["template"])
    except (ValueError, TypeError, KeyError) as exc:
        raise StepError(f"pinned route: not a copy of a route: {exc!r}") from None
    return Pin(tier, category, template, lane, parse_steps("pinned route", steps))


def collides(steps: Sequence[Step], preset: Sequence[Step]) -> bool:
    """Whether the fallback, taking a run's sends for those of the preset route its event type
    goes to now, would act on one: a channel the run sends on (a send's or an escalation's) that
    the preset follows with an escalation or a digest (the high preset's push, the medium
    preset's in-app, when the route has a fallback). Any other preset leaves the sends alone. Pure."""
    sent = {c for s in steps if isinstance(s, Escalate) for c in s.channels}
    sent |= {c for s in steps if isinstance(s, Send) for c in s.channels + s.opt_in}
    return any(escalation_after(preset, c) is not None or digest_after(preset, c) is not None for c in sent)


def run_route(
    match: str,
    pin: Pin | None,
    by_match: Route | None,
    by_type: Route | None,
    *,
    default_tier: bool = False,
) -> Route | str:
    """The route a run goes on with, or why it cannot (the ``detail`` of its ``route_changed``).

    ``by_match``: the route of the run's match in the table in use; ``by_type``: the route that
    table gives the event's type, which is what the fallback looks at for the run's sends
    (``default_tier``: it is the default tier's, made up for a type no route matches). A pinned
    run ends only when ``by_type`` is a tier preset that would act on one of its sends
    (:func:`collides`: a failed push arming the preset's escalation, due now, on this run's state
    row); otherwise it goes on with the route in use when there is one (its tier, category,
    template and lane), else from its copy. A run without a copy (started before migration 270,
    or by a version without it) needs its route, with its own steps, and ends when either is a
    preset (nothing says which channels it sends on). Pure."""
    where = "the default tier" if default_tier else f"the preset route {by_type.match!r}" if by_type else ""
    if pin is not None:
        if by_type is not None and not by_type.custom and collides(pin.steps, by_type.workflow()):
            return f"events of this type go to {where} now, whose fallback would act on the run's sends"
        return by_match if by_match is not None else pin.route(match)
    if by_match is not None and not by_match.custom:
        return f"route {match!r} is a tier preset now (its steps were removed from the routing file)"
    if by_type is not None and not by_type.custom:
        return f"events of this type go to {where} now"
    if by_match is None:
        return f"route {match!r} is gone from the routing file (and the run has no copy of it)"
    return by_match
