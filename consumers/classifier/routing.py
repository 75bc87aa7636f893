"""The routing table: event type → tier, category, channels (or workflow steps), template.

Loaded once at start from YAML (``settings.classifier.routing_file``) and validated with
errors that name the file, the entry and the fix. Matching: an exact name wins over any
glob; among globs the first in file order wins (so list narrow patterns before broad ones).

A route gives either ``channels`` (the tier's preset workflow, the decision table) or
``steps`` (its own workflow: ``consumers.workflow.steps``); either way ``Route.steps`` holds
the expanded workflow that ``herald routes explain`` prints.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from consumers.workflow.presets import PresetTimings, preset_steps
from consumers.workflow.steps import Send, Step, StepError, parse_steps, sends
from schemas.errors import ConfigurationError
from schemas.models import Channel, Lane, Tier

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_FALLBACK",
    "Route",
    "RoutingError",
    "RoutingTable",
    "lane_for",
    "load_routing",
    "parse_routing",
]

_GLOB_CHARS = frozenset("*?[")
_KNOWN_KEYS = frozenset(
    {"match", "tier", "category", "channels", "opt_in", "fallback", "template", "steps", "broadcast_lane"}
)

DEFAULT_CHANNELS: Mapping[Tier, tuple[Channel, ...]] = {
    Tier.CRITICAL: (Channel.PUSH, Channel.SMS, Channel.EMAIL),
    Tier.HIGH: (Channel.PUSH,),
    Tier.MEDIUM: (Channel.IN_APP,),
    Tier.LOW: (Channel.EMAIL,),
    Tier.SYSTEM: (Channel.WEBHOOK,),
}
"""The decision table's channels per tier: used for unknown types when a default tier is set."""

DEFAULT_FALLBACK: Mapping[Tier, tuple[Channel, ...]] = {
    Tier.HIGH: (Channel.EMAIL,),
    Tier.MEDIUM: (Channel.EMAIL,),
}
"""The only fallbacks the fallback consumer implements: high push → email when the push is not
confirmed, medium in-app → email digest when unread. A route's ``fallback:`` turns them on or off."""


class RoutingError(ConfigurationError, ValueError):
    """The routing table is invalid; the message says where and why."""


def lane_for(tier: Tier) -> Lane:
    """Low goes to the bulk lane; everything else shares the priority lane."""
    return Lane.BULK if tier is Tier.LOW else Lane.PRIORITY


@dataclass(frozen=True, slots=True)
class Route:
    """How one event type (or pattern) is notified.

    ``channels`` always go out (subject to opt-outs); ``opt_in`` channels only when the user
    has an explicit enabled preference for (category, channel). ``fallback`` is what the
    fallback consumer does when the first channel does not get through: ``[email]`` on a high
    route escalates an unconfirmed push to email, on a medium route digests unread in-app items
    by email; empty (or absent) turns that off for the route.
    """

    match: str
    tier: Tier
    category: str
    channels: tuple[Channel, ...]
    template: str
    opt_in: tuple[Channel, ...] = ()
    fallback: tuple[Channel, ...] = ()
    steps: tuple[Step, ...] = ()  # the expanded workflow (the tier's preset unless ``custom``)
    custom: bool = False  # the routing file gave ``steps``: the workflow executor runs them
    broadcast_lane: Lane = Lane.BULK  # the lane of topic fan-out copies (herald run classifier --lane bulk)
    lane_override: Lane | None = None  # set on the copies' route: every message goes to this lane
    # the lane its messages go to: worked out once here, read for every message and outcome
    lane: Lane = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lane", self.lane_override or lane_for(self.tier))

    def workflow(self) -> tuple[Step, ...]:
        """The steps, expanding the preset for a route built in code without them."""
        return self.steps or preset_steps(self.tier, self.channels, self.opt_in, self.fallback)


class RoutingTable:
    def __init__(
        self, routes: Sequence[Route], default_tier: Tier | None = None, timings: PresetTimings | None = None
    ) -> None:
        self.routes = tuple(routes)
        self.default_tier = default_tier
        self.timings = timings or PresetTimings()
        self._exact = {r.match: r for r in routes if not _is_glob(r.match)}
        self._globs = [r for r in routes if _is_glob(r.match)]
        self._memo: dict[str, Route | None] = {}

    def match(self, event_type: str) -> Route | None:
        """The route for an event type; None when nothing matches and no default tier is set."""
        try:
            return self._memo[event_type]
        except KeyError:
            pass
        route = self._exact.get(event_type)
        if route is None:
            route = next((r for r in self._globs if fnmatch.fnmatchcase(event_type, r.match)), None)
        if route is None and self.default_tier is not None:
            channels = DEFAULT_CHANNELS[self.default_tier]
            fallback = DEFAULT_FALLBACK.get(self.default_tier, ())
            route = Route(
                match=event_type,
                tier=self.default_tier,
                category="other",
                channels=channels,
                template=event_type,
                fallback=fallback,
                steps=preset_steps(self.default_tier, channels, fallback=fallback, timings=self.timings),
            )
        if len(self._memo) < 10_000:  # event types are few; the bound only guards against junk types
            self._memo[event_type] = route
        return route


def _is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


def _channels(where: str, key: str, value: Any) -> tuple[Channel, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise RoutingError(f"{where}: '{key}' must be a list of channels")
    out: list[Channel] = []
    for name in value:
        try:
            channel = Channel(name)
        except ValueError:
            known = ", ".join(c.value for c in Channel)
            msg = f"{where}: unknown channel {name!r} in '{key}' (choose from {known})"
            raise RoutingError(msg) from None
        if channel in out:
            raise RoutingError(f"{where}: channel {name!r} listed twice in '{key}'")
        out.append(channel)
    return tuple(out)


def _header(where: str, entry: Any) -> tuple[str, str, Tier, str]:
    """The route's (where, match, tier, category), or a RoutingError naming the entry."""
    if not isinstance(entry, dict):
        raise RoutingError(f"{where}: expected a mapping with match, tier, category, channels, template")
    unknown = set(entry) - _KNOWN_KEYS
    if unknown:
        raise RoutingError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
            f"(allowed: {', '.join(sorted(_KNOWN_KEYS))})"
        )
    match = entry.get("match")
    if not isinstance(match, str) or not match.strip():
        raise RoutingError(f"{where}: 'match' must be a non-empty event type or glob pattern")
    where = f"{where} (match {match!r})"
    try:
        tier = Tier(str(entry.get("tier")))
    except ValueError:
        raise RoutingError(
            f"{where}: bad tier {entry.get('tier')!r} (choose from {', '.join(t.value for t in Tier)})"
        ) from None
    category = entry.get("category")
    if not isinstance(category, str) or not category:
        raise RoutingError(f"{where}: 'category' must be a non-empty string")
    return where, match, tier, category


def _fallback(where: str, tier: Tier, value: Any) -> tuple[Channel, ...]:
    """A route's ``fallback:``, refused unless it is one the fallback consumer actually does."""
    fallback = _channels(where, "fallback", value)
    if fallback and fallback != DEFAULT_FALLBACK.get(tier):
        allowed = "; ".join(f"{t.value}: [email]" for t in DEFAULT_FALLBACK)
        raise RoutingError(
            f"{where}: 'fallback' {[c.value for c in fallback]} is not one the fallback consumer does "
            f"(only {allowed}); remove it or use one of those"
        )
    return fallback


def _preset(where: str, entry: dict[str, Any], tier: Tier, timings: PresetTimings) -> dict[str, Any]:
    channels = _channels(where, "channels", entry.get("channels"))
    if not channels:
        raise RoutingError(f"{where}: 'channels' must name at least one channel (or give 'steps')")
    opt_in = _channels(where, "opt_in", entry.get("opt_in"))
    both = set(channels) & set(opt_in)
    if both:
        raise RoutingError(f"{where}: {', '.join(sorted(both))} in both 'channels' and 'opt_in'")
    fallback = _fallback(where, tier, entry.get("fallback"))
    steps = preset_steps(tier, channels, opt_in, fallback, timings)
    return {"channels": channels, "opt_in": opt_in, "fallback": fallback, "steps": steps}


def _custom(where: str, entry: dict[str, Any]) -> dict[str, Any]:
    given = [k for k in ("channels", "opt_in", "fallback") if k in entry]
    if given:
        raise RoutingError(
            f"{where}: give either 'steps' or {', '.join(repr(k) for k in given)} (the tier's preset), not both"
        )
    try:
        steps = parse_steps(where, entry["steps"])
    except StepError as exc:
        raise RoutingError(str(exc)) from None
    first = next((s for s in steps if isinstance(s, Send)), None)
    channels = first.channels if first is not None else ()
    opt_in = first.opt_in if first is not None else ()
    return {"channels": channels, "opt_in": opt_in, "fallback": (), "steps": steps, "custom": True}


def _route(where: str, entry: Any, timings: PresetTimings) -> Route:
    where, match, tier, category = _header(where, entry)
    parts = _custom(where, entry) if "steps" in entry else _preset(where, entry, tier, timings)
    used = set(sends(parts["steps"])) | set(parts["channels"]) | set(parts["opt_in"])
    if tier is Tier.SYSTEM and used != {Channel.WEBHOOK}:
        raise RoutingError(f"{where}: system tier goes to webhook only")
    if tier is not Tier.SYSTEM and Channel.WEBHOOK in used:
        raise RoutingError(f"{where}: webhook is reserved for the system tier")
    template = entry.get("template")
    if template is None and tier is Tier.SYSTEM:
        template = ""  # webhooks post the payload as JSON: nothing to render
    if not isinstance(template, str) or (not template and tier is not Tier.SYSTEM):
        raise RoutingError(f"{where}: 'template' must name a template directory")
    return Route(
        match=match,
        tier=tier,
        category=category,
        template=template,
        broadcast_lane=_broadcast_lane(where, entry),
        **parts,
    )


def _broadcast_lane(where: str, entry: dict[str, Any]) -> Lane:
    try:
        return Lane(str(entry.get("broadcast_lane", Lane.BULK.value)))
    except ValueError:
        raise RoutingError(f"{where}: 'broadcast_lane' must be bulk or priority") from None


def parse_routing(
    data: Any,
    source: str = "<routing>",
    default_tier: Tier | None = None,
    timings: PresetTimings | None = None,
) -> RoutingTable:
    """Validate a parsed YAML document (``{"routes": [...]}``) into a table."""
    timings = timings or PresetTimings()
    if not isinstance(data, dict) or not isinstance(data.get("routes"), list):
        raise RoutingError(f"{source}: expected a top-level 'routes:' list")
    extra = set(data) - {"routes"}
    if extra:
        raise RoutingError(f"{source}: unknown top-level key(s) {', '.join(sorted(extra))}")
    routes: list[Route] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(data["routes"], start=1):
        route = _route(f"{source}: route {i}", entry, timings)
        if route.match in seen:
            raise RoutingError(
                f"{source}: route {i}: duplicate pattern {route.match!r} (also route {seen[route.match]})"
            )
        seen[route.match] = i
        routes.append(route)
    if not routes:
        raise RoutingError(f"{source}: 'routes' is empty")
    return RoutingTable(routes, default_tier, timings)


def load_routing(
    path: Path, default_tier: Tier | None = None, timings: PresetTimings | None = None
) -> RoutingTable:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RoutingError(
            f"cannot read routing table {path}: {exc.strerror or exc} (set HERALD_CLASSIFIER__ROUTING_FILE)"
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RoutingError(f"{path}: not valid YAML: {exc}") from exc
    return parse_routing(data, str(path), default_tier, timings)
