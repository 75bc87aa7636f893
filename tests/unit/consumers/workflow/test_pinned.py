"""A run's copy of its route reads back as the route it was made from; a copy that is not valid
is refused, never run; which route a run goes on with after a reload."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.classifier.routing import Route
from consumers.workflow.pinned import Pin, collides, dump_pin, load_pin, run_route
from consumers.workflow.presets import preset_steps
from consumers.workflow.steps import (
    Delay,
    Digest,
    Escalate,
    Send,
    SendMode,
    StepError,
    Throttle,
    Wait,
    WaitFor,
    parse_steps,
)
from schemas.models import Channel, Lane, Tier
from tests.unit.consumers.workflow.test_steps import workflows

EMAIL = Send((Channel.EMAIL,))


def _route(steps: Any = (EMAIL,), *, match: str = "r", custom: bool = True, **kw: Any) -> Route:
    fields: dict[str, Any] = {"tier": Tier.HIGH, "category": "payments", "template": "receipt"}
    fields |= {"channels": (Channel.EMAIL,)} | kw
    return Route(match=match, steps=tuple(steps), custom=custom, **fields)


@given(workflows(), st.sampled_from(Tier), st.sampled_from([None, *Lane]))
@settings(max_examples=200, deadline=None)
def test_every_valid_workflow_round_trips_with_its_route(
    raw: list[Any], tier: Tier, lane: Lane | None
) -> None:
    route = _route(parse_steps("r", raw), tier=tier, lane_override=lane)
    pin = load_pin(dump_pin(route))
    assert pin == Pin(route.tier, route.category, route.template, route.lane, route.steps)
    again = pin.route("r")
    assert (again.tier, again.category, again.template, again.lane, again.steps) == (
        route.tier,
        route.category,
        route.template,
        route.lane,
        route.steps,
    )
    digest_only = (Digest(Channel.EMAIL, 3600.0, 60.0, 7),)
    assert load_pin(dump_pin(route, digest_only)).steps == digest_only


def test_the_copy_is_compact_json_one_object_per_step() -> None:
    steps = (
        Delay(259_200.0),
        Send((Channel.PUSH,), SendMode.FIRST, (Channel.SMS,)),
        Wait(until=WaitFor.READ, timeout_s=60.0),
        Throttle(2, 86_400.0),
        Digest(Channel.EMAIL, 3600.0, 60.0, 10),
    )
    text = dump_pin(_route(steps, tier=Tier.LOW))
    assert " " not in text
    d = json.loads(text)
    assert {k: d[k] for k in ("tier", "category", "template", "lane")} == {
        "tier": "low",
        "category": "payments",
        "template": "receipt",
        "lane": "bulk",
    }
    assert d["steps"][:2] == [
        {"kind": "delay", "duration_s": 259_200.0},
        {"kind": "send", "channels": ["push"], "mode": "first", "opt_in": ["sms"]},
    ]


def test_a_route_is_dumped_once_then_reused() -> None:
    route = _route()
    assert dump_pin(route) is dump_pin(_route())  # an equal route: the same text, not a new dump


def _pin(*steps: dict[str, Any], **kw: Any) -> str:
    return json.dumps(
        {"tier": "high", "category": "c", "template": "t", "lane": "priority", "steps": list(steps)} | kw
    )


SEND = {"kind": "send", "channels": ["email"], "mode": "all", "opt_in": []}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (_pin(SEND | {"kind": "teleport"}), "teleport"),
        (
            _pin(
                {"kind": "digest", "channel": "email", "window_s": 3600, "send_after_s": 60, "max_items": -5}
            ),
            "max_items",
        ),
        (_pin({"kind": "delay", "duration_s": 1e300}, SEND), "out of range"),
        (_pin({"kind": "delay", "duration_s": float("nan")}, SEND), "out of range"),
        (
            _pin(
                {"kind": "delay", "duration_s": 60},
                {"kind": "throttle", "limit": 1, "per_s": 60, "overflow": "drop"},
            ),
            "never send",
        ),
        (_pin(*[SEND] * 51), "at most 50"),
        (_pin(), "non-empty"),
        (_pin(SEND, tier="urgent"), "urgent"),
        (_pin({"kind": "send", "channels": ["email"]}), "mode"),
        (_pin(SEND | {"channels": ["pigeon"]}), "pigeon"),
        ('{"tier": "high"', "not a copy"),
        ("[1, 2]", "not a copy"),
    ],
)
def test_a_copy_that_is_not_valid_is_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(StepError, match=why):
        load_pin(text)


PIN = Pin(Tier.HIGH, "payments", "receipt", Lane.PRIORITY, (Delay(60.0), Send((Channel.EMAIL,))))


def test_a_pinned_run_goes_on_with_the_route_in_use_or_its_copy() -> None:
    now = _route(template="receipt_v2")
    assert run_route("r", PIN, now, now) is now  # the route's template, tier... as they are now
    # The table in use lacks the route (the classifier reloaded first, or it was renamed):
    from_copy = run_route("r", PIN, None, None)
    assert isinstance(from_copy, Route) and from_copy.steps == PIN.steps and from_copy.match == "r"
    renamed = _route(match="r.*")
    assert isinstance(run_route("r", PIN, None, renamed), Route)


def _preset(
    tier: Tier, channels: tuple[Channel, ...], fallback: tuple[Channel, ...] = (), **kw: Any
) -> Route:
    steps = preset_steps(tier, channels, fallback=fallback)
    return _route(steps, custom=False, tier=tier, channels=channels, fallback=fallback, **kw)


def test_a_plain_route_added_under_a_custom_glob_leaves_its_runs_alone() -> None:
    # Sequence A: runs of a custom "orders.*" in flight; "orders.refund" (low, email) is added.
    # The low preset does nothing after a send: the fallback acts on none of the run's.
    refund = _preset(Tier.LOW, (Channel.EMAIL,), match="orders.refund")
    pin = Pin(Tier.HIGH, "payments", "receipt", Lane.PRIORITY, (Delay(60.0), Send((Channel.PUSH,))))
    custom = _route(match="orders.*")
    assert run_route("orders.*", pin, custom, refund) is custom
    # Nor a high push route without a fallback, nor a medium one sending email.
    assert isinstance(run_route("orders.*", pin, custom, _preset(Tier.HIGH, (Channel.PUSH,))), Route)
    medium = _preset(Tier.MEDIUM, (Channel.IN_APP,), (Channel.EMAIL,))
    assert isinstance(run_route("r", PIN, None, medium), Route)
    # Its own route a preset now (steps removed), the type's too, colliding with nothing: it runs on.
    low = _preset(Tier.LOW, (Channel.EMAIL,))
    assert run_route("r", PIN, low, low) is low


def test_a_run_ends_when_the_types_preset_would_act_on_its_sends() -> None:
    # Sequence B: the type goes to the high preset with an email fallback; the run pushes (or
    # escalates to push): a failed push would arm the preset's escalation on the run's row.
    high = _preset(Tier.HIGH, (Channel.PUSH,), (Channel.EMAIL,), match="other")
    pushes = Pin(Tier.HIGH, "p", "t", Lane.PRIORITY, (Send((Channel.SMS,)), Escalate((Channel.PUSH,))))
    assert "preset route 'other'" in str(run_route("r", pushes, _route(), high))
    in_app = Pin(
        Tier.MEDIUM, "p", "t", Lane.PRIORITY, (Delay(1.0), Send((Channel.EMAIL,), opt_in=(Channel.IN_APP,)))
    )
    medium = _preset(Tier.MEDIUM, (Channel.IN_APP,), (Channel.EMAIL,))
    assert "would act" in str(run_route("r", in_app, None, medium))
    assert "the default tier" in str(run_route("r", pushes, None, high, default_tier=True))
    # Whatever its own route is now (by its match): only the type's route collides.
    assert isinstance(
        run_route("r", pushes, _preset(Tier.HIGH, (Channel.PUSH,), (Channel.EMAIL,)), None), Route
    )


def test_a_run_without_a_copy_ends_when_its_route_is_a_preset() -> None:
    preset = _route(custom=False)
    assert "tier preset" in str(run_route("r", None, preset, preset))
    assert "preset route 'other'" in str(run_route("r", None, _route(), _route(match="other", custom=False)))


def test_a_copy_collides_only_on_what_a_preset_follows_up() -> None:
    high = preset_steps(Tier.HIGH, (Channel.PUSH,), fallback=(Channel.EMAIL,))
    assert collides((Send((Channel.PUSH, Channel.SMS)),), high)
    assert not collides((Send((Channel.SMS,)), Escalate((Channel.EMAIL,))), high)
    assert not collides((Send((Channel.PUSH,)),), preset_steps(Tier.CRITICAL, (Channel.PUSH, Channel.SMS)))


def test_a_run_without_a_copy_needs_its_route() -> None:
    assert "gone" in str(run_route("r", None, None, None))
    route = _route()
    assert run_route("r", None, route, route) is route
