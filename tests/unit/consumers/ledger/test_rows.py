"""Activity rows and day partitions: identities come from the record, retention drops whole days."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from consumers.ledger.rows import (
    COLUMNS,
    DeadLetterCoordinates,
    bare_dead_letter,
    columns_of,
    expired_partitions,
    partition_bounds,
    partition_day,
    partition_name,
    row_from_dead_letter,
    row_from_outcome,
    row_from_receipt,
)
from schemas.models import Channel, OutcomeStatus
from tests.ledger_helpers import message, outcome, receipt

T0 = datetime(2026, 3, 1, 23, 59, 30, tzinfo=UTC)


def test_an_outcome_row_is_keyed_and_anchored_by_the_record_alone() -> None:
    m = message("ev-1", "u1", Channel.EMAIL, at=T0, attempt=2)
    o = outcome(m, OutcomeStatus.FAILED_RETRYABLE, after_s=90, provider="ses", error_code="Throttling")
    row = row_from_outcome(o)
    assert (row.dedupe_key, row.status, row.attempt) == (m.idempotency_key, "failed_retryable", 2)
    # Recorded after midnight, anchored at the event: every outcome of a key shares a partition.
    assert row.anchor_at == T0 and row.recorded_at.date() == date(2026, 3, 2)
    assert (row.recipient, row.tenant, row.provider, row.error_code) == (
        "u1@example.com",
        "acme",
        "ses",
        "Throttling",
    )
    assert row_from_outcome(o) == row


def test_a_decision_without_a_message_is_keyed_by_its_outcome_id() -> None:
    o = outcome(message("ev-2", "u2", at=T0), OutcomeStatus.SUPPRESSED, reason="preference")
    o.idempotency_key, o.message = None, None
    row = row_from_outcome(o)
    assert row.dedupe_key == o.outcome_id and row.recipient is None and row.reason == "preference"


def test_nul_characters_never_reach_postgresql() -> None:
    o = outcome(message("ev-3", "u3", at=T0), OutcomeStatus.FAILED_PERMANENT, detail="bad\x00body")
    assert row_from_outcome(o).detail == "bad\ufffdbody"


def test_a_receipt_row() -> None:
    m = message("ev-4", "u4", at=T0)
    row = row_from_receipt(receipt(m))
    assert (row.kind, row.status, row.attempt, row.notification_id) == (
        "receipt",
        "delivered",
        0,
        m.notification_id,
    )
    assert row.dedupe_key == f'receipt:{m.notification_id}:push:["u4",null]'


def test_a_receipts_identity_names_its_sender() -> None:
    # A forged receipt (another user's, or the same user id in another tenant) at the owner's time
    # must not share the owner's identity, or the activity store keeps only the first of them.
    mine = receipt(message("ev-5", "u5", at=T0))
    others = [
        dataclasses.replace(mine, user_id="u6"),
        dataclasses.replace(mine, tenant=""),
        dataclasses.replace(mine, tenant="acme"),
        dataclasses.replace(mine, user_id="u5:acme"),  # ':' in an id cannot shift user into tenant
    ]
    rows = [row_from_receipt(r) for r in (mine, *others)]
    identities = {(r.dedupe_key, r.status, r.attempt, r.anchor_at) for r in rows}
    assert len(identities) == len(rows)
    assert row_from_receipt(mine) == rows[0]  # and the same receipt twice is still one


def test_a_dead_letter_row_reads_its_headers_and_the_last_verdict_wins() -> None:
    at = DeadLetterCoordinates("h.events.dlq", 1, 17, int(T0.timestamp() * 1000))
    headers = [
        ("herald-dlq-reason", b"poison"),
        ("herald-dlq-reason", b"unknown_event_type"),
        ("herald-dlq-error-class", b"Rejected"),
        ("herald-source-topic", b"h.events"),
        ("herald-consumer-group", b"herald-classifier"),
    ]
    row = row_from_dead_letter(at, headers, {"event_id": "ev-5", "user_id": "u5"})
    assert (row.reason, row.error_code, row.source_topic) == ("unknown_event_type", "Rejected", "h.events")
    assert row.consumer_group == "herald-classifier"
    assert (row.topic, row.kafka_partition, row.kafka_offset, row.event_id) == ("h.events.dlq", 1, 17, "ev-5")
    assert row.dedupe_key == "dlq:h.events.dlq:1:17" and row.anchor_at == T0
    assert row_from_dead_letter(at, []).reason == "unknown"


def test_text_postgresql_cannot_hold_becomes_a_replacement_character() -> None:
    at = DeadLetterCoordinates("h.events.dlq", 0, 1, int(T0.timestamp() * 1000))
    row = row_from_dead_letter(at, [], {"user_id": "a\x00b\ud800c"})
    assert row.user_id == "a\ufffdb\ufffdc"


def test_a_bare_dead_letter_keeps_its_coordinates_and_a_short_ascii_reason() -> None:
    at = DeadLetterCoordinates("h.events.dlq", 2, 9, int(T0.timestamp() * 1000))
    full = row_from_dead_letter(at, [("herald-dlq-reason", ("\U00020000" * 2000).encode())], {"user_id": "u"})
    bare = bare_dead_letter(full, "ProgramLimitExceededError: index row size 8016 exceeds maximum 2704")
    assert (bare.dedupe_key, bare.topic, bare.kafka_partition, bare.kafka_offset) == (
        full.dedupe_key,
        "h.events.dlq",
        2,
        9,
    )
    assert bare.reason == "?" * 64 and bare.user_id is None
    assert (
        bare.detail
        == "stored without its identifiers: ProgramLimitExceededError: index row size 8016 exceeds maximum 2704"
    )


def test_columns_are_transposed_in_column_order() -> None:
    rows = [row_from_receipt(receipt(message(f"e{i}", "u", at=T0))) for i in range(3)]
    cols = columns_of(rows)
    assert len(cols) == len(COLUMNS) and all(len(c) == 3 for c in cols)
    assert cols[COLUMNS.index("status")] == ["delivered"] * 3
    assert columns_of([]) == [[] for _ in COLUMNS]


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_every_instant_falls_in_its_day_partition(when: datetime) -> None:
    start, end = partition_bounds(partition_day(when))
    assert start <= when < end and end - start == timedelta(days=1)


@given(st.integers(1, 400), st.integers(0, 800))
def test_retention_keeps_exactly_the_last_n_days(retention: int, span: int) -> None:
    today = date(2026, 6, 30)
    names = [partition_name(today - timedelta(days=d)) for d in range(span)] + ["herald_activity_pjunk"]
    dropped = expired_partitions(names, today, retention)
    assert len(dropped) == max(0, span - retention)
    assert partition_name(today) not in dropped
    assert all(n in names for n in dropped) and "herald_activity_pjunk" not in dropped
