"""The newest version of a contract read straight into its dataclass, without fastavro.

:meth:`schemas.codec.Codec.decode` is the classifier's first step for every event: fastavro reads
a body into a dict (through a ``BytesIO``) and ``Record.from_record`` builds the dataclass from
it. For a record written with the newest version of its contract (so no schema resolution), a
:class:`RecordReader` does both in one generated function (compiled once per contract, as
:mod:`schemas.segments` does for writing) over the types the contracts use: ``string``,
``int``/``long`` (zig-zag varint), ``enum`` (the symbol, as fastavro gives it, or the StrEnum
member the dataclass makes of it), ``timestamp-millis`` (fastavro's own conversion), records
embedded in records (``ChannelMessage`` in ``DeliveryOutcome``: their own dataclass, as
``__post_init__`` builds it from fastavro's dict) and ``["null", T]`` unions of these.

It only ever answers for a body it reads completely and exactly; anything else (an older writer,
a field type not read here, truncated, trailing or invalid bytes, a value the dataclass refuses)
is left to fastavro, so the result and every error are fastavro's.
tests/unit/schemas/test_decoding.py checks it against fastavro on generated records.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fastavro._logical_readers import (  # type: ignore[attr-defined]  # untyped Cython module
    read_timestamp_millis,  # the very conversion fastavro's reader applies
)

from schemas.registry import MAGIC, Contract

__all__ = ["RecordReader", "read_long"]


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint at ``pos``: (value, position after it)."""
    shift = n = 0
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return (n >> 1) ^ -(n & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")  # fastavro says what it makes of it


# Statements reading one long into ``n`` (one byte inline: lengths and small numbers).
_LONG = [
    "b = d[p]",
    "if b < 0x80:",
    "    n = (b >> 1) ^ -(b & 1)",
    "    p += 1",
    "else:",
    "    n, p = _RL(d, p)",
]


@dataclass
class _Gen:
    """What compiling one contract's reader collects: constants, named types, nested dataclasses."""

    kinds: Mapping[str, tuple[type[Any], tuple[str, ...]]]  # record name -> (dataclass, field names)
    enums: Mapping[str, type[StrEnum]]  # enum name -> the StrEnum its symbols become
    consts: dict[str, Any] = field(default_factory=dict)
    named: dict[str, Any] = field(default_factory=dict)  # short name -> its definition
    vars: int = 0

    def var(self) -> str:
        self.vars += 1
        return f"v{self.vars}"

    def define(self, t: dict[str, Any]) -> None:
        # By short name: Herald's contracts all live in one namespace (schemas/registry.py).
        self.named[str(t["name"]).rsplit(".", 1)[-1]] = t


def _lines(t: Any, dst: str, gen: _Gen) -> list[str] | None:
    """Statements reading a value of type ``t`` at ``p`` into ``dst``; None if not read here."""
    if isinstance(t, str) and t.rsplit(".", 1)[-1] in gen.named:  # defined earlier in the schema
        t = gen.named[t.rsplit(".", 1)[-1]]
    if t == "string":
        return [
            *_LONG,
            "e = p + n",
            "if n < 0 or e > end:",
            "    raise _Bad",
            f"{dst} = d[p:e].decode()",
            "p = e",
        ]
    if t in ("int", "long"):
        return [*_LONG, f"{dst} = n"]
    if isinstance(t, list):
        inner = _lines(t[1], dst, gen) if len(t) == 2 and t[0] == "null" else None
        if inner is None:
            return None
        branch = ["if n == 0:", f"    {dst} = None", "elif n == 1:", *[f"    {x}" for x in inner]]
        return [*_LONG, *branch, "else:", "    raise _Bad"]
    if isinstance(t, dict) and t.get("type") == "long" and t.get("logicalType") == "timestamp-millis":
        return [*_LONG, f"{dst} = _TS(n)"]
    if isinstance(t, dict) and t.get("type") == "enum":
        gen.define(t)
        name = f"_E{len(gen.consts)}"
        symbols = tuple(t["symbols"])
        members = gen.enums.get(str(t["name"]).rsplit(".", 1)[-1])
        if members is not None and all(s in members._value2member_map_ for s in symbols):
            # the member the dataclass's __post_init__ would make of the symbol, made once here
            gen.consts[name] = tuple(members(s) for s in symbols)
        else:
            gen.consts[name] = symbols
        return [*_LONG, f"if not 0 <= n < {len(t['symbols'])}:", "    raise _Bad", f"{dst} = {name}[n]"]
    if isinstance(t, dict) and t.get("type") == "record":
        gen.define(t)
        kind = gen.kinds.get(str(t["name"]).rsplit(".", 1)[-1])
        if kind is None:
            return None
        body = _record(t, kind[0], kind[1], gen)
        if body is None:
            return None
        lines, call = body
        return [*lines, f"{dst} = {call}"]
    return None


def _record(
    schema: dict[str, Any], kind: type[Any], names: tuple[str, ...], gen: _Gen
) -> tuple[list[str], str] | None:
    """Statements reading a record's fields, and the call building ``kind`` of them (as
    ``Record.from_record`` does: the dataclass's fields the record has)."""
    const = f"_K{len(gen.consts)}"
    gen.consts[const] = kind
    body: list[str] = []
    args: list[str] = []
    for f in schema["fields"]:
        var = gen.var()
        lines = _lines(f["type"], var, gen)
        if lines is None:
            return None
        body += lines
        name = f["name"]
        if name in names:
            if not name.isidentifier() or keyword.iskeyword(name):
                return None
            args.append(f"{name}={var}")
    if [a.split("=")[0] for a in args] == list(names[: len(args)]):
        args = [a.split("=")[1] for a in args]  # the dataclass's own order: positional, a cheaper call
    return body, f"{const}({', '.join(args)})"


def _compile(
    contract: Contract,
    kind: type[Any],
    names: tuple[str, ...],
    nested: Mapping[str, tuple[type[Any], tuple[str, ...]]],
    enums: Mapping[str, type[StrEnum]],
) -> Callable[..., Any] | None:
    gen = _Gen(nested, enums)
    gen.consts.update({"_RL": read_long, "_TS": read_timestamp_millis, "_Bad": ValueError})
    record = _record(contract.schema, kind, names, gen)
    if record is None:
        return None
    body, call = record
    source = [
        "def read(d, p, end):",
        *[f"    {line}" for line in body],
        "    if p != end:",
        "        raise _Bad",
        f"    return {call}",
    ]
    consts = dict(gen.consts)
    exec(compile("\n".join(source), f"<avro read {contract.name}>", "exec"), consts)
    read: Callable[..., Any] = consts["read"]
    return read


class RecordReader:
    """Reads ``kind`` records written with ``contract`` (the newest version of ``kind.SCHEMA``)."""

    def __init__(
        self,
        contract: Contract,
        kind: type[Any],
        field_names: tuple[str, ...],
        nested: Mapping[str, tuple[type[Any], tuple[str, ...]]] | None = None,
        enums: Mapping[str, type[StrEnum]] | None = None,
    ) -> None:
        """``nested``: the dataclass (and its field names) of each record type the contract embeds,
        by record name (``ChannelMessage`` in a ``DeliveryOutcome``); one missing: fastavro reads it.
        ``enums``: the StrEnum of an Avro enum, by name, whose members the reader hands over
        instead of the symbols (the dataclasses turn symbols into those members anyway)."""
        self.header = MAGIC + contract.fingerprint
        self._read = _compile(contract, kind, field_names, nested or {}, enums or {})

    def read(self, data: bytes) -> Any | None:
        """The record, or None when fastavro should read ``data`` (see the module's docstring)."""
        start = len(self.header)
        if self._read is None or data[:start] != self.header:
            return None
        try:
            return self._read(data, start, len(data))
        except Exception:  # fastavro reads it again and raises the error it raises
            return None
