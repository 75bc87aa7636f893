"""Render an event's notifications without sending anything: the dry run of ``herald produce``,
``herald templates check``, and a function services call in their own tests::

    from consumers.preview import check_templates

    def test_our_receipt_event_renders() -> None:
        preview = check_templates("payment_receipt", {"amount": "9.90", "currency": "EUR", "merchant": "Cafe"})
        preview.raise_for_problems()  # names the channel, locale and missing variable

The event type goes through the same routing table as the classifier's, and each channel is
rendered by the same renderer as the channel consumer's, so what passes here renders there.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from channels.base import Content
from channels.templates import CHANNEL_FILES, TemplateError, TemplateRenderer
from consumers.classifier.routing import Route, RoutingTable, load_routing
from consumers.infra.settings import HeraldSettings
from schemas.errors import ConfigurationError
from schemas.models import Channel

__all__ = [
    "ChannelPreview",
    "Preview",
    "UnknownEventType",
    "check_templates",
    "closest_routes",
    "route_for",
    "template_locales",
]


class UnknownEventType(ConfigurationError):
    """No route matches the event type: the classifier would dead-letter it (unknown_event_type)."""


@dataclass(frozen=True, slots=True)
class ChannelPreview:
    channel: Channel
    why: str  # "channels", "opt_in" (only for users who opted in) or "fallback"
    locale: str  # asked for
    content: Content | None = None  # None: no template (webhook) or it failed
    error: str | None = None
    missing: tuple[str, ...] = ()  # variables the templates use that the payload lacks


@dataclass(frozen=True, slots=True)
class Preview:
    event_type: str
    route: Route
    channels: list[ChannelPreview] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"{c.channel.value} ({c.locale}): {c.error}" for c in self.channels if c.error]

    def raise_for_problems(self) -> None:
        if self.problems:
            raise TemplateError("; ".join(self.problems))


def closest_routes(routing: RoutingTable, event_type: str, n: int = 3) -> list[str]:
    names = [r.match for r in routing.routes]
    return difflib.get_close_matches(event_type, names, n=n, cutoff=0.5)


def route_for(routing: RoutingTable, event_type: str) -> Route:
    """The route the classifier would pick, or UnknownEventType naming the closest routes."""
    route = routing.match(event_type)
    if route is None:
        close = closest_routes(routing, event_type)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UnknownEventType(
            f"no route matches event type {event_type!r} (the classifier would dead-letter it as "
            f"unknown_event_type){hint}"
        )
    return route


def template_locales(templates_dir: Path, template: str) -> list[str]:
    """The locales a template has files for, sorted."""
    base = templates_dir / template
    return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []


def _referenced(renderer: TemplateRenderer, template: str, locale: str, channel: Channel) -> set[str]:
    """Top-level variables the channel's files read (the layout they extend adds none of the payload's)."""
    names: set[str] = set()
    for name in CHANNEL_FILES[channel]:
        path = renderer.templates_dir / template / locale / name
        try:
            names |= meta.find_undeclared_variables(renderer.env.parse(path.read_text()))
        except (OSError, jinja2.TemplateSyntaxError):
            continue  # rendering reports it with the line number
    return names


def _preview_channel(
    renderer: TemplateRenderer,
    route: Route,
    channel: Channel,
    *,
    why: str,
    locale: str,
    variables: Mapping[str, Any],
) -> ChannelPreview:
    if channel not in CHANNEL_FILES:
        return ChannelPreview(channel, why, locale)  # webhook: the payload goes as JSON, no template
    used = renderer.resolve_locale(route.template, channel, locale)
    missing: tuple[str, ...] = ()
    if used is not None:
        missing = tuple(sorted(_referenced(renderer, route.template, used, channel) - set(variables)))
    try:
        content = renderer.render(channel, route.template, locale, variables)
    except TemplateError as exc:
        return ChannelPreview(channel, why, locale, error=str(exc), missing=missing)
    return ChannelPreview(channel, why, locale, content=content, missing=missing)


def _channels(route: Route) -> Iterable[tuple[Channel, str]]:
    seen: set[Channel] = set()
    for why, channels in (
        ("channels", route.channels),
        ("opt_in", route.opt_in),
        ("fallback", route.fallback),
    ):
        for channel in channels:
            if channel not in seen:
                seen.add(channel)
                yield channel, why


def check_templates(
    event_type: str,
    payload: Mapping[str, Any],
    *,
    locales: Iterable[str] | None = None,
    user_id: str = "preview-user",
    settings: HeraldSettings | None = None,
    routing: RoutingTable | None = None,
) -> Preview:
    """Route the event and render every channel's templates, in each locale asked for (default:
    every locale the template has). Raises UnknownEventType when no route matches."""
    settings = settings or HeraldSettings()
    routing = routing or load_routing(settings.classifier.routing_file, settings.classifier.default_tier)
    route = route_for(routing, event_type)
    renderer = TemplateRenderer(settings.templates_dir, settings.default_locale)
    wanted = list(locales) if locales is not None else []
    wanted = wanted or template_locales(settings.templates_dir, route.template) or [settings.default_locale]
    preview = Preview(event_type, route)
    for locale in wanted:
        variables = {
            **payload,
            "user_id": user_id,
            "event_type": event_type,
            "notification_id": "preview",
            "locale": locale,
        }
        for channel, why in _channels(route):
            preview.channels.append(
                _preview_channel(renderer, route, channel, why=why, locale=locale, variables=variables)
            )
    return preview
