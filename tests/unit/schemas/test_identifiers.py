"""The one identifier check shared by the emitter, the classifier and the HTTP emit endpoint."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.emitter import build_event
from schemas.identifiers import LIMITS, InvalidIdentifier, check_event, check_identifiers, identifier_problem


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("u-42", None),
        ("Zoë 🎉", None),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("u\x00", "control character or lone surrogate U+0000 at position 1"),
        ("u\n1", "control character or lone surrogate U+000A at position 1"),
        ("\x7f", "control character or lone surrogate U+007F at position 0"),
        ("a\x85", "control character or lone surrogate U+0085 at position 1"),
        ("a\ud800b", "control character or lone surrogate U+D800 at position 1"),
        ("x" * 257, "257 characters > 256"),
        ("x" * 256, None),
    ],
)
def test_identifier_problem(value: str, problem: str | None) -> None:
    assert identifier_problem(value, limit=LIMITS["user_id"]) == problem


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"user_id": "u\x00"}, "user_id"),
        ({"user_id": "x" * 100_000}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"event_type": "a\x1bb"}, "type"),
        ({"event_type": "t" * 129}, "type"),
        ({"tenant": ""}, "tenant"),
        ({"tenant": "acme\ud83d"}, "tenant"),
        ({"event_id": "e\r\n"}, "event_id"),
    ],
)
def test_an_invalid_identifier_names_its_field(fields: dict[str, str], field: str) -> None:
    args = {"event_id": "e1", "event_type": "mention", "user_id": "u1", "tenant": None} | fields
    with pytest.raises(InvalidIdentifier) as caught:
        check_identifiers(**args)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert caught.value.reason == "invalid_event"
    assert str(caught.value).startswith(f"{field}: ")


def test_the_emitter_refuses_what_the_classifier_would_dead_letter() -> None:
    with pytest.raises(InvalidIdentifier, match="user_id"):
        build_event("mention", user_id="u\x00")
    with pytest.raises(ValueError, match="type"):  # still a ValueError for callers that catch that
        build_event("", user_id="u1")
    assert build_event("mention", user_id="u1", tenant="acme").tenant == "acme"


@given(st.text(max_size=300))
def test_accepted_identifiers_are_storable_text(value: str) -> None:
    """Anything accepted encodes as UTF-8 without a NUL and fits the limit (what PostgreSQL needs)."""
    if identifier_problem(value, limit=256) is None:
        encoded = value.encode("utf-8")
        assert b"\x00" not in encoded and value.strip() and len(value) <= 256


def test_a_fan_out_event_may_have_an_empty_user_id_but_a_valid_topic() -> None:
    check_identifiers(event_id="e1", event_type="release", user_id="", tenant=None, topic="product-news")
    with pytest.raises(InvalidIdentifier) as caught:
        check_identifiers(event_id="e1", event_type="release", user_id="", tenant=None, topic="news\x00")
    assert caught.value.field == "topic"
    with pytest.raises(InvalidIdentifier) as no_topic:
        check_identifiers(event_id="e1", event_type="release", user_id="", tenant=None)
    assert no_topic.value.field == "user_id"


def test_check_event_covers_the_cancel_key() -> None:
    event = build_event("mention", user_id="u1")
    event.cancel_key = "order-1\x1b"
    with pytest.raises(InvalidIdentifier) as caught:
        check_event(event)
    assert caught.value.field == "cancel_key"


def test_forbidden_characters_are_exactly_unicode_categories_cc_and_cs() -> None:
    # The check is one regular expression; every code point agrees with unicodedata's categories.
    disagree = [
        cp
        for cp in range(sys.maxunicode + 1)
        if (identifier_problem(f"a{chr(cp)}", limit=8) is not None)
        != (unicodedata.category(chr(cp)) in {"Cc", "Cs"})
    ]
    assert disagree == []
    assert (
        identifier_problem("ab\x85c", limit=8) == "control character or lone surrogate U+0085 at position 2"
    )
