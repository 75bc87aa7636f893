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

Per record type, the statements that write its fields are generated from the schema and compiled
once (as :mod:`dataclasses` does for ``__init__``): a record is then one Python call with its
fields' encodings inline, not a call per field. tests/unit/schemas/test_segments.py checks byte
equality with fastavro on generated records of every contract.
"""

from __future__ import annotations

import io
import keyword
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastavro import parse_schema, schemaless_writer
from fastavro._logical_writers import (  # type: ignore[attr-defined]  # untyped Cython module
    prepare_timestamp_millis,  # the very conversion fastavro's writer applies
)

from schemas.registry import MAGIC, Contract

__all__ = ["SegmentedEncoder", "avro_long", "avro_string"]

Encoder = Callable[[Any], bytes]


_SMALL = [bytes([n << 1]) for n in range(64)]  # 0..63 are one byte: most lengths
# 14 bits at a time (a timestamp in milliseconds is 42): two bytes with the continuation bit set,
# and the last group, one or two bytes.
_MORE14 = [bytes(((i & 0x7F) | 0x80, (i >> 7) | 0x80)) for i in range(1 << 14)]
_LAST14 = [bytes((i,)) if i < 0x80 else bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(1 << 14)]


def avro_long(n: int) -> bytes:
    """An ``int`` or ``long``: zig-zag, then base-128 varint, least significant group first."""
    if 0 <= n < 64:
        return _SMALL[n]
    n = (n << 1) ^ (n >> 63)
    out = b""
    while n >= 0x4000:
        out += _MORE14[n & 0x3FFF]
        n >>= 14
    return out + _LAST14[n]


def avro_string(value: str) -> bytes:
    """A ``string``: the UTF-8 byte length as a long, then the bytes."""
    data = value.encode()
    return avro_long(len(data)) + data


def _fastavro(field: dict[str, Any]) -> Encoder:
    schema = parse_schema({"type": "record", "name": f"Field_{field['name']}", "fields": [field]})
    name = field["name"]

    def encode(value: Any) -> bytes:
        buf = io.BytesIO()
        schemaless_writer(buf, schema, {name: value})
        return buf.getvalue()

    return encode


def _attribute(name: str) -> str:
    """The expression reading field ``name`` of the record ``r``."""
    return f"r.{name}" if name.isidentifier() and not keyword.iskeyword(name) else f"getattr(r, {name!r})"


def _compile(name: str, source: list[str], env: dict[str, Any]) -> dict[str, Any]:
    scope = dict(env)
    exec(compile("\n".join(source), f"<avro {name}>", "exec"), scope)  # the source is generated here
    return scope


class _Types:
    """Named types (enums, records) met so far, by full name, as Avro resolves them, and the
    constants the generated statements use (``env``)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.named: dict[str, tuple[str, Any]] = {}  # full name -> ("enum", symbol map) | ("record", fn)
        self.env: dict[str, Any] = {"_S": _SMALL, "_L": avro_long, "_P": prepare_timestamp_millis}

    def _full(self, name: str, namespace: str | None = None) -> str:
        return name if "." in name else f"{namespace or self.namespace}.{name}"

    def _const(self, value: Any) -> str:
        name = f"_K{len(self.env)}"
        self.env[name] = value
        return name

    def _named(self, kind: str, value: Any, src: str, dst: str) -> list[str]:
        return [
            f"{dst} = {self._const(value)}[{src}]"
            if kind == "enum"
            else f"{dst} = {self._const(value)}({src})"
        ]

    def lines(self, t: Any, src: str, dst: str) -> list[str] | None:
        """Statements setting ``dst`` to the encoding of ``src`` (a name) of type ``t``, or None
        where fastavro writes it."""
        if isinstance(t, str):
            if t == "string":
                return [f"v = {src}.encode()", "n = len(v)", f"{dst} = (_S[n] if n < 64 else _L(n)) + v"]
            if t in ("int", "long"):
                return [f"{dst} = _L({src})"]
            found = self.named.get(self._full(t))
            return None if found is None else self._named(*found, src, dst)
        if isinstance(t, list):
            inner = self.lines(t[1], "u", dst) if len(t) == 2 and t[0] == "null" else None
            if inner is None:
                return None
            body = [f"    {line}" for line in inner]
            return [
                f"u = {src}",
                "if u is None:",
                f'    {dst} = b"\\x00"',
                "else:",
                *body,
                f'    {dst} = b"\\x02" + {dst}',
            ]
        kind = t.get("type")
        if kind == "long" and t.get("logicalType") == "timestamp-millis":
            return [f"{dst} = _L(_P({src}, None))"]
        if kind == "enum":
            symbols = {symbol: avro_long(i) for i, symbol in enumerate(t["symbols"])}
            self.named[self._full(t["name"], t.get("namespace"))] = ("enum", symbols)
            return self._named("enum", symbols, src, dst)  # a StrEnum member hashes as its value
        if kind == "record":
            fn = self.record(t)
            return self._named("record", fn, src, dst)
        return None

    def field(self, field: dict[str, Any], dst: str) -> list[str]:
        """Statements setting ``dst`` to the encoding of ``field`` of the record ``r``."""
        lines = self.lines(field["type"], "w", dst)
        if lines is None:
            lines = [f"{dst} = {self._const(_fastavro(field))}(w)"]
        return [f"w = {_attribute(field['name'])}", *lines]

    def record(self, t: dict[str, Any]) -> Encoder:
        """A nested record's encoder (its fields, no header), compiled."""
        outer, self.namespace = self.namespace, t.get("namespace") or self.namespace
        try:
            fields = [self.field(f, f"f{i}") for i, f in enumerate(t["fields"])]
        finally:
            self.namespace = outer
        parts = "".join(f"f{i}, " for i in range(len(fields)))
        source = ["def encode(r):", *_indent(fields), f'    return b"".join(({parts}))']
        fn: Encoder = _compile(t["name"], source, self.env)["encode"]
        self.named[self._full(t["name"], t.get("namespace"))] = ("record", fn)
        return fn


def _indent(fields: Iterable[list[str]]) -> list[str]:
    return [f"    {line}" for lines in fields for line in lines]


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
        # Field i is "f{i}" in the generated code; part i + 1 of a family's shared list (0: the header).
        lines = [types.field(f, f"f{i}") for i, f in enumerate(fields)]
        mine = [i for i, f in enumerate(fields) if f["name"] in varying]
        others = [i for i in range(len(fields)) if i not in mine]
        every = ", ".join(f"f{i}" for i in range(len(fields)))
        blank = ", ".join("b''" if i in mine else f"f{i}" for i in range(len(fields)))
        joined = ", ".join(f"f{i}" if i in mine else f"p[{i + 1}]" for i in range(len(fields)))
        source = [
            "def whole(r):",
            *_indent(lines),
            f'    return b"".join((_H, {every}))',
            "def shared(r):",
            *_indent(lines[i] for i in others),
            f"    return [_H, {blank}]",
            "def encode(p, r):",
            *_indent(lines[i] for i in mine),
            "    return b''.join((p[0], " + joined + "))",
        ]
        scope = _compile(contract.name, source, {**types.env, "_H": self.header})
        self._whole: Callable[[Any], bytes] = scope["whole"]
        self._shared: Callable[[Any], list[bytes]] = scope["shared"]
        self._encode: Callable[[Sequence[bytes], Any], bytes] = scope["encode"]

    def shared(self, record: Any) -> list[bytes]:
        """The header and the shared fields of ``record``'s family, encoded (empty where a field varies)."""
        return self._shared(record)

    def whole(self, record: Any) -> bytes:
        """One record on its own (no family): ``codec.encode(record)``, byte for byte."""
        return self._whole(record)

    def encode(self, shared: Sequence[bytes], record: Any) -> bytes:
        """The whole record: its family's ``shared`` fields and its own varying ones, in schema order."""
        return self._encode(shared, record)
