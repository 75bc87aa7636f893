"""Inbox list cursors: round trip and garbage."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from consumers.api.inbox_query import InboxRow, Section, decode_list_cursor, encode_list_cursor

NOW = datetime.now(UTC)


def test_list_cursor_round_trip_and_garbage() -> None:
    row = InboxRow(
        id=uuid.uuid4(),
        notification_id="n",
        type="t",
        category="c",
        title="title",
        body=None,
        data={},
        created_at=NOW,
        expires_at=None,
        read_at=None,
    )
    sections: tuple[Section, ...] = ("u", "r")
    for section in sections:
        assert decode_list_cursor(encode_list_cursor(section, row)) == (section, NOW, row.id)
    for bad in ["", "x", "u.", "q.abc", "u.!!!", "u." + "A" * 40]:
        with pytest.raises(ValueError):
            decode_list_cursor(bad)
