"""The workflow digest's pure parts: one message per tenant, its key, and each item's line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.fallback.decisions import DigestItem
from consumers.infra.keys import derived_key
from consumers.workflow.digest import digest_item, digest_message_key, tenant_groups
from schemas.errors import InvalidContent
from schemas.models import DomainEvent


def test_a_digest_of_one_tenant_is_one_group_of_every_item() -> None:
    assert tenant_groups(["acme", "acme", "acme"], "acme") == [("acme", [0, 1, 2])]
    assert tenant_groups(["", ""], "") == [("", [0, 1])]


def test_two_tenants_items_never_share_a_group_and_the_digests_own_comes_first() -> None:
    # A digest row from before migration 240, keyed by user only, may hold two tenants' items.
    assert tenant_groups(["", "acme", "", "globex", "acme"], "acme") == [
        ("acme", [1, 4]),
        ("", [0, 2]),
        ("globex", [3]),
    ]
    assert tenant_groups(["acme", "acme"], "") == [("acme", [0, 1])]  # no empty group of its own


@given(
    tenants=st.lists(st.sampled_from(["", "acme", "globex"]), max_size=20), own=st.sampled_from(["", "acme"])
)
def test_every_item_is_in_exactly_one_group_of_its_own_tenant(tenants: list[str], own: str) -> None:
    groups = tenant_groups(tenants, own)
    assert sorted(i for _, idx in groups for i in idx) == list(range(len(tenants)))
    assert all(tenants[i] == tenant for tenant, idx in groups for i in idx)
    assert len({t for t, _ in groups}) == len(groups)


def test_the_digests_own_tenant_keeps_the_key_it_always_had() -> None:
    assert digest_message_key(7, "acme", "acme") == derived_key("workflow-digest:7", "message")
    assert digest_message_key(7, "", "") == derived_key("workflow-digest:7", "message")
    keys = {digest_message_key(7, t, "") for t in ("", "acme", "globex")} | {digest_message_key(8, "", "")}
    assert len(keys) == 4


def test_an_item_whose_payload_cannot_be_parsed_is_listed_under_its_type() -> None:
    # 100,000 nested arrays: parsing raises InvalidContent (a RecordError, not a ValueError); the
    # digest's send timer must not fail on one item, or the whole digest never goes out.
    at = datetime(2024, 5, 1, tzinfo=UTC)
    deep = DomainEvent(
        event_id="e1", type="comment_reply", occurred_at=at, user_id="u", payload="[" * 100_000
    )
    with pytest.raises(InvalidContent):
        deep.data()
    assert digest_item(deep, at) == DigestItem("comment_reply", "", at)
    listed = DomainEvent(event_id="e2", type="t", occurred_at=at, user_id="u", payload='{"title": "Hi"}')
    assert digest_item(listed, at).title == "Hi"
