"""Workflow steps: parsing valid workflows (hypothesis), durations, load errors naming route and step."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.classifier.routing import RoutingError, parse_routing
from consumers.workflow.explain import fmt_duration, timeline
from consumers.workflow.steps import (
    Delay,
    Digest,
    Escalate,
    Overflow,
    Send,
    SendMode,
    Throttle,
    Wait,
    WaitFor,
    parse_duration,
    parse_steps,
    sends,
)
from schemas.models import Channel

E, S, P, IA, W = Channel.EMAIL, Channel.SMS, Channel.PUSH, Channel.IN_APP, Channel.WEBHOOK


# -- parsing valid workflows (hypothesis) -----------------------------------------------------------
durations = st.sampled_from(["30s", "5m", "90m", "1h", "24h", "3d", 45, "1h30m"])
channels = st.lists(st.sampled_from(["email", "sms", "push", "in_app"]), min_size=1, max_size=4, unique=True)
sends_st = st.one_of(
    channels,
    st.builds(lambda c, m: {"channels": c, "mode": m}, channels, st.sampled_from(["all", "first"])),
)
waits = st.one_of(
    durations,
    st.builds(lambda u, t: {"until": u, "timeout": t}, st.sampled_from(["read", "delivered"]), durations),
)
middle = st.one_of(
    st.builds(lambda v: {"send": v}, sends_st),
    st.builds(lambda v: {"delay": v}, durations),
    st.builds(lambda v: {"throttle": {"limit": v[0], "per": v[1]}}, st.tuples(st.integers(1, 50), durations)),
)
tail = st.one_of(
    st.builds(lambda v: {"send": v}, sends_st),
    st.builds(lambda v: {"escalate": v}, channels),
    st.builds(
        lambda c, w, n: {"digest": {"channel": c, "window": w, "max_items": n}},
        st.sampled_from(["email", "in_app"]),
        durations,
        st.integers(1, 100),
    ),
)


@st.composite
def workflows(draw: st.DrawFn) -> list[Any]:
    """Valid by construction: a send first, then steps, a wait only before a step that follows."""
    steps: list[Any] = [{"send": draw(sends_st)}]
    for _ in range(draw(st.integers(0, 4))):
        steps.append(draw(middle))
        if draw(st.booleans()):
            steps.append({"wait": draw(waits)})
            steps.append(draw(st.builds(lambda v: {"escalate": v}, channels)))
    steps.append(draw(tail))
    return steps


@given(workflows())
@settings(max_examples=200, deadline=None)
def test_valid_workflows_parse_send_and_explain(raw: list[Any]) -> None:
    steps = parse_steps("r", raw)
    assert len(steps) == len(raw)
    assert sends(steps)  # validated: it can send
    text = timeline(steps)
    assert text.startswith("t+0 ")
    for step in steps:  # every wait is bounded
        if isinstance(step, Wait):
            assert 0 < step.bound_s <= 366 * 86_400


@given(st.integers(1, 366 * 86_400))
def test_durations_round_trip_through_their_spelling(seconds: int) -> None:
    assert parse_duration(fmt_duration(seconds), "x") == seconds


@given(st.one_of(st.integers(max_value=0), st.integers(min_value=366 * 86_400 + 1), st.text(max_size=8)))
def test_bad_durations_are_refused(value: Any) -> None:
    try:
        seconds = parse_duration(value, "wait")
    except ValueError as exc:
        assert "wait" in str(exc)
    else:  # some short texts are real durations ("1m"): then they are in range
        assert 0 < seconds <= 366 * 86_400


def test_step_shapes() -> None:
    steps = parse_steps(
        "r",
        [
            {"throttle": {"limit": 2, "per": "1d", "overflow": "digest"}},
            {"delay": "3d"},
            {"send": {"channels": ["sms", "email"], "mode": "first"}},
            {"wait": {"until": "delivered", "timeout": "30s"}},
            {"escalate": ["email"]},
            {"digest": {"channel": "email", "window": "1h", "send_after": "5m", "max_items": 10}},
        ],
    )
    assert steps == (
        Throttle(2, 86_400, Overflow.DIGEST),
        Delay(259_200),
        Send((S, E), SendMode.FIRST),
        Wait(until=WaitFor.DELIVERED, timeout_s=30),
        Escalate((E,)),
        Digest(E, window_s=3600, send_after_s=300, max_items=10),
    )


# -- load errors name the route and the step --------------------------------------------------------
def _table(steps: Any, **extra: Any) -> dict[str, Any]:
    route = {"match": "x.y", "tier": "high", "category": "c", "template": "t", "steps": steps, **extra}
    return {
        "routes": [
            {"match": "a", "tier": "low", "category": "c", "channels": ["email"], "template": "t"},
            route,
        ]
    }


@pytest.mark.parametrize(
    ("steps", "extra", "message"),
    [
        ([{"delay": "1h"}, {"throttle": {"limit": 1, "per": "1d"}}], {}, "can never send"),
        ([{"send": ["pigeon"]}], {}, "step 1 (send): unknown channel 'pigeon'"),
        ([{"send": ["push"]}, {"wait": {"until": "read"}}, {"escalate": ["email"]}], {}, "step 2 (wait)"),
        (
            [{"send": ["push"]}, {"wait": {"until": "read"}}, {"escalate": ["email"]}],
            {},
            "could wait forever",
        ),
        ([{"send": ["push"]}, {"digest": {"window": "1h"}}], {}, "step 2 (digest): digest has no channel"),
        ([{"escalate": ["email"]}], {}, "step 1 (escalate): escalate before any send"),
        ([{"send": ["push"]}, {"wait": "5m"}], {}, "step 2 (wait): a wait at the end does nothing"),
        (
            [{"send": ["push"]}, {"digest": {"channel": "email", "window": "1h"}}, {"send": ["sms"]}],
            {},
            "step 2 (digest): digest must be the last step",
        ),
        (
            [{"send": ["push"]}, {"wait": "0s"}, {"send": ["sms"]}],
            {},
            "step 2 (wait): wait: '0s' is out of range",
        ),
        (
            [{"send": ["push"]}, {"wait": "soon"}, {"send": ["sms"]}],
            {},
            "step 2 (wait): wait: expected a duration",
        ),
        ([{"throttle": {"limit": 0, "per": "1d"}}, {"send": ["sms"]}], {}, "step 1 (throttle)"),
        (
            [{"throttle": {"limit": 2, "per": "1d", "overflow": "digest"}}, {"send": ["sms"]}],
            {},
            "overflow: digest needs a digest step",
        ),
        ([{"teleport": 1}], {}, "step 1 (teleport): unknown step 'teleport'"),
        ([{"send": ["webhook"]}], {}, "webhook is reserved for the system tier"),
        ([{"send": ["push"]}], {"channels": ["push"]}, "give either 'steps' or 'channels'"),
        ([], {}, "'steps' must be a non-empty list"),
        ([{"send": ["push"]}] * 50 + [{"send": ["sms"]}], {}, "51 steps: at most 50"),
    ],
)
def test_load_errors_name_route_and_step(steps: Any, extra: Any, message: str) -> None:
    with pytest.raises(RoutingError) as err:
        parse_routing(_table(steps, **extra), "routing.yaml")
    assert "routing.yaml: route 2 (match 'x.y')" in str(err.value)
    assert message in str(err.value)


def test_custom_route_takes_its_first_send_channels() -> None:
    table = parse_routing(_table([{"delay": "3d"}, {"send": {"channels": ["push"], "opt_in": ["sms"]}}]))
    route = table.match("x.y")
    assert route is not None
    assert (route.custom, route.channels, route.opt_in) == (True, (P,), (S,))
    assert timeline(route.steps) == "t+3d push (+sms if opted in)"
