"""Tier presets: the decision table, one row per preset."""

from __future__ import annotations

from typing import Any

import pytest

from consumers.classifier.routing import RoutingTable, load_routing
from consumers.infra.settings import ClassifierSettings
from consumers.workflow.explain import timeline
from consumers.workflow.presets import preset_steps
from consumers.workflow.steps import (
    Digest,
    Escalate,
    Send,
    Wait,
    WaitFor,
)
from schemas.models import Channel, Tier

E, S, P, IA, W = Channel.EMAIL, Channel.SMS, Channel.PUSH, Channel.IN_APP, Channel.WEBHOOK


# -- the decision table, one row per preset ---------------------------------------------------------
@pytest.mark.parametrize(
    ("event_type", "tier", "steps", "explained"),
    [
        ("security_alert", Tier.CRITICAL, (Send((P, S, E)),), "t+0 push+sms+email"),
        (
            "payment_receipt",
            Tier.HIGH,
            (Send((P,)), Wait(until=WaitFor.DELIVERED, timeout_s=300), Escalate((E,))),
            "t+0 push; t+5m if undelivered → email",
        ),
        (
            "comment_reply",
            Tier.MEDIUM,
            (
                Send((IA,), opt_in=(P,)),
                Wait(until=WaitFor.READ, timeout_s=86_400),
                Digest(E, window_s=86_400, send_after_s=60, max_items=10),
            ),
            "t+0 in_app (+push if opted in); t+1d if unread → email digest "
            "(one per 1d, sent 1m after its first item, max 10 items)",
        ),
        ("marketing.weekly", Tier.LOW, (Send((E,)),), "t+0 email"),
        ("system.invoice.paid", Tier.SYSTEM, (Send((W,)),), "t+0 webhook"),
    ],
)
def test_presets_are_the_decision_table(event_type: str, tier: Tier, steps: Any, explained: str) -> None:
    route = load_routing(ClassifierSettings().routing_file).match(event_type)
    assert route is not None
    assert (route.tier, route.custom) == (tier, False)
    assert route.steps == steps
    assert timeline(route.steps) == explained
    assert route.lane.value == ("bulk" if tier is Tier.LOW else "priority")


def test_a_route_naming_only_a_tier_keeps_its_channels() -> None:
    """The classifier still reads channels/opt_in from a preset route: nothing changes for it."""
    route = load_routing(ClassifierSettings().routing_file).match("comment_reply")
    assert route is not None
    assert (route.channels, route.opt_in, route.fallback) == ((IA,), (P,), (E,))


def test_default_tier_route_gets_its_preset() -> None:
    table = RoutingTable([], default_tier=Tier.CRITICAL)
    route = table.match("anything")
    assert route is not None
    assert route.steps == preset_steps(Tier.CRITICAL, (P, S, E))
