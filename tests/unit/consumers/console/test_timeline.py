"""A notification's timeline from activity rows (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.console.timeline import build_timeline, relative

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def _row(kind: str, status: str, after_s: float, channel: str | None = None, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": kind,
        "status": status,
        "attempt": 1,
        "anchor_at": T0,
        "recorded_at": T0 + timedelta(seconds=after_s),
        "event_id": "ev1",
        "notification_id": "n1",
        "user_id": "u1",
        "tenant": None,
        "event_type": "security_alert",
        "tier": "high",
        "channel": channel,
    }
    return {**base, **extra}


def test_an_escalated_notification_reads_in_order_with_relative_times() -> None:
    rows = [
        _row("outcome", "suppressed", 0.2, "sms", reason="preference"),
        _row("outcome", "sent", 0.4, "push", provider="fcm"),
        _row("outcome", "escalated", 300.4, "push", reason="no_receipt"),
        _row("outcome", "failed_retryable", 301.0, "email", provider="ses", error_code="Throttling"),
        _row("outcome", "sent", 311.0, "email", provider="ses", attempt=2),
        _row("receipt", "delivered", 320.0, "email", provider="ses"),
    ]
    t = build_timeline("n1", rows)
    assert [(s.stage, s.title) for s in t.steps] == [
        ("event", "event received: security_alert"),
        ("decision", "sms: suppressed"),
        ("attempt", "push: sent"),
        ("escalation", "push: escalated"),
        ("attempt", "email: failed retryable"),
        ("attempt", "email: sent"),
        ("receipt", "receipt: delivered (email)"),
    ]
    assert [relative(s.at_s) for s in t.steps] == [
        "+0.0s",
        "+0.2s",
        "+0.4s",
        "+5m 0s",
        "+5m 1s",
        "+5m 11s",
        "+5m 20s",
    ]
    retry = dict(t.steps[5].facts)
    assert retry["attempt"] == "2" and retry["after previous step"] == "+10s" and retry["provider"] == "ses"
    assert dict(t.steps[4].facts)["response"] == "Throttling"
    assert dict(t.steps[1].facts)["reason"] == "preference"
    assert (t.event_id, t.user_id, t.tier, t.event_at) == ("ev1", "u1", "high", T0)
    assert t.channels == ["email", "push", "sms"]


def test_a_dead_letter_and_an_empty_history() -> None:
    t = build_timeline(
        "n2", [_row("dead_letter", "dead_lettered", 0, None, reason="poison", source_topic="h.events")]
    )
    assert t.steps[-1].title == "dead-lettered: poison" and t.steps[-1].tone == "bad"
    assert build_timeline("n3", []).steps == ()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "+0.0s"),
        (9.94, "+9.9s"),
        (42, "+42s"),
        (61, "+1m 1s"),
        (3600 * 2 + 60, "+2h 1m"),
        (90000, "+1d 1h"),
        (-3, "-3.0s"),
    ],
)
def test_relative(seconds: float, text: str) -> None:
    assert relative(seconds) == text


@pytest.mark.parametrize(
    ("source", "user", "tenant", "foreign"),
    [
        ("api", "u1", "acme", False),  # the owner's own
        ("api", "u1", None, False),  # a v1 receipt says no tenant: the user is the owner
        ("api", "mallory", "acme", True),  # another user
        ("api", "u1", "globex", True),  # the same user id in another tenant
        ("api", "u1", "", True),  # the default tenant's u1 is not acme's
        ("inbox", "mallory", "acme", False),  # Herald's own sources are trusted, as by the fallback
    ],
)
def test_a_receipt_the_fallback_drops_as_foreign_is_marked_dropped(
    source: str, user: str, tenant: str | None, foreign: bool
) -> None:
    rows = [
        _row("outcome", "sent", 0.4, "push", provider="fcm", tenant="acme"),
        _row("receipt", "delivered", 5.0, "push", provider=source, user_id=user, tenant=tenant),
    ]
    receipt = build_timeline("n1", rows).steps[-1]
    assert (receipt.tone == "bad") is foreign
    assert ("dropped (foreign)" in receipt.title) is foreign
    assert any(label == "dropped" for label, _ in receipt.facts) is foreign


def test_without_a_channel_outcome_no_receipt_is_judged() -> None:
    # nothing says whose the notification is yet (the fallback keeps such a receipt waiting)
    rows = [
        _row("outcome", "suppressed", 0.2, None, reason="opted_out"),
        _row("receipt", "delivered", 5.0, "push", provider="api", user_id="mallory"),
    ]
    assert build_timeline("n1", rows).steps[-1].tone == "ok"


def test_the_default_tenants_owner_and_its_receipt_agree() -> None:
    rows = [
        _row("outcome", "sent", 0.4, "push", provider="fcm", tenant=None),  # the message said no tenant
        _row("receipt", "delivered", 5.0, "push", provider="api", tenant=""),
    ]
    assert build_timeline("n1", rows).steps[-1].tone == "ok"
