"""The Avro contracts shipped in ``schemas/avro``: loading, self-containment, fingerprints.

Every ``.avsc`` file is named ``<Name>.v<N>.avsc``. A schema may refer to a named type
of another file (``herald.ChannelMessage``); :func:`load_contracts` inlines such
references so each version is self-contained, which makes its parsing canonical form,
and so its fingerprint, change whenever any type it embeds changes.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

__all__ = ["AVRO_DIR", "MAGIC", "Contract", "fingerprint_of", "load_contracts", "self_contained"]

MAGIC = b"\xc3\x01"  # Avro single-object encoding: marker, then the 8-byte fingerprint, then the body

AVRO_DIR = Path(__file__).parent / "avro"
_FILE = re.compile(r"^(?P<name>[A-Za-z]+)\.v(?P<version>\d+)\.avsc$")
_NAMESPACE = "herald"


@dataclass(frozen=True)
class Contract:
    """One version of one record schema."""

    name: str  # short name, e.g. "DomainEvent"
    version: int
    schema: dict[str, Any]  # self-contained JSON
    parsed: dict[str, Any]  # fastavro-parsed
    fingerprint: bytes  # CRC-64-AVRO of the parsing canonical form, 8 bytes little-endian

    @property
    def legacy_fingerprint(self) -> bytes:
        """The fingerprint's bytes reversed, as Herald 0.1 wrote them (read until 0.4, see docs)."""
        return self.fingerprint[::-1]


def fingerprint_of(schema: dict[str, Any] | str) -> bytes:
    """Avro single-object fingerprint: CRC-64-AVRO of the canonical form as the 8 bytes of the
    64-bit value, least significant first (the specification's order: ``"null"`` gives
    ``8a8f25cce724dd63``). fastavro's hex string already spells that byte sequence."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def _full_name(name: str) -> str:
    return name if "." in name else f"{_NAMESPACE}.{name}"


def _collect_named(node: Any, out: dict[str, dict[str, Any]]) -> None:
    if isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed") and "name" in node:
            out.setdefault(_full_name(node["name"]), node)
        for value in node.values():
            _collect_named(value, out)
    elif isinstance(node, list):
        for item in node:
            _collect_named(item, out)


def _inline(node: Any, defs: dict[str, dict[str, Any]], seen: set[str]) -> Any:
    if isinstance(node, str):
        full = _full_name(node) if node[:1].isupper() or node.startswith(f"{_NAMESPACE}.") else node
        if full in defs and full not in seen:
            return _inline(copy.deepcopy(defs[full]), defs, seen)
        return node
    if isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed") and "name" in node:
            full = _full_name(node["name"])
            if full in seen:  # defined earlier in this schema: Avro wants a reference here
                return full
            seen.add(full)
        return {
            k: (v if k in ("name", "namespace", "doc", "symbols", "default") else _inline(v, defs, seen))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_inline(item, defs, seen) for item in node]
    return node


def self_contained(schema: dict[str, Any], defs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return ``schema`` with every reference to a type in ``defs`` defined inline at first use."""
    result = _inline(copy.deepcopy(schema), defs, set())
    assert isinstance(result, dict)
    return result


def load_contracts(directory: Path = AVRO_DIR) -> list[Contract]:
    """Load every schema version in ``directory``, oldest first within each name."""
    raw: list[tuple[str, int, dict[str, Any]]] = []
    for path in sorted(directory.glob("*.avsc")):
        match = _FILE.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: schema files are named <Name>.v<N>.avsc")
        raw.append((match["name"], int(match["version"]), json.loads(path.read_text())))
    # Type references resolve against the newest version of each named type.
    defs: dict[str, dict[str, Any]] = {}
    for _, _, schema in sorted(raw, key=lambda r: r[1]):
        found: dict[str, dict[str, Any]] = {}
        _collect_named(schema, found)
        defs.update(found)
    contracts = []
    for name, version, schema in sorted(raw, key=lambda r: (r[0], r[1])):
        full = self_contained(schema, {k: v for k, v in defs.items() if k != _full_name(name)})
        parsed = parse_schema(full)
        assert isinstance(parsed, dict)  # a record schema parses to a dict
        contracts.append(Contract(name, version, full, parsed, fingerprint_of(full)))
    return contracts
