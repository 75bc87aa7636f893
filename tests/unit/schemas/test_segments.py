"""Field-by-field encoding is fastavro's, byte for byte, on generated records of every contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import default_codec
from schemas.models import (
    Channel,
    ChannelMessage,
    DeliveryOutcome,
    DomainEvent,
    Lane,
    OutcomeStatus,
    Receipt,
    ReceiptStatus,
    Record,
    Tier,
)
from schemas.segments import SegmentedEncoder, avro_long, avro_string

CODEC = default_codec()
TEXT = st.text(
    st.characters(blacklist_categories=["Cs"]), max_size=300
)  # UTF-8 encodable: any but surrogates
TIMES = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
MESSAGES = st.builds(
    ChannelMessage,
    notification_id=TEXT,
    event_id=TEXT,
    event_type=TEXT,
    user_id=TEXT,
    channel=st.sampled_from(list(Channel)),
    lane=st.sampled_from(list(Lane)),
    tier=st.sampled_from(list(Tier)),
    category=TEXT,
    recipient=TEXT,
    template=TEXT,
    locale=TEXT,
    idempotency_key=TEXT,
    occurred_at=TIMES,
    tenant=st.none() | TEXT,
    timezone=TEXT,
    payload=TEXT,
    attempt=st.integers(-(2**31), 2**31 - 1),
    not_before=st.none() | TIMES,
    expires_at=st.none() | TIMES,
    escalated_from=st.none() | TEXT,
)
OUTCOMES = st.builds(
    DeliveryOutcome,
    outcome_id=TEXT,
    notification_id=TEXT,
    event_id=TEXT,
    event_type=TEXT,
    user_id=TEXT,
    tier=st.sampled_from(list(Tier)),
    status=st.sampled_from(list(OutcomeStatus)),
    occurred_at=TIMES,
    recorded_at=TIMES,
    channel=st.none() | st.sampled_from(list(Channel)),
    lane=st.none() | st.sampled_from(list(Lane)),
    reason=st.none() | TEXT,
    detail=st.none() | TEXT,
    idempotency_key=st.none() | TEXT,
    retry_after_ms=st.none() | st.integers(-(2**63), 2**63 - 1),
    not_before=st.none() | TIMES,
    message=st.none() | MESSAGES,
)
EVENTS = st.builds(
    DomainEvent,
    event_id=TEXT,
    type=TEXT,
    occurred_at=TIMES,
    user_id=TEXT,
    tenant=st.none() | TEXT,
    locale=st.none() | TEXT,
    payload=TEXT,
    topic=st.none() | TEXT,
    send_at=st.none() | TIMES,
    cancel_key=st.none() | TEXT,
)
RECEIPTS = st.builds(
    Receipt,
    notification_id=TEXT,
    user_id=TEXT,
    channel=st.none() | st.sampled_from(list(Channel)),
    status=st.sampled_from(list(ReceiptStatus)),
    at=TIMES,
    source=TEXT,
)
PER_MESSAGE = ("channel", "recipient", "idempotency_key", "not_before")


@settings(max_examples=300, deadline=None)
@given(st.lists(MESSAGES, min_size=1, max_size=4))
def test_a_family_shares_the_first_records_fields_and_each_record_adds_its_own(
    family: list[ChannelMessage],
) -> None:
    enc = SegmentedEncoder(CODEC.latest("ChannelMessage"), PER_MESSAGE)
    first = family[0]
    shared = enc.shared(first)
    for m in family:
        # Members of a family differ only in the varying fields: give them the first one's others.
        for name in ("notification_id", "event_id", "tenant", "payload", "occurred_at", "expires_at"):
            setattr(m, name, getattr(first, name))
        twin = ChannelMessage(**{**first.to_record(), **{n: getattr(m, n) for n in PER_MESSAGE}})
        assert enc.encode(shared, twin) == _fastavro(twin)
        assert enc.whole(m) == _fastavro(m)


def _fastavro(record: Record) -> bytes:
    return CODEC.encode_record(record.SCHEMA, record.to_record())


@settings(max_examples=300, deadline=None)
@given(OUTCOMES | EVENTS | RECEIPTS | MESSAGES)
def test_every_contract_encodes_as_fastavro_does(record: Record) -> None:
    # Codec.encode writes field by field; Codec.encode_record hands a dict to fastavro.
    assert CODEC.encode(record) == _fastavro(record)
    assert SegmentedEncoder(CODEC.latest(record.SCHEMA), ()).whole(record) == _fastavro(record)


def test_a_value_of_the_wrong_type_gets_fastavros_error_not_bytes() -> None:
    bad = Receipt(
        notification_id="n",
        user_id="u",
        status=ReceiptStatus.READ,
        at=datetime(2026, 1, 1, tzinfo=UTC),
        source=5,  # type: ignore[arg-type]
    )
    with pytest.raises((TypeError, ValueError)):
        _fastavro(bad)
    with pytest.raises((TypeError, ValueError)):
        CODEC.encode(bad)


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, b"\x00"), (-1, b"\x01"), (1, b"\x02"), (63, b"\x7e"), (64, b"\x80\x01"), (-65, b"\x81\x01")],
)
def test_longs_are_zigzag_varints_as_the_specification_gives(n: int, encoded: bytes) -> None:
    assert avro_long(n) == encoded


def test_strings_are_byte_length_then_utf8() -> None:
    assert avro_string("é") == b"\x04\xc3\xa9"
    assert avro_string("x" * 64)[:2] == b"\x80\x01"


def test_varying_fields_must_exist() -> None:
    with pytest.raises(ValueError, match="no fields"):
        SegmentedEncoder(CODEC.latest("ChannelMessage"), ["nope"])


def test_a_timestamp_is_milliseconds_since_the_epoch() -> None:
    enc = SegmentedEncoder(CODEC.latest("ChannelMessage"), ())
    m = ChannelMessage(
        "n",
        "e",
        "t",
        "u",
        Channel.EMAIL,
        Lane.PRIORITY,
        Tier.HIGH,
        "c",
        "r",
        "t",
        "en",
        "k",
        datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=1500),
    )
    assert enc.whole(m) == _fastavro(m)
