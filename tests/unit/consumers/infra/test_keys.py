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


def test_the_default_tenants_ids_are_those_from_before_tenants() -> None:
    # Fixed values computed before tenants named their ids: stored rows, sent messages and
    # replays of the default tenant keep their keys across the upgrade.
    for tenant in (None, ""):
        assert notification_id("invoice-1001", "bob", tenant) == "414c3666-8790-5a90-be3d-d0ad68fee6d7"
        assert (
            idempotency_key("invoice-1001", "push", "bob", tenant) == "msg_ec7771c31b3bd8c86a4f77f7a355f8d4"
        )
        assert idempotency_key("invoice-1001", "email", "", tenant) == "msg_3321f154ef4f6475639c197ee4a8da56"


def test_another_tenant_gets_its_own_ids_for_the_same_event_and_user() -> None:
    nids = {notification_id("invoice-1001", "bob", t) for t in ("", "acme", "globex")}
    keys_ = {idempotency_key("invoice-1001", "push", "bob", t) for t in ("", "acme", "globex")}
    assert len(nids) == len(keys_) == 3
    assert notification_id("invoice-1001", "bob", "acme") == notification_id("invoice-1001", "bob", "acme")
    uuid.UUID(notification_id("invoice-1001", "bob", "acme"))  # still a uuid5
    assert uuid.UUID(notification_id("e", "u", "acme")).version == 5


_ID = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=30)  # checked ids


@given(_ID, _ID, _ID, _ID, _ID)
def test_no_default_tenant_ids_equal_a_tenants(
    tenant: str, event_id: str, user_id: str, e2: str, u2: str
) -> None:
    # control characters never pass the identifier check, so the tenant's separator is unambiguous
    assert notification_id(event_id, user_id, tenant) != notification_id(e2, u2)
    assert idempotency_key(event_id, "push", user_id, tenant) != idempotency_key(e2, "push", u2)
    assert notification_id(event_id, user_id, tenant) != notification_id(e2, u2, tenant + "x")
