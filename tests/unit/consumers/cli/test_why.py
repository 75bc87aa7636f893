"""``herald why`` reads an event id out of a record whose schema it does not know."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumers.cli.why import leading_string
from consumers.emitter import build_event
from schemas.codec import default_codec


def test_the_event_id_of_a_known_record_is_read_without_its_schema() -> None:
    event = build_event("order_shipped", user_id="alice")
    assert leading_string(default_codec().encode(event)) == event.event_id


def test_a_record_with_an_unknown_fingerprint_still_names_its_event() -> None:
    event = build_event("order_shipped", user_id="alice")
    data = bytearray(default_codec().encode(event))
    data[2:10] = bytes(8)  # a fingerprint no Herald contract has
    assert leading_string(bytes(data)) == event.event_id


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = leading_string(data)
    assert result is None or isinstance(result, str)


def test_what_is_not_single_object_encoded_names_nothing() -> None:
    assert leading_string(b'{"event_id": "x"}') is None
    assert leading_string(b"\xc3\x01" + bytes(8) + b"\x7f") is None  # a length past the end
    assert leading_string(b"\xc3\x01" + bytes(8) + b"\x03") is None  # a negative length
