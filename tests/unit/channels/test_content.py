"""Content no channel can carry is InvalidContent (failed_permanent invalid_content), wherever found."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.base import Content
from channels.content import check_content, text_problem
from channels.webhook.http import render_body
from schemas.errors import InvalidContent
from schemas.models import Channel, ChannelMessage, DomainEvent, Lane, Tier


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("hello", None),
        ("tab\tnew\nline ok, emoji 🎉", None),
        ("a\x00b", "NUL character at position 1"),
        ("ab\ud800", "lone surrogate U+D800 at position 2"),
        ("\udfff", "lone surrogate U+DFFF at position 0"),
    ],
)
def test_text_problem(text: str, problem: str | None) -> None:
    assert text_problem(text) == problem


def test_check_content_names_the_field() -> None:
    check_content(Content(subject="s", html="<p>ok</p>", text="ok"))
    with pytest.raises(InvalidContent, match=r"^html: NUL") as caught:
        check_content(Content(subject="s", html="<p>\x00</p>", text="ok"))
    assert caught.value.reason == "invalid_content"
    with pytest.raises(InvalidContent, match=r"^title: lone surrogate"):
        check_content(Content(title="\ud83d", text="x"))


def _first_problem(content: Content) -> str | None:
    """check_content's answer as first written: every field into one dict, each checked by encoding."""

    def problem(text: str) -> str | None:
        if "\x00" in text:
            return f"NUL character at position {text.index(chr(0))}"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"lone surrogate U+{ord(text[exc.start]):04X} at position {exc.start}"
        return None

    fields = {
        "subject": content.subject,
        "title": content.title,
        "text": content.text,
        "html": content.html,
        **{f"header {k}": v for k, v in content.headers.items()},
    }
    for name, value in fields.items():
        if value is not None and (found := problem(value)) is not None:
            return f"{name}: {found}"
    if content.body is not None and b"\x00" in content.body:
        return "body: NUL byte"
    return None


_texts = st.one_of(st.none(), st.text(max_size=12), st.text(alphabet="ab\x00\ud800\udfffé", max_size=6))


@settings(max_examples=400)
@given(
    st.builds(
        Content,
        subject=_texts,
        title=_texts,
        text=_texts,
        html=_texts,
        headers=st.dictionaries(
            st.text(max_size=4), st.text(alphabet="a\x00\ud800é", max_size=4), max_size=3
        ),
        body=st.one_of(st.none(), st.binary(max_size=6)),
    )
)
def test_check_content_finds_what_checking_every_field_by_encoding_finds(content: Content) -> None:
    expected = _first_problem(content)
    try:
        check_content(content)
    except InvalidContent as exc:
        assert str(exc) == expected
    else:
        assert expected is None


def _message(payload: str) -> ChannelMessage:
    return ChannelMessage(
        notification_id="n",
        event_id="e",
        event_type="t",
        user_id="u",
        channel=Channel.WEBHOOK,
        lane=Lane.PRIORITY,
        tier=Tier.SYSTEM,
        category="system",
        recipient="ep",
        template="t",
        locale="en",
        idempotency_key="k",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        payload=payload,
    )


def test_a_payload_nested_100000_deep_is_invalid_content_not_a_recursion_error() -> None:
    deep = '{"a":' * 100_000 + "1" + "}" * 100_000
    with pytest.raises(InvalidContent, match="nested too deeply"):
        _message(deep).data()
    with pytest.raises(InvalidContent):
        DomainEvent(event_id="e", type="t", occurred_at=datetime.now(UTC), user_id="u", payload=deep).data()
    with pytest.raises(InvalidContent):
        render_body(_message(deep))


def test_a_lone_surrogate_in_a_webhook_payload_is_invalid_content() -> None:
    with pytest.raises(InvalidContent, match="lone surrogate"):
        render_body(_message(json.dumps({"name": "\ud800"})))
    assert b'"name":"\\u0000"' in render_body(_message(json.dumps({"name": "\x00"})))  # JSON escapes NUL
