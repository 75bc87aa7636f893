"""One contract's records encoded field by field, so fields shared by many records are encoded once.

Avro's binary encoding of a record is the concatenation of its fields' encodings in schema order.
The classifier writes, per event, one ``ChannelMessage`` per channel and address; most fields
(ids, template, locale, payload, times) are equal for all of them. :class:`SegmentedEncoder`
encodes those once per event (:meth:`~SegmentedEncoder.shared`) and only the varying fields per
message (:meth:`~SegmentedEncoder.encode`). :meth:`schemas.codec.Codec.encode` writes every
record this way (:meth:`~SegmentedEncoder.whole`).

fastavro's per-call overhead is most of the cost of a small record, so the primitive types the
contracts use are written here straight from the specification ("Binary Encoding"): ``string``
(zig-zag varint byte length, UTF-8), ``int``/``long`` (zig-zag varint), ``enum`` (the symbol's
index), ``timestamp-millis`` (fastavro's own conversion, then a long) and a ``["null", T]`` union
(branch index, then T) and records of these (named types resolved as Avro does). Any other field
type is written by fastavro as a one-field record.
tests/unit/schemas/test_segments.py checks byte equality with :class:`schemas.codec.Codec` on
generated records of every contract.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

from fastavro import parse_schema, schemaless_writer
from fastavro._logical_writers import (  # type: ignore[attr-defined]  # untyped Cython module
    prepare_timestamp_millis,  # the very conversion fastavro's writer applies
)

from schemas.registry import MAGIC, Contract

__all__ = ["SegmentedEncoder", "avro_long", "avro_string"]

Encoder = Callable[[Any], bytes]


_SMALL = [bytes([n << 1]) for n in range(64)]  # 0..63 are one byte: most lengths


def avro_long(n: int) -> bytes:
    """An ``int`` or ``long``: zig-zag, then base-128 varint, least significant group first."""
    if 0 <= n < 64:
        return _SMALL[n]
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_string(value: str) -> bytes:
    """A ``string``: the UTF-8 byte length as a long, then the bytes."""
    data = value.encode()
    return avro_long(len(data)) + data


def _timestamp_millis(value: datetime | int) -> bytes:
    return avro_long(prepare_timestamp_millis(value, None))


def _enum(symbols: Sequence[str]) -> Encoder:
    encoded = {symbol: avro_long(i) for i, symbol in enumerate(symbols)}
    return encoded.__getitem__  # a StrEnum member hashes and compares as its value


def _optional(inner: Encoder) -> Encoder:
    def encode(value: Any) -> bytes:
        return b"\x00" if value is None else b"\x02" + inner(value)

    return encode


def _fastavro(field: dict[str, Any]) -> Encoder:
    schema = parse_schema({"type": "record", "name": f"Field_{field['name']}", "fields": [field]})
    name = field["name"]

    def encode(value: Any) -> bytes:
        buf = io.BytesIO()
        schemaless_writer(buf, schema, {name: value})
        return buf.getvalue()

    return encode


def _record(fields: Sequence[tuple[Callable[[Any], Any], Encoder]]) -> Encoder:
    def encode(value: Any) -> bytes:
        return b"".join([enc(get(value)) for get, enc in fields])

    return encode


class _Types:
    """Encoders of the named types (enums, records) met so far, by full name, as Avro resolves them."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.named: dict[str, Encoder] = {}

    def _full(self, name: str, namespace: str | None = None) -> str:
        return name if "." in name else f"{namespace or self.namespace}.{name}"

    def native(self, t: Any) -> Encoder | None:
        """The encoder for type ``t`` written here, or None where fastavro writes it."""
        if isinstance(t, str):
            simple: dict[str, Encoder] = {"string": avro_string, "int": avro_long, "long": avro_long}
            return simple.get(t) or self.named.get(self._full(t))
        if isinstance(t, list):
            inner = self.native(t[1]) if len(t) == 2 and t[0] == "null" else None
            return None if inner is None else _optional(inner)
        kind = t.get("type")
        if kind == "long" and t.get("logicalType") == "timestamp-millis":
            return _timestamp_millis
        if kind == "enum":
            enc = self.named[self._full(t["name"], t.get("namespace"))] = _enum(t["symbols"])
            return enc
        if kind == "record":
            outer, self.namespace = self.namespace, t.get("namespace") or self.namespace
            try:
                fields = [(attrgetter(f["name"]), self.field(f)) for f in t["fields"]]
            finally:
                self.namespace = outer
            enc = self.named[self._full(t["name"], t.get("namespace"))] = _record(fields)
            return enc
        return None

    def field(self, field: dict[str, Any]) -> Encoder:
        """The encoder of one field; fastavro's for a type not written here."""
        return self.native(field["type"]) or _fastavro(field)


class SegmentedEncoder:
    """Single-object encoding of ``contract`` records whose ``varying`` fields differ within a family.

    A record is an object with the schema's fields as attributes (a :class:`~schemas.models.Record`
    dataclass; enums as ``StrEnum`` members). ``shared(record)`` encodes the fields outside
    ``varying`` once per family; ``encode(shared, record)`` adds ``record``'s varying fields.
    """

    def __init__(self, contract: Contract, varying: Iterable[str]) -> None:
        varying = frozenset(varying)
        fields = contract.schema["fields"]
        unknown = varying - {f["name"] for f in fields}
        if unknown:
            raise ValueError(f"{contract.name} has no fields {sorted(unknown)}")
        self.header = MAGIC + contract.fingerprint
        types = _Types(contract.schema.get("namespace", ""))
        self._fields = [(attrgetter(f["name"]), types.field(f)) for f in fields]
        # Position in the joined parts (the header is part 0) of each varying field.
        self._varying = [
            (i + 1, get, enc)
            for i, (f, (get, enc)) in enumerate(zip(fields, self._fields, strict=True))
            if f["name"] in varying
        ]
        is_varying = {i for i, _, _ in self._varying}
        self._shared = [
            (i + 1, get, enc) for i, (get, enc) in enumerate(self._fields) if i + 1 not in is_varying
        ]
        self._blank = [self.header] + [b""] * len(fields)

    def shared(self, record: Any) -> list[bytes]:
        """The header and the shared fields of ``record``'s family, encoded (empty where a field varies)."""
        parts = self._blank.copy()
        for i, get, enc in self._shared:
            parts[i] = enc(get(record))
        return parts

    def whole(self, record: Any) -> bytes:
        """One record on its own (no family): ``codec.encode(record)``, byte for byte."""
        return (
            b"".join(self.shared(record)) if not self._varying else self.encode(self.shared(record), record)
        )

    def encode(self, shared: Sequence[bytes], record: Any) -> bytes:
        """The whole record: its family's ``shared`` fields and its own varying ones, in schema order."""
        parts = list(shared)
        for i, get, enc in self._varying:
            parts[i] = enc(get(record))
        return b"".join(parts)
