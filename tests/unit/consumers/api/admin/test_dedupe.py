"""The Redis key of an event id emitted over HTTP: per tenant, the default tenant's as before."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumers.api.admin.dedupe import DONE, Claim, claim_state, event_key

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
