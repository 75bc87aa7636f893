"""Schema evolution: a reader on a new version reads old records; incompatible changes are refused."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.codec import Codec
from schemas.compat import IncompatibleSchema, backward_problems, check_backward
from schemas.models import (
    DomainEvent,
)
from schemas.registry import AVRO_DIR, load_contracts

T0 = datetime(2026, 3, 29, 1, 30, 0, 123000, tzinfo=UTC)


def _write_v2(tmp_path: Path, change: Mapping[str, object] | None, drop: str | None = None) -> Path:
    """A copy of the shipped contracts plus DomainEvent v2 = v1 with one field added or changed."""
    for src in AVRO_DIR.glob("*.avsc"):
        (tmp_path / src.name).write_text(src.read_text())
    v1 = json.loads((AVRO_DIR / "DomainEvent.v1.avsc").read_text())
    v2 = copy.deepcopy(v1)
    if drop:
        v2["fields"] = [f for f in v2["fields"] if f["name"] != drop]
    if change:
        v2["fields"] = [f for f in v2["fields"] if f["name"] != change["name"]] + [change]
    (tmp_path / "DomainEvent.v2.avsc").write_text(json.dumps(v2))
    return tmp_path


def test_a_reader_on_v2_reads_v1_records(tmp_path: Path) -> None:
    v1_codec = Codec()
    old = v1_codec.encode(DomainEvent(event_id="e", type="t", occurred_at=T0, user_id="u"))
    new_field = {"name": "priority_hint", "type": ["null", "string"], "default": None}
    contracts = load_contracts(_write_v2(tmp_path, new_field))
    v2 = Codec(contracts)
    name, record = v2.decode_record(old)
    assert name == "DomainEvent"
    assert record["priority_hint"] is None and record["event_id"] == "e"
    # And v2 writes records v2 readers read, tagged with the new fingerprint.
    fresh = v2.encode_record("DomainEvent", {**record, "priority_hint": "x"})
    assert fresh[2:10] == v2.latest("DomainEvent").fingerprint != old[2:10]
    by_version = {c.version: c for c in contracts if c.name == "DomainEvent"}
    check_backward(by_version[2].schema, by_version[1].schema)


@pytest.mark.parametrize(
    ("change", "drop", "problem"),
    [
        ({"name": "priority_hint", "type": "string"}, None, "new field without a default"),
        ({"name": "user_id", "type": "long"}, None, "cannot be read as long"),
        ({"name": "occurred_at", "type": "string"}, None, "cannot be read as string"),
    ],
)
def test_incompatible_changes_are_rejected(
    tmp_path: Path, change: dict[str, object], drop: str | None, problem: str
) -> None:
    contracts = load_contracts(_write_v2(tmp_path, change, drop))
    by_version = {c.version: c for c in contracts if c.name == "DomainEvent"}
    with pytest.raises(IncompatibleSchema, match=problem):
        check_backward(by_version[2].schema, by_version[1].schema)


def test_removing_an_enum_symbol_without_default_is_incompatible() -> None:
    writer = {"type": "enum", "name": "E", "symbols": ["a", "b"]}
    assert backward_problems({"type": "enum", "name": "E", "symbols": ["a"]}, writer)
    assert not backward_problems({"type": "enum", "name": "E", "symbols": ["a"], "default": "a"}, writer)


def test_every_shipped_version_is_readable_by_the_newest() -> None:
    contracts = load_contracts()
    newest = {c.name: c for c in sorted(contracts, key=lambda c: c.version)}
    for c in contracts:
        assert backward_problems(newest[c.name].schema, c.schema) == [], c.name
