"""A run's pinned copy of its steps reads back as the steps it was made from."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings

from consumers.workflow.pinned import dump_step, dump_steps, load_step, load_steps
from consumers.workflow.steps import Delay, Digest, Send, SendMode, Throttle, Wait, WaitFor, parse_steps
from schemas.models import Channel
from tests.unit.consumers.workflow.test_steps import workflows


@given(workflows())
@settings(max_examples=200, deadline=None)
def test_every_valid_workflow_round_trips(raw: list[Any]) -> None:
    steps = parse_steps("r", raw)
    assert load_steps(dump_steps(steps)) == steps
    for step in steps:
        assert load_step(dump_step(step)) == step


def test_the_copy_is_compact_json_one_object_per_step() -> None:
    steps = (
        Delay(259_200.0),
        Send((Channel.PUSH,), SendMode.FIRST, (Channel.SMS,)),
        Wait(until=WaitFor.READ, timeout_s=60.0),
        Throttle(2, 86_400.0),
        Digest(Channel.EMAIL, 3600.0, 60.0, 10),
    )
    text = dump_steps(steps)
    assert " " not in text
    assert json.loads(text)[:2] == [
        {"kind": "delay", "duration_s": 259_200.0},
        {"kind": "send", "channels": ["push"], "mode": "first", "opt_in": ["sms"]},
    ]


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="teleport"):
        load_steps('[{"kind": "teleport"}]')
