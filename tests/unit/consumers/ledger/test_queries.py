"""The console's search filters become one parameterised WHERE clause (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from consumers.ledger.queries import Search, cut_timeline

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


def test_a_timeline_keeps_the_first_receipts_and_the_first_other_rows() -> None:
    rows = [
        {"kind": k, "n": i} for i, k in enumerate(["outcome", "receipt", "receipt", "outcome", "receipt"])
    ]
    kept, more = cut_timeline(rows, receipts=2, others=5)
    assert [r["n"] for r in kept] == [0, 1, 2, 3] and more
    kept, more = cut_timeline(rows, receipts=3, others=1)
    assert [r["n"] for r in kept] == [0, 1, 2, 4] and more
    assert cut_timeline(rows, receipts=3, others=2) == (rows, False)
