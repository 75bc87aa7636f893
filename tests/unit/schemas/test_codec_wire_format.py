"""The single-object header follows the Avro specification: ``C3 01`` + the CRC-64-AVRO
fingerprint as the 8 little-endian bytes of the 64-bit value. Herald 0.1's reversed order still
decodes, reported to the codec's callback and counted by the processes' metric."""

from __future__ import annotations

import json
import re
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from consumers.runtime.metrics import count_legacy_headers
from schemas.codec import MAGIC, Codec, DecodeError
from schemas.models import DomainEvent
from schemas.registry import Contract, fingerprint_of, load_contracts

# The Avro project's published CRC-64-AVRO test vectors (share/test/data/schema-tests.txt in
# apache/avro), as the signed 64-bit values its Java tests compare with.
SPEC_VECTORS: list[tuple[str, int]] = [
    ('"null"', 7195948357588979594),
    ('"boolean"', -6970731678124411036),
    ('"int"', 8247732601305521295),
    ('"long"', -3434872931120570953),
    ('"string"', -8142146995180207161),
    ('{"name":"foo","type":"fixed","size":15}', 1756455273707447556),
    ('{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}', 7843277075252814651),
]

DOC = Path(__file__).resolve().parents[3] / "docs" / "wire-format.md"
_EMPTY = 0xC15D213AA4D7A795  # the specification's CRC-64-AVRO polynomial / initial value


def _crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO written from the specification's Java listing, independent of fastavro."""
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def _event(**fields: object) -> DomainEvent:
    base: dict[str, object] = {
        "event_id": "e-1",
        "type": "comment_reply",
        "occurred_at": datetime(2026, 12, 1, 12, 0, 0, 250000, tzinfo=UTC),
        "user_id": "u-1",
        "tenant": None,
        "locale": "de",
        "payload": '{"who":"Ada"}',
    }
    base.update(fields)
    return DomainEvent(**base)  # type: ignore[arg-type]


def _reversed_header(data: bytes) -> bytes:
    """The same record framed as Herald 0.1 framed it: fingerprint bytes reversed."""
    return data[:2] + data[2:10][::-1] + data[10:]


def test_the_specifications_own_test_vector() -> None:
    # The one the specification's readers quote: "null" → 8a8f25cce724dd63 on the wire.
    assert fingerprint_of("null") == bytes.fromhex("8a8f25cce724dd63")


@pytest.mark.parametrize(("canonical", "value"), SPEC_VECTORS, ids=[c for c, _ in SPEC_VECTORS])
def test_fingerprints_are_the_published_values_little_endian(canonical: str, value: int) -> None:
    assert to_parsing_canonical_form(json.loads(canonical)) == canonical
    assert _crc64_avro(canonical.encode()) == value & 0xFFFF_FFFF_FFFF_FFFF  # the oracle is right
    assert fingerprint_of(json.loads(canonical)) == struct.pack("<q", value)


@pytest.mark.parametrize("contract", load_contracts(), ids=lambda c: f"{c.name}.v{c.version}")
def test_every_shipped_contract_is_framed_with_its_spec_fingerprint(contract: Contract) -> None:
    canonical = to_parsing_canonical_form(contract.schema).encode()
    expected = struct.pack("<Q", _crc64_avro(canonical))
    assert contract.fingerprint == expected
    assert contract.legacy_fingerprint == struct.pack(">Q", _crc64_avro(canonical))


def test_encode_writes_the_spec_order() -> None:
    codec = Codec()
    data = codec.encode(_event())
    canonical = to_parsing_canonical_form(codec.latest("DomainEvent").schema).encode()
    assert data[:10] == MAGIC + struct.pack("<Q", _crc64_avro(canonical))


def test_a_herald_0_1_header_still_decodes_and_is_reported() -> None:
    seen: list[str] = []
    codec = Codec(on_legacy_header=lambda c: seen.append(f"{c.name}.v{c.version}"))
    event = _event()
    data = codec.encode(event)
    assert codec.decode(data, DomainEvent) == event
    assert seen == []  # the spec order is not reported
    assert codec.decode(_reversed_header(data), DomainEvent) == event
    assert seen == [f"DomainEvent.v{codec.latest('DomainEvent').version}"]


def test_a_reversed_header_without_a_callback_decodes_silently() -> None:
    codec = Codec()
    event = _event()
    assert codec.decode(_reversed_header(codec.encode(event)), DomainEvent) == event


def test_a_fingerprint_in_neither_order_is_unknown_schema() -> None:
    seen: list[Contract] = []
    codec = Codec(on_legacy_header=seen.append)
    data = codec.encode(_event())
    scrambled = data[:2] + bytes(reversed(data[2:6])) + data[6:]  # half reversed: neither order
    with pytest.raises(DecodeError) as info:
        codec.decode(scrambled, DomainEvent)
    assert info.value.reason == "unknown_schema"
    assert scrambled[2:10].hex() in str(info.value)  # the message names what was found
    assert seen == []


def test_the_metric_counts_reversed_headers_per_schema() -> None:
    codec = Codec()
    count_legacy_headers(codec)

    def counted() -> float:
        value = REGISTRY.get_sample_value("herald_legacy_header_records_total", {"schema": "DomainEvent"})
        return value or 0.0

    before = counted()
    data = codec.encode(_event())
    codec.decode(data, DomainEvent)
    assert counted() == before
    codec.decode(_reversed_header(data), DomainEvent)
    codec.decode(_reversed_header(data), DomainEvent)
    assert counted() == before + 2


@given(
    event_id=st.text(min_size=1, max_size=40),
    user_id=st.text(min_size=1, max_size=40),
    tenant=st.none() | st.text(max_size=20),
    payload=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
)
def test_both_orders_decode_to_the_same_event(
    event_id: str, user_id: str, tenant: str | None, payload: dict[str, str]
) -> None:
    codec = Codec()
    event = _event(event_id=event_id, user_id=user_id, tenant=tenant, payload=json.dumps(payload))
    data = codec.encode(event)
    assert codec.decode(data, DomainEvent) == codec.decode(_reversed_header(data), DomainEvent) == event


def test_the_documented_worked_example_is_what_herald_writes() -> None:
    """docs/wire-format.md's event and hex dump cannot drift from the codec."""
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"```json\n(.*?)```", text, re.S)
    assert block is not None
    fields = json.loads(block[1])
    fields["occurred_at"] = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=fields["occurred_at"])
    dump = re.findall(r"^[0-9a-f]{8}  ((?:[0-9a-f]{2} )+)", text, re.M)
    assert len(dump) >= 4
    codec = Codec()
    assert codec.encode(DomainEvent(**fields)) == bytes.fromhex("".join(dump))
    fingerprint = codec.latest("DomainEvent").fingerprint
    assert f"0x{int.from_bytes(fingerprint, 'little'):016x}" in text
    assert " ".join(f"{b:02x}" for b in fingerprint) in text


def test_the_old_byte_order_is_dropped_by_0_4() -> None:
    # The README promises that 0.4.0 stops reading Herald 0.1's reversed fingerprints: releasing
    # 0.4 with the legacy table still in the codec would break that promise silently.
    from importlib.metadata import version

    from schemas.codec import default_codec

    major, minor = (int(x) for x in version("herald").split(".")[:2])
    if (major, minor) >= (0, 4):
        assert not hasattr(default_codec(), "_by_legacy"), (
            "0.4 drops the old byte order (README, wire-format)"
        )
    else:
        assert default_codec()._by_legacy, "before 0.4 the old byte order still decodes"
