"""Reading the newest version straight into the dataclass gives fastavro's record, or leaves it to fastavro."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

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
    Receipt,
    ReceiptStatus,
    Record,
    Tier,
    field_names,
)
from schemas.registry import load_contracts
from schemas.segments import avro_long
from tests.unit.schemas.test_segments import EVENTS, MESSAGES, OUTCOMES, RECEIPTS

CODEC = default_codec()
T0 = datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
V1_FIELDS = ("event_id", "type", "occurred_at", "user_id", "tenant", "locale", "payload")


def _fastavro(data: bytes, kind: type[Record]) -> Record:
    name, record = CODEC.decode_record(data)
    assert name == kind.SCHEMA
    return kind.from_record(record)


NESTED = {ChannelMessage.SCHEMA: (ChannelMessage, field_names(ChannelMessage))}
ENUMS: dict[str, type[StrEnum]] = {e.__name__: e for e in (Channel, Lane, OutcomeStatus, ReceiptStatus, Tier)}


def _reader(kind: type[Record], enums: dict[str, type[StrEnum]] = ENUMS) -> RecordReader:
    return RecordReader(CODEC.latest(kind.SCHEMA), kind, field_names(kind), NESTED, enums)


@settings(max_examples=300, deadline=None)
@given(EVENTS | MESSAGES | RECEIPTS | OUTCOMES)
def test_the_record_is_the_one_fastavro_reads(record: Record) -> None:
    data = CODEC.encode(record)
    fast = _reader(type(record)).read(data)
    assert fast is not None
    assert fast == _fastavro(data, type(record)) == CODEC.decode(data, type(record))
    assert type(fast) is type(record)
    for name in field_names(type(record)):  # members and nested dataclasses, as __post_init__ makes
        assert type(getattr(fast, name)) is type(getattr(_fastavro(data, type(record)), name))


@settings(max_examples=100, deadline=None)
@given(OUTCOMES | RECEIPTS)
def test_one_of_reads_either_kind_as_decode_does(record: Record) -> None:
    data = CODEC.encode(record)
    assert CODEC.decode_one_of(data, (DeliveryOutcome, Receipt)) == CODEC.decode(data, type(record))


def test_one_of_refuses_a_kind_it_was_not_given() -> None:
    with pytest.raises(DecodeError, match="expected DeliveryOutcome or Receipt, got ChannelMessage") as err:
        CODEC.decode_one_of(CODEC.encode(_a_message()), (DeliveryOutcome, Receipt))
    assert err.value.reason == "unexpected_schema"


@settings(max_examples=400, deadline=None)
@given(EVENTS | OUTCOMES, st.data())
def test_damaged_bytes_are_left_to_fastavro(
    record: DomainEvent | DeliveryOutcome, data: st.DataObject
) -> None:
    # Events, and outcomes, whose reader also reads the ChannelMessage they embed.
    kind = type(record)
    body = bytearray(CODEC.encode(record))
    cut = data.draw(st.integers(10, len(body)))
    damaged = bytes(body[:cut]) + data.draw(st.binary(max_size=8))
    fast = _reader(kind).read(damaged)
    try:
        expected: Record | None = _fastavro(damaged, kind)
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


def test_a_nested_record_without_its_dataclass_is_left_to_fastavro() -> None:
    outcome = DeliveryOutcome("o", "n", "e", "t", "u", Tier.LOW, OutcomeStatus.SENT, T0, T0)
    reader = RecordReader(CODEC.latest(DeliveryOutcome.SCHEMA), DeliveryOutcome, field_names(DeliveryOutcome))
    assert reader.read(CODEC.encode(outcome)) is None
    assert CODEC.decode(CODEC.encode(outcome), DeliveryOutcome) == outcome


def test_an_enum_whose_symbols_its_strenum_lacks_stays_symbols() -> None:
    message = _a_message()
    read = _reader(ChannelMessage, {"Channel": Lane}).read(CODEC.encode(message))  # no "push" in Lane
    assert read == message
    assert read is not None and read.channel is Channel.PUSH  # __post_init__ made the member


def test_a_trailing_byte_is_still_malformed() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        CODEC.decode(CODEC.encode(_an_event()) + b"\x00", DomainEvent)


@pytest.mark.parametrize("n", [0, -1, 1, 63, 64, -65, 2**41, -(2**63), 2**63 - 1])
def test_longs_read_back(n: int) -> None:
    assert read_long(avro_long(n) + b"\xff", 0) == (n, len(avro_long(n)))


def _an_event() -> DomainEvent:
    return DomainEvent("e1", "comment_reply", T0, "u1", tenant="acme", payload='{"a": 1}')


def _a_message() -> ChannelMessage:
    return ChannelMessage("n", "e", "t", "u", Channel.PUSH, Lane.BULK, Tier.LOW, "c", "r", "t", "en", "k", T0)


def test_enum_symbols_become_members_as_from_record_makes_them() -> None:
    message = _a_message()
    read = _reader(ChannelMessage).read(CODEC.encode(message))
    assert read == message
    assert read is not None and read.channel is Channel.PUSH and read.tier is Tier.LOW
