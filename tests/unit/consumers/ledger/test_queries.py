"""The console's search filters become one parameterised WHERE clause (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.ledger.queries import Search

T = datetime(2026, 1, 2, tzinfo=UTC)


def test_only_given_filters_are_used_and_values_are_parameters() -> None:
    where, args = Search(user_id="u1", recipient="a@b.c", since=T).where()
    assert where == "user_id = $1 AND recipient = $2 AND recorded_at >= $3"
    assert args == ["u1", "a@b.c", T]
    assert Search().where() == ("TRUE", []) and Search().empty
    evil = "x' OR '1'='1"
    where, args = Search(event_id=evil, status="sent", until=T).where()
    assert evil not in where and args == [evil, "sent", T]
    assert not Search(status="sent").empty
