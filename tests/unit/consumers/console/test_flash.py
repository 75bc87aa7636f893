"""The console's confirmations: only fixed sentences, each value of its field's form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.console.flash import MESSAGES, flash_query, flash_text

DLQ = frozenset({"herald.outcomes.dlq", "herald.events.dlq"})
EP = "ep_" + "0a1b" * 6


def test_each_action_round_trips_through_its_query() -> None:
    q = flash_query("dlq_replayed", n=3, topic="herald.outcomes.dlq", skipped=1)
    assert flash_text(q, DLQ) == "replayed 3 record(s) from herald.outcomes.dlq (1 skipped)"
    q = flash_query("endpoint_resent", endpoint=EP, n=2, since="2026-12-03T07:00")
    assert flash_text(q, DLQ) == f"{EP}: re-sent 2 message(s) since 2026-12-03T07:00"


def test_an_endpoint_id_not_made_by_herald_shows_nothing() -> None:
    """A host name posing as an endpoint id (an operator's own --id too: no confirmation line)."""
    assert flash_text({"done": "endpoint_disabled", "endpoint": "support.evil-example.com"}, DLQ) is None


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"msg": "anything at all"},
        {"done": "nope"},
        {"done": "endpoint_enabled"},  # a missing value
        {"done": "dlq_replayed", "n": "3", "skipped": "0", "topic": "support.evil-example.com"},
        {"done": "dlq_replayed", "n": "3", "skipped": "0", "topic": "herald.other.dlq"},
        {"done": "dlq_replayed", "n": "call", "skipped": "0", "topic": "herald.events.dlq"},
        {"done": "endpoint_resent", "endpoint": EP, "n": "1", "since": "support.evil-example.com"},
        {"done": "endpoint_resent", "endpoint": EP, "n": "-1", "since": "2026-12-03T07:00"},
    ],
)
def test_anything_else_shows_nothing(query: dict[str, str]) -> None:
    assert flash_text(query, DLQ) is None


def test_a_code_takes_exactly_its_fields() -> None:
    with pytest.raises(ValueError):
        flash_query("endpoint_enabled")
    with pytest.raises(ValueError):
        flash_query("endpoint_enabled", endpoint="ep_1", extra="x")
    with pytest.raises(ValueError):
        flash_query("unknown")


@given(st.sampled_from(sorted(MESSAGES)), st.dictionaries(st.text(max_size=8), st.text(max_size=40)))
def test_whatever_is_shown_is_a_known_sentence_without_spaces_in_its_values(
    code: str, extra: dict[str, str]
) -> None:
    text = flash_text({**extra, "done": code}, DLQ)
    if text is not None:
        fixed_spaces = MESSAGES[code].count(" ")
        assert text.count(" ") == fixed_spaces  # no value brought words of its own
