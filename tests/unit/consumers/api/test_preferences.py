"""Preference slots, the view and refusals, all derived from the routing table."""

from __future__ import annotations

import pytest

from consumers.api.preferences import preference_slots, preference_view, reject_changes
from consumers.classifier.routing import load_routing
from consumers.infra.settings import ClassifierSettings
from schemas.models import Channel

SLOTS = preference_slots(load_routing(ClassifierSettings().routing_file))


@pytest.mark.parametrize(
    ("category", "channel", "default", "locked"),
    [
        ("security", Channel.PUSH, True, True),
        ("security", Channel.SMS, True, True),
        ("security", Channel.EMAIL, True, True),
        ("payments", Channel.PUSH, True, False),
        ("payments", Channel.EMAIL, True, False),  # the fallback channel
        ("activity", Channel.IN_APP, True, False),
        ("activity", Channel.PUSH, False, False),  # opt-in
        ("marketing", Channel.EMAIL, True, False),
    ],
)
def test_slots_follow_the_routing_table(category: str, channel: Channel, default: bool, locked: bool) -> None:
    slot = SLOTS[(category, channel)]
    assert (slot.default, slot.locked) == (default, locked)


def test_system_and_unrouted_pairs_are_not_preferences() -> None:
    assert not any(c == "system" for c, _ in SLOTS)
    assert ("marketing", Channel.SMS) not in SLOTS


def test_view_applies_stored_choices_but_never_unlocks_critical() -> None:
    stored = {
        ("security", Channel.SMS): False,
        ("activity", Channel.PUSH): True,
        ("tips", Channel.EMAIL): False,
    }
    view = {(e.category, e.channel): e.enabled for e in preference_view(SLOTS, stored)}
    assert view[("security", Channel.SMS)] is True
    assert view[("activity", Channel.PUSH)] is True
    assert view[("tips", Channel.EMAIL)] is False
    assert view[("payments", Channel.PUSH)] is True


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        (("security", Channel.PUSH, False), "locked"),
        (("security", Channel.PUSH, True), None),
        (("nope", Channel.EMAIL, True), "unknown_category"),
        (("tips", Channel.PUSH, True), "unknown_channel"),
        (("activity", Channel.PUSH, True), None),
    ],
)
def test_refusals(change: tuple[str, Channel, bool], kind: str | None) -> None:
    errors = reject_changes(SLOTS, [change])
    assert [e[1] for e in errors] == ([kind] if kind else [])
