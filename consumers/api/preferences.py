"""Preferences per category x channel, derived from the routing table; critical is locked.

Pure: the view is computed from the routes and the user's stored rows. An absent row means the
channel's default: on for a route's ``channels`` and ``fallback``, off for ``opt_in`` ones (the
classifier's rule). Critical categories are always delivered, so they show as locked and on.
System (webhook) routes are not a user's preference and are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consumers.classifier.routing import RoutingTable
from schemas.models import Channel, Tier

__all__ = ["PreferenceEntry", "PreferenceSlot", "preference_slots", "preference_view", "reject_changes"]


@dataclass(frozen=True, slots=True)
class PreferenceSlot:
    category: str
    channel: Channel
    default: bool
    locked: bool


@dataclass(frozen=True, slots=True)
class PreferenceEntry:
    category: str
    channel: Channel
    enabled: bool
    default: bool
    locked: bool


def preference_slots(table: RoutingTable) -> dict[tuple[str, Channel], PreferenceSlot]:
    """Every (category, channel) a user can have a preference for, in routing-table order."""
    defaults: dict[tuple[str, Channel], bool] = {}
    locked: set[str] = set()
    for route in table.routes:
        if route.tier is Tier.SYSTEM:
            continue
        if route.tier is Tier.CRITICAL:
            locked.add(route.category)
        for channel in (*route.channels, *route.fallback):
            defaults[(route.category, channel)] = True
        for channel in route.opt_in:
            defaults.setdefault((route.category, channel), False)
    return {
        key: PreferenceSlot(key[0], key[1], default=on or key[0] in locked, locked=key[0] in locked)
        for key, on in defaults.items()
    }


def preference_view(
    slots: Mapping[tuple[str, Channel], PreferenceSlot], stored: Mapping[tuple[str, Channel], bool]
) -> list[PreferenceEntry]:
    out = []
    for key, slot in slots.items():
        enabled = True if slot.locked else stored.get(key, slot.default)
        out.append(PreferenceEntry(slot.category, slot.channel, enabled, slot.default, slot.locked))
    return out


def reject_changes(
    slots: Mapping[tuple[str, Channel], PreferenceSlot], changes: Iterable[tuple[str, Channel, bool]]
) -> list[tuple[int, str, str]]:
    """Why each invalid change is refused: ``(index, error type, message)``; empty when all are fine."""
    errors = []
    for i, (category, channel, enabled) in enumerate(changes):
        slot = slots.get((category, channel))
        if slot is None:
            known = sorted({c for c, _ in slots})
            if category not in known:
                errors.append(
                    (i, "unknown_category", f"unknown category {category!r} (known: {', '.join(known)})")
                )
            else:
                chans = sorted(ch.value for c, ch in slots if c == category)
                errors.append(
                    (
                        i,
                        "unknown_channel",
                        f"category {category!r} is not sent by {channel.value} (only {', '.join(chans)})",
                    )
                )
        elif slot.locked and not enabled:
            errors.append(
                (i, "locked", f"{category!r} is critical: it is always delivered and cannot be turned off")
            )
    return errors
