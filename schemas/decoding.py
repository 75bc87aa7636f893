"""The newest version of a contract read straight into its dataclass, without fastavro.

:meth:`schemas.codec.Codec.decode` is the classifier's first step for every event: fastavro reads
a body into a dict (through a ``BytesIO``) and ``Record.from_record`` builds the dataclass from
it. For a record written with the newest version of its contract (so no schema resolution), a
:class:`RecordReader` does both in one generated function (compiled once per contract, as
:mod:`schemas.segments` does for writing) over the primitive types the contracts use: ``string``,
``int``/``long`` (zig-zag varint), ``enum`` (the symbol, as fastavro gives it),
``timestamp-millis`` (fastavro's own conversion) and ``["null", T]`` unions of these.

It only ever answers for a body it reads completely and exactly; anything else (an older writer,
a field type not read here, truncated, trailing or invalid bytes, a value the dataclass refuses)
is left to fastavro, so the result and every error are fastavro's.
tests/unit/schemas/test_decoding.py checks it against fastavro on generated records.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
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


def _lines(t: Any, dst: str, consts: dict[str, Any]) -> list[str] | None:
    """Statements reading a value of type ``t`` at ``p`` into ``dst``; None if not read here."""
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
        inner = _lines(t[1], dst, consts) if len(t) == 2 and t[0] == "null" else None
        if inner is None:
            return None
        branch = ["if n == 0:", f"    {dst} = None", "elif n == 1:", *[f"    {x}" for x in inner]]
        return [*_LONG, *branch, "else:", "    raise _Bad"]
    if isinstance(t, dict) and t.get("type") == "long" and t.get("logicalType") == "timestamp-millis":
        return [*_LONG, f"{dst} = _TS(n)"]
    if isinstance(t, dict) and t.get("type") == "enum":
        name = f"_E{len(consts)}"
        consts[name] = tuple(t["symbols"])
        return [*_LONG, f"if not 0 <= n < {len(t['symbols'])}:", "    raise _Bad", f"{dst} = {name}[n]"]
    return None


def _compile(contract: Contract, kind: type[Any], names: tuple[str, ...]) -> Callable[..., Any] | None:
    consts: dict[str, Any] = {"_RL": read_long, "_TS": read_timestamp_millis, "_Bad": ValueError, "_K": kind}
    body: list[str] = []
    args: list[str] = []
    for i, field in enumerate(contract.schema["fields"]):
        lines = _lines(field["type"], f"v{i}", consts)
        if lines is None:
            return None
        body += lines
        name = field["name"]
        if name in names:  # as Record.from_record: the dataclass's fields the record has
            if not name.isidentifier() or keyword.iskeyword(name):
                return None
            args.append(f"{name}=v{i}")
    if [a.split("=")[0] for a in args] == list(names[: len(args)]):
        args = [a.split("=")[1] for a in args]  # the dataclass's own order: positional, a cheaper call
    source = [
        "def read(d, p, end):",
        *[f"    {line}" for line in body],
        "    if p != end:",
        "        raise _Bad",
        f"    return _K({', '.join(args)})",
    ]
    exec(compile("\n".join(source), f"<avro read {contract.name}>", "exec"), consts)
    read: Callable[..., Any] = consts["read"]
    return read


class RecordReader:
    """Reads ``kind`` records written with ``contract`` (the newest version of ``kind.SCHEMA``)."""

    def __init__(self, contract: Contract, kind: type[Any], field_names: tuple[str, ...]) -> None:
        self.header = MAGIC + contract.fingerprint
        self._read = _compile(contract, kind, field_names)

    def read(self, data: bytes) -> Any | None:
        """The record, or None when fastavro should read ``data`` (see the module's docstring)."""
        start = len(self.header)
        if self._read is None or data[:start] != self.header:
            return None
        try:
            return self._read(data, start, len(data))
        except Exception:  # fastavro reads it again and raises the error it raises
            return None
