"""POST /v1/events bodies: located errors, the closest routes, defaults."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.api.admin.event_models import (
    SEND_AT_MAX_AHEAD,
    FieldProblem,
    parse_events,
    send_at_problem,
    to_domain_event,
    unknown_type,
)
from consumers.classifier.routing import parse_routing

ROUTES = parse_routing(
    {
        "routes": [
            {
                "match": "payment_receipt",
                "tier": "high",
                "category": "payments",
                "channels": ["push"],
                "template": "p",
            },
            {
                "match": "security.*",
                "tier": "critical",
                "category": "security",
                "channels": ["sms"],
                "template": "s",
            },
        ]
    }
)


def test_unknown_types_name_the_closest_routes() -> None:
    assert unknown_type(ROUTES, "payment_receipt") is None
    assert unknown_type(ROUTES, "security.login") is None
    why = unknown_type(ROUTES, "payment_reciept")
    assert why is not None and "did you mean payment_receipt" in why
    assert "did you mean" not in (unknown_type(ROUTES, "zzz") or "")


def test_parse_events_locates_errors_in_batches() -> None:
    events, as_list = parse_events({"type": "t", "user_id": "u"}, 500)
    assert not as_list and events[0].user_id == "u"
    with pytest.raises(FieldProblem) as exc:
        parse_events([{"type": "t", "user_id": "u"}, {"type": "t", "user_id": "u", "colour": 1}], 500)
    assert exc.value.errors[0]["loc"] == ("body", 1, "colour")
    with pytest.raises(FieldProblem, match="more than 2"):
        parse_events([{"type": "t", "user_id": "u"}] * 3, 2)
    with pytest.raises(FieldProblem, match="exactly one"):
        parse_events({"type": "t", "user_id": "u", "topic": "news"}, 5)


def test_to_domain_event_defaults() -> None:
    (e,), _ = parse_events(
        {"type": "t", "user_id": "u", "data": {"a": 1}, "occurred_at": "2026-01-01T10:00:00"}, 5
    )
    now, new_id = datetime(2026, 12, 1, tzinfo=UTC), uuid.uuid4()
    d = to_domain_event(e, "acme", now, new_id)
    assert d.event_id == str(new_id) and d.tenant == "acme" and d.payload == '{"a":1}'
    assert d.occurred_at == datetime(2026, 1, 1, 10, tzinfo=UTC)


@given(st.timedeltas(min_value=timedelta(days=-3650), max_value=timedelta(days=3650)))
def test_send_at_is_refused_only_beyond_366_days(ahead: timedelta) -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    problem = send_at_problem(now + ahead, now)
    assert (problem is not None) == (ahead > SEND_AT_MAX_AHEAD)
    assert send_at_problem(None, now) is None
    assert send_at_problem(now + timedelta(days=366), now) is None
    assert send_at_problem(now + timedelta(days=366, seconds=1), now) == "more than 366 days ahead"
