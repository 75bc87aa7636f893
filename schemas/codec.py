"""Avro single-object encoding (``C3 01`` + CRC-64-AVRO fingerprint + body) with fastavro.

Every message names its writer schema by fingerprint, so a reader on a newer version
of a contract resolves older records (schema evolution) without a registry.

The fingerprint is written in the specification's byte order (little-endian). Herald 0.1
wrote it reversed; such records still decode, and each one is reported to the codec's
``on_legacy_header`` callback (the processes count them in a metric). docs/wire-format.md
says until when.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from fastavro import schemaless_reader, schemaless_writer

from schemas.decoding import RecordReader
from schemas.errors import RecordError
from schemas.models import Channel, Lane, OutcomeStatus, ReceiptStatus, Record, Tier, field_names
from schemas.registry import MAGIC, Contract, load_contracts
from schemas.segments import SegmentedEncoder

__all__ = ["MAGIC", "Codec", "DecodeError", "LegacyHeaderHook", "default_codec"]

_HEADER = len(MAGIC) + 8
R = TypeVar("R", bound=Record)
LegacyHeaderHook = Callable[[Contract], None]
"""Called with the writer's contract for each record decoded from a reversed (Herald 0.1) header."""


class DecodeError(RecordError, ValueError):
    """Bytes that are not a record we can read. ``reason`` is a stable machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}", reason=reason)
        self.detail = detail


class Codec:
    """Encodes with the newest version of each contract; decodes any known version into the newest."""

    def __init__(
        self, contracts: list[Contract] | None = None, *, on_legacy_header: LegacyHeaderHook | None = None
    ) -> None:
        contracts = load_contracts() if contracts is None else contracts
        self._by_fingerprint: dict[bytes, Contract] = {c.fingerprint: c for c in contracts}
        # A reversed fingerprint equal to some contract's real one would be ambiguous: the real one wins.
        self._by_legacy: dict[bytes, Contract] = {
            c.legacy_fingerprint: c for c in contracts if c.legacy_fingerprint not in self._by_fingerprint
        }
        self.on_legacy_header = on_legacy_header
        self._fast: dict[str, SegmentedEncoder | None] = {}
        self._readers: dict[type[Record], RecordReader] = {}  # kind -> its newest version's reader
        self._latest: dict[str, Contract] = {}
        for c in contracts:
            if c.name not in self._latest or c.version > self._latest[c.name].version:
                self._latest[c.name] = c

    def latest(self, name: str) -> Contract:
        try:
            return self._latest[name]
        except KeyError:
            raise KeyError(f"no contract named {name!r}") from None

    def encode_record(self, name: str, record: dict[str, Any], contract: Contract | None = None) -> bytes:
        contract = contract or self.latest(name)
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(contract.fingerprint)
        schemaless_writer(buf, contract.parsed, record)
        return buf.getvalue()

    def encode(self, obj: Record) -> bytes:
        """The record's single-object encoding with the newest version of its contract.

        Written field by field from the dataclass (schemas/segments.py: no record dicts, no
        per-call schema handling); a value that path cannot write (a wrong type) goes through
        fastavro, which writes it or raises its usual error. The bytes are the same either way.
        """
        fast = self._fast_encoder(obj.SCHEMA)
        if fast is not None:
            try:
                return fast.whole(obj)
            except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
                pass
        return self.encode_record(obj.SCHEMA, obj.to_record())

    def _fast_encoder(self, name: str) -> SegmentedEncoder | None:
        try:
            return self._fast[name]
        except KeyError:
            pass
        try:
            fast: SegmentedEncoder | None = SegmentedEncoder(self.latest(name), ())
        except Exception:  # a schema the field-by-field path cannot take: fastavro writes it all
            fast = None
        self._fast[name] = fast
        return fast

    def decode_record(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """Return (contract name, record in the newest version's shape)."""
        if len(data) < _HEADER or data[:2] != MAGIC:
            raise DecodeError("malformed", "not Avro single-object encoding (bad magic or too short)")
        writer = self._writer(data[2:_HEADER])
        reader = self._latest[writer.name]
        buf = io.BytesIO(data)
        buf.seek(_HEADER)
        try:
            if reader is writer:
                record = schemaless_reader(buf, writer.parsed, None)
            else:
                record = schemaless_reader(buf, writer.parsed, reader.parsed)
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError... on bad bodies
            raise DecodeError(
                "malformed", f"{writer.name} v{writer.version}: {type(exc).__name__}: {exc}"
            ) from exc
        if buf.tell() != len(data):
            raise DecodeError("malformed", f"{len(data) - buf.tell()} trailing bytes after {writer.name}")
        assert isinstance(record, dict)
        return writer.name, record

    def _writer(self, fingerprint: bytes) -> Contract:
        writer = self._by_fingerprint.get(fingerprint)
        if writer is not None:
            return writer
        writer = self._by_legacy.get(fingerprint)
        if writer is None:
            raise DecodeError("unknown_schema", f"unknown writer schema fingerprint {fingerprint.hex()}")
        if self.on_legacy_header is not None:
            self.on_legacy_header(writer)
        return writer

    def decode(self, data: bytes, kind: type[R]) -> R:
        """The record ``data`` holds, as ``kind``; :class:`DecodeError` if it is not one.

        A record written with the newest version of ``kind``'s contract is read straight into the
        dataclass (:mod:`schemas.decoding`); anything that path does not read goes through fastavro.
        """
        return self.decode_one_of(data, (kind,))

    def decode_one_of(self, data: bytes, kinds: tuple[type[R], ...]) -> R:
        """:meth:`decode` for a topic that carries several kinds (outcomes and receipts): the
        record as whichever of ``kinds`` its header names; :class:`DecodeError` if none."""
        for kind in kinds:
            reader = self._readers.get(kind)
            if reader is None and kind.SCHEMA in self._latest:
                reader = self._readers[kind] = RecordReader(
                    self._latest[kind.SCHEMA], kind, field_names(kind), _nested_kinds(), _ENUMS
                )
            if reader is not None and data.startswith(reader.header):
                fast = reader.read(data)
                if fast is not None:
                    return fast  # type: ignore[no-any-return]
                break
        name, record = self.decode_record(data)
        for kind in kinds:
            if name == kind.SCHEMA:
                try:
                    return kind.from_record(record)
                except (TypeError, ValueError) as exc:
                    raise DecodeError("invalid", f"{name}: {exc}") from exc
        expected = " or ".join(k.SCHEMA for k in kinds)
        raise DecodeError("unexpected_schema", f"expected {expected}, got {name}")


_ENUMS: dict[str, type[StrEnum]] = {
    e.__name__: e for e in (Channel, Lane, OutcomeStatus, ReceiptStatus, Tier)
}


def _nested_kinds() -> dict[str, tuple[type[Record], tuple[str, ...]]]:
    """Every contract's dataclass by record name, for the records a contract embeds."""
    return {k.SCHEMA: (k, field_names(k)) for k in Record.__subclasses__()}


_default: Codec | None = None


def default_codec() -> Codec:
    """The process-wide codec over the shipped contracts (loaded once)."""
    global _default  # noqa: PLW0603 - a cache of immutable data
    if _default is None:
        _default = Codec()
    return _default
