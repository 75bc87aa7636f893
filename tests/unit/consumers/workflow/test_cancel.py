"""A herald.cancel's key as stored and looked up: per tenant, the default tenant's bare."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumers.workflow.cancel import scoped_cancel_key

_ID = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=30)  # checked ids


def test_the_default_tenants_key_is_the_bare_cancel_key() -> None:
    assert scoped_cancel_key("invoice-42", None) == scoped_cancel_key("invoice-42", "") == "invoice-42"
    assert scoped_cancel_key(None, "acme") is None


@given(_ID, _ID, _ID, _ID)
def test_a_tenants_key_is_never_another_tenants(tenant: str, key: str, other: str, key2: str) -> None:
    assert scoped_cancel_key(key, tenant) != scoped_cancel_key(key2, "")
    if (tenant, key) != (other, key2):
        assert scoped_cancel_key(key, tenant) != scoped_cancel_key(key2, other)
