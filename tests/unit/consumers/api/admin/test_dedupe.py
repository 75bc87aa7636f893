"""The Redis key of an event id emitted over HTTP: per tenant, the default tenant's as before."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumers.api.admin.dedupe import DONE, Claim, claim_state, event_key, first_of, retry_after_s

_ID = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=30)  # checked ids


def test_the_default_tenants_key_is_the_one_from_before_tenants() -> None:
    assert event_key("herald:api:event", None, "invoice-1001") == "herald:api:event:invoice-1001"
    assert event_key("herald:api:event", "", "invoice-1001") == "herald:api:event:invoice-1001"


@given(_ID, _ID, _ID, _ID)
def test_no_two_tenants_share_a_key(tenant: str, event_id: str, other: str, event_id2: str) -> None:
    assert event_key("p", tenant, event_id) != event_key("p", "", event_id2)
    if (tenant, event_id) != (other, event_id2):
        assert event_key("p", tenant, event_id) != event_key("p", other, event_id2)


def test_only_a_done_mark_is_a_duplicate() -> None:
    assert claim_state(True, b"p:abc") is Claim.NEW
    assert claim_state(b"OK", b"p:abc") is Claim.NEW
    assert claim_state(None, DONE) is Claim.DONE
    assert claim_state(False, b"p:0123456789abcdef") is Claim.PENDING
    # gone between SET NX and GET (released or expired): someone else's, outcome unknown
    assert claim_state(None, None) is Claim.PENDING


@given(st.binary(max_size=20).filter(lambda v: not v.startswith(b"p:")))
def test_a_mark_from_before_pending_marks_stays_a_duplicate(value: bytes) -> None:
    assert claim_state(None, value) is Claim.DONE


@given(st.lists(st.sampled_from("abc"), max_size=12))
def test_a_repeat_points_at_the_first_occurrence(keys: list[str]) -> None:
    first = first_of(keys)
    for i, k in enumerate(keys):
        assert keys[first[i]] == k and first[i] <= i and k not in keys[: first[i]]


def test_retry_after_is_the_longest_remaining_ttl_rounded_up() -> None:
    assert retry_after_s([59_001, 1_500]) == 60
    assert retry_after_s([2_000]) == 2
    # gone (-2) or without a TTL (-1), or nothing pending: retry at once, never 0
    assert retry_after_s([-2, -1]) == 1 and retry_after_s([]) == 1 and retry_after_s([1]) == 1


@given(st.lists(st.integers(-2, 10**7), max_size=5))
def test_retry_after_covers_every_mark(pttls: list[int]) -> None:
    assert all(retry_after_s(pttls) * 1000 >= p for p in pttls) and retry_after_s(pttls) >= 1
