"""Reading the newest version straight into the dataclass gives fastavro's record, or leaves it to fastavro."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import DecodeError, default_codec
from schemas.decoding import RecordReader, read_long
from schemas.models import (
    Channel,
    ChannelMessage,
    DeliveryOutcome,
    DomainEvent,
    Lane,
    OutcomeStatus,
    Record,
    Tier,
    field_names,
)
from schemas.registry import load_contracts
from schemas.segments import avro_long
from tests.unit.schemas.test_segments import EVENTS, MESSAGES, RECEIPTS

CODEC = default_codec()
T0 = datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
V1_FIELDS = ("event_id", "type", "occurred_at", "user_id", "tenant", "locale", "payload")


def _fastavro(data: bytes, kind: type[Record]) -> Record:
    name, record = CODEC.decode_record(data)
    assert name == kind.SCHEMA
    return kind.from_record(record)


def _reader(kind: type[Record]) -> RecordReader:
    return RecordReader(CODEC.latest(kind.SCHEMA), kind, field_names(kind))


@settings(max_examples=300, deadline=None)
@given(EVENTS | MESSAGES | RECEIPTS)
def test_the_record_is_the_one_fastavro_reads(record: Record) -> None:
    data = CODEC.encode(record)
    fast = _reader(type(record)).read(data)
    assert fast is not None
    assert fast == _fastavro(data, type(record)) == CODEC.decode(data, type(record))
    assert type(fast) is type(record)


@settings(max_examples=200, deadline=None)
@given(EVENTS, st.data())
def test_damaged_bytes_are_left_to_fastavro(event: DomainEvent, data: st.DataObject) -> None:
    body = bytearray(CODEC.encode(event))
    cut = data.draw(st.integers(10, len(body)))
    damaged = bytes(body[:cut]) + data.draw(st.binary(max_size=8))
    fast = _reader(DomainEvent).read(damaged)
    try:
        expected: Record | None = _fastavro(damaged, DomainEvent)
    except Exception:  # whatever fastavro refuses, the fast path must not accept
        expected = None
    assert fast is None or fast == expected


def test_an_older_writer_is_left_to_fastavro() -> None:
    v1 = next(c for c in load_contracts() if c.name == "DomainEvent" and c.version == 1)
    event = _an_event()
    old = CODEC.encode_record(
        "DomainEvent", {k: v for k, v in event.to_record().items() if k in V1_FIELDS}, v1
    )
    assert _reader(DomainEvent).read(old) is None
    assert CODEC.decode(old, DomainEvent) == event  # fastavro resolves v1 into the newest shape


def test_a_nested_record_is_left_to_fastavro() -> None:
    outcome = DeliveryOutcome("o", "n", "e", "t", "u", Tier.LOW, OutcomeStatus.SENT, T0, T0)
    assert _reader(DeliveryOutcome).read(CODEC.encode(outcome)) is None
    assert CODEC.decode(CODEC.encode(outcome), DeliveryOutcome) == outcome


def test_a_trailing_byte_is_still_malformed() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        CODEC.decode(CODEC.encode(_an_event()) + b"\x00", DomainEvent)


@pytest.mark.parametrize("n", [0, -1, 1, 63, 64, -65, 2**41, -(2**63), 2**63 - 1])
def test_longs_read_back(n: int) -> None:
    assert read_long(avro_long(n) + b"\xff", 0) == (n, len(avro_long(n)))


def _an_event() -> DomainEvent:
    return DomainEvent("e1", "comment_reply", T0, "u1", tenant="acme", payload='{"a": 1}')


def test_enum_symbols_become_members_as_from_record_makes_them() -> None:
    message = ChannelMessage(
        "n", "e", "t", "u", Channel.PUSH, Lane.BULK, Tier.LOW, "c", "r", "t", "en", "k", T0
    )
    read = _reader(ChannelMessage).read(CODEC.encode(message))
    assert read == message
    assert read is not None and read.channel is Channel.PUSH and read.tier is Tier.LOW
