"""``herald routes check FILE`` and ``herald routes explain EVENT_TYPE``: the routing file, offline.

Neither needs Kafka or PostgreSQL: ``check`` validates a file before it is deployed (or
before ``kill -HUP`` makes the classifier reload it), ``explain`` prints the workflow an event
type gets as a timeline.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from consumers.infra.settings import HeraldSettings
from schemas.errors import ConfigurationError

if TYPE_CHECKING:
    from consumers.classifier.routing import Route

__all__ = ["describe", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("routes", help="validate the routing file or explain an event type's workflow")
    rsub = p.add_subparsers(dest="routes_cmd", required=True)
    c = rsub.add_parser("check", help="validate a routing file (exit 2 with the reason when invalid)")
    c.add_argument("file", type=Path)
    c.set_defaults(func=check, needs_loop=False)
    e = rsub.add_parser("explain", help="print the steps an event type runs, as a timeline")
    e.add_argument("event_type")
    e.add_argument("--file", type=Path, help="routing file (default: HERALD_CLASSIFIER__ROUTING_FILE)")
    e.set_defaults(func=explain, needs_loop=False)


def describe(route: Route) -> str:
    """``login_code → route 'login_code' (high, auth, priority lane, custom steps)`` + the timeline."""
    from consumers.workflow.explain import timeline

    kind = "custom steps" if route.custom else f"{route.tier.value} preset"
    head = f"route {route.match!r} ({route.tier.value}, {route.category}, {route.lane.value} lane, {kind})"
    return f"{head}\n  {timeline(route.workflow())}"


def check(settings: HeraldSettings, args: argparse.Namespace) -> int:
    from consumers.classifier.process import load_table

    table = load_table(settings, args.file)
    custom = sum(1 for r in table.routes if r.custom)
    print(f"{args.file}: OK, {len(table.routes)} routes ({custom} with their own steps)")
    return 0


def explain(settings: HeraldSettings, args: argparse.Namespace) -> int:
    from consumers.classifier.process import load_table

    table = load_table(settings, args.file)
    route = table.match(args.event_type)
    if route is None:
        raise ConfigurationError(
            f"no route matches {args.event_type!r} and no default tier is set (HERALD_CLASSIFIER__DEFAULT_TIER)"
        )
    print(f"{args.event_type} → {describe(route)}")
    return 0
