"""The Redis key of an event id emitted over HTTP: per tenant, the default tenant's as before."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumers.api.admin.dedupe import event_key

_ID = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=30)  # checked ids


def test_the_default_tenants_key_is_the_one_from_before_tenants() -> None:
    assert event_key("herald:api:event", None, "invoice-1001") == "herald:api:event:invoice-1001"
    assert event_key("herald:api:event", "", "invoice-1001") == "herald:api:event:invoice-1001"


@given(_ID, _ID, _ID, _ID)
def test_no_two_tenants_share_a_key(tenant: str, event_id: str, other: str, event_id2: str) -> None:
    assert event_key("p", tenant, event_id) != event_key("p", "", event_id2)
    if (tenant, event_id) != (other, event_id2):
        assert event_key("p", tenant, event_id) != event_key("p", other, event_id2)
