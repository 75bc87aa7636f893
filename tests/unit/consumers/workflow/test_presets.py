"""Tier presets: the decision table, one row per preset."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.classifier.routing import RoutingTable, load_routing
from consumers.infra.settings import ClassifierSettings, FallbackSettings
from consumers.workflow.explain import timeline
from consumers.workflow.presets import AfterSend, digest_after, escalation_after, preset_steps, timings_of
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


# -- what follows a preset's first send: the executor's escalate step --------------------------------
@pytest.mark.parametrize("tier", list(Tier))
def test_only_high_escalates_from_its_push_and_only_medium_digests_its_in_app_item(tier: Tier) -> None:
    route = load_routing(ClassifierSettings().routing_file).match(
        {
            Tier.CRITICAL: "security_alert",
            Tier.HIGH: "payment_receipt",
            Tier.MEDIUM: "comment_reply",
            Tier.LOW: "marketing.weekly",
            Tier.SYSTEM: "system.invoice.paid",
        }[tier]
    )
    assert route is not None
    for channel in Channel:
        after = escalation_after(route.steps, channel)
        if tier is Tier.HIGH and channel is P:
            assert after == AfterSend(step=2, wait_s=300.0, channels=(E,))
        else:
            assert after is None, (tier, channel)
        digest = digest_after(route.steps, channel)
        if tier is Tier.MEDIUM and channel is IA:  # the in-app item, not the opted-in push
            assert digest == AfterSend(step=2, wait_s=86_400.0, channels=(E,))
        else:
            assert digest is None, (tier, channel)


@given(
    wait_s=st.floats(min_value=1, max_value=86_400),
    until=st.sampled_from([None, *WaitFor]),
    sent=st.sampled_from([P, S, E]),
)
def test_escalation_after_reads_the_wait_and_the_channels_from_the_steps(
    wait_s: float, until: WaitFor | None, sent: Channel
) -> None:
    wait = Wait(until=until, timeout_s=wait_s) if until else Wait(duration_s=wait_s)
    steps = (Send((P, S)), wait, Escalate((E,)))
    after = escalation_after(steps, sent)
    if until is WaitFor.DELIVERED and sent is P:  # the push only: an SMS of the same send does not
        assert after == AfterSend(2, wait_s, (E,))
    else:
        assert after is None  # a fixed pause or "until read" is not this preset


def test_timings_follow_the_fallback_settings() -> None:
    f = FallbackSettings(high_escalation_delay_s=42, digest_after_s=7)
    t = timings_of(f)
    assert (t.high_escalation_delay_s, t.digest_after_s) == (42, 7)
    assert escalation_after(preset_steps(Tier.HIGH, (P,), fallback=(E,), timings=t), P) == AfterSend(
        2, 42, (E,)
    )
    assert (
        escalation_after(preset_steps(Tier.HIGH, (P,), timings=t), P) is None
    )  # fallback off: no escalation


def test_digest_after_needs_wait_until_read_then_a_digest() -> None:
    digest = Digest(E, window_s=3600)
    assert digest_after((Send((IA,)), Wait(until=WaitFor.READ, timeout_s=60), digest), IA) == AfterSend(
        2, 60, (E,)
    )
    assert digest_after((Send((IA,)), Wait(duration_s=60), digest), IA) is None
    assert digest_after((Send((IA,)), Wait(until=WaitFor.DELIVERED, timeout_s=60), digest), IA) is None
    assert digest_after((Send((IA,)),), IA) is None
    assert digest_after((Send((IA, E)), Wait(until=WaitFor.READ, timeout_s=60), digest), E) is None
    assert digest_after(preset_steps(Tier.MEDIUM, (IA,)), IA) is None  # fallback off: no digest
