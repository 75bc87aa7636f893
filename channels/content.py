"""What no channel can carry, found once after rendering and before any provider call. Pure.

A lone surrogate cannot be encoded as UTF-8 (botocore, httpx and asyncpg all fail on it) and a
NUL byte is refused by PostgreSQL and by SMTP. Such text comes from the event's payload, so
the message fails permanently with reason ``invalid_content`` instead of being retried for hours.
"""

from __future__ import annotations

from channels.base import Content
from schemas.errors import InvalidContent

__all__ = ["check_content", "text_problem"]


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be sent, or None. Pure."""
    if "\x00" in text:
        return f"NUL character at position {text.index(chr(0))}"
    if text.isascii():  # known from the string's header: no surrogate, nothing to encode
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"lone surrogate U+{ord(text[exc.start]):04X} at position {exc.start}"
    return None


def check_content(content: Content) -> None:
    """Raise :class:`InvalidContent` naming the first field no channel can carry."""
    fields = (
        ("subject", content.subject),
        ("title", content.title),
        ("text", content.text),
        ("html", content.html),
    )
    for name, value in fields:
        if value is not None and (problem := text_problem(value)) is not None:
            raise InvalidContent(f"{name}: {problem}")
    for key, value in content.headers.items():
        if (problem := text_problem(value)) is not None:
            raise InvalidContent(f"header {key}: {problem}")
    if content.body is not None and b"\x00" in content.body:
        raise InvalidContent("body: NUL byte")
