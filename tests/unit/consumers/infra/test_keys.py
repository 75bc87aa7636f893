"""Deterministic ids: a replay of the same event produces the same keys."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from consumers.infra import keys
from consumers.infra.keys import derived_key, idempotency_key, notification_id, outcome_id


def test_keys_are_deterministic_and_distinct_per_part() -> None:
    assert idempotency_key("e1", "email", "a@x") == idempotency_key("e1", "email", "a@x")
    keys = {
        idempotency_key("e1", "email", "a@x"),
        idempotency_key("e2", "email", "a@x"),
        idempotency_key("e1", "sms", "a@x"),
        idempotency_key("e1", "email", "b@x"),
    }
    assert len(keys) == 4
    assert all(k.startswith("msg_") and len(k) == 36 for k in keys)


def test_parts_cannot_be_shifted_into_each_other() -> None:
    # ("e1", "email", "x") and ("e1e", "mail", "x") must not collide through concatenation.
    assert idempotency_key("e1", "email", "x") != idempotency_key("e1e", "mail", "x")


def test_notification_id_is_a_uuid_per_event_and_user() -> None:
    n = notification_id("e1", "u1")
    assert n == notification_id("e1", "u1") != notification_id("e1", "u2")
    assert len(n) == 36 and n.count("-") == 4


def test_derived_and_outcome_ids() -> None:
    k = idempotency_key("e1", "push", "u1")
    assert derived_key(k, "escalate:email") == derived_key(k, "escalate:email") != derived_key(k, "digest")
    assert outcome_id(k, "sent", 1) != outcome_id(k, "sent", 2) != outcome_id(k, "failed_retryable", 2)


_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=60)  # a surrogate is never a key


@given(_TEXT, _TEXT)
def test_notification_id_is_uuid5_of_event_and_user(event_id: str, user_id: str) -> None:
    # the hot path writes the version and variant digits into the hex itself: still uuid5's answer
    assert notification_id(event_id, user_id) == str(uuid.uuid5(keys._NAMESPACE, f"{event_id}\x1f{user_id}"))
