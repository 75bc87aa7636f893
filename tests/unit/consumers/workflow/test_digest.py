"""The workflow digest's pure parts: one message per tenant, its key, and each item's line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.fallback.decisions import DigestItem
from consumers.infra.keys import derived_key
from consumers.workflow.digest import digest_item, digest_message_key, regroup, tenant_groups
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


def test_an_erased_users_items_are_listed_under_their_own_tenant_not_the_digests() -> None:
    # A digest from before migration 240 of tenant "": 4 items of its own (3 kept), and acme's
    # whose workflow rows were erased (None: counted apart, 2 kept of 2).
    tenants = ["", "acme", "", "acme", ""]
    parts: list[str | None] = ["", None, "", None, ""]
    totals = [4, 2, 4, 2, 4]
    assert regroup(tenants, parts, totals, "") == [("", [0, 2, 4], 4), ("acme", [1, 3], 2)]


def test_an_item_counted_under_another_tenant_counts_where_it_belongs() -> None:
    # Counted under "" (5 there), it is acme's: "" has 4, acme 1 (and its own 3).
    assert regroup(["", "acme", "acme"], ["", "", "acme"], [5, 5, 3], "") == [
        ("", [0], 4),
        ("acme", [1, 2], 4),
    ]


@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["", "acme", "globex"]), st.booleans(), st.integers(0, 5)), max_size=20
    ),
    own=st.sampled_from(["", "acme"]),
)
def test_each_kept_item_is_in_its_tenants_group_and_counts_add_up(
    rows: list[tuple[str, bool, int]], own: str
) -> None:
    # An item is counted under its own tenant, or (its workflow row erased) under none; each
    # tenant's count is its kept items plus some not kept.
    tenants = [t for t, _, _ in rows]
    parts = [t if known else None for t, known, _ in rows]
    kept = {p: sum(1 for q in parts if q == p) for p in parts}
    extra = {p: n for (_, _, n), p in zip(rows, parts, strict=True)}
    totals = [kept[p] + extra[p] for p in parts]
    groups = regroup(tenants, parts, totals, own)
    assert sorted(i for _, idx, _ in groups for i in idx) == list(range(len(rows)))
    assert all(tenants[i] == tenant and count >= len(idx) for tenant, idx, count in groups for i in idx)
    known = {p: n for p, n in zip(parts, totals, strict=True) if p is not None}
    strays = sum(1 for p in parts if p is None)
    assert sum(count for _, _, count in groups) == sum(known.values()) + strays


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
