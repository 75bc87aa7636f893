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


def _latest_version(name: str) -> int:
    return max(int(p.name.split(".v")[1].split(".")[0]) for p in AVRO_DIR.glob(f"{name}.v*.avsc"))


def _write_next(tmp_path: Path, change: Mapping[str, object] | None, drop: str | None = None) -> Path:
    """A copy of the shipped contracts plus the next DomainEvent version: the newest shipped one with
    one field added or changed."""
    for src in AVRO_DIR.glob("*.avsc"):
        (tmp_path / src.name).write_text(src.read_text())
    latest = _latest_version("DomainEvent")
    v1 = json.loads((AVRO_DIR / f"DomainEvent.v{latest}.avsc").read_text())
    v2 = copy.deepcopy(v1)
    if drop:
        v2["fields"] = [f for f in v2["fields"] if f["name"] != drop]
    if change:
        v2["fields"] = [f for f in v2["fields"] if f["name"] != change["name"]] + [change]
    (tmp_path / f"DomainEvent.v{latest + 1}.avsc").write_text(json.dumps(v2))
    return tmp_path


def test_a_reader_on_the_next_version_reads_older_records(tmp_path: Path) -> None:
    v1_codec = Codec()
    old = v1_codec.encode(DomainEvent(event_id="e", type="t", occurred_at=T0, user_id="u"))
    new_field = {"name": "priority_hint", "type": ["null", "string"], "default": None}
    contracts = load_contracts(_write_next(tmp_path, new_field))
    v2 = Codec(contracts)
    name, record = v2.decode_record(old)
    assert name == "DomainEvent"
    assert record["priority_hint"] is None and record["event_id"] == "e"
    # And v2 writes records v2 readers read, tagged with the new fingerprint.
    fresh = v2.encode_record("DomainEvent", {**record, "priority_hint": "x"})
    assert fresh[2:10] == v2.latest("DomainEvent").fingerprint != old[2:10]
    by_version = {c.version: c for c in contracts if c.name == "DomainEvent"}
    newest = max(by_version)
    for older in range(1, newest):
        check_backward(by_version[newest].schema, by_version[older].schema)


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
    contracts = load_contracts(_write_next(tmp_path, change, drop))
    by_version = {c.version: c for c in contracts if c.name == "DomainEvent"}
    newest = max(by_version)
    with pytest.raises(IncompatibleSchema, match=problem):
        check_backward(by_version[newest].schema, by_version[newest - 1].schema)


def test_removing_an_enum_symbol_without_default_is_incompatible() -> None:
    writer = {"type": "enum", "name": "E", "symbols": ["a", "b"]}
    assert backward_problems({"type": "enum", "name": "E", "symbols": ["a"]}, writer)
    assert not backward_problems({"type": "enum", "name": "E", "symbols": ["a"], "default": "a"}, writer)


def test_every_shipped_version_is_readable_by_the_newest() -> None:
    contracts = load_contracts()
    newest = {c.name: c for c in sorted(contracts, key=lambda c: c.version)}
    for c in contracts:
        assert backward_problems(newest[c.name].schema, c.schema) == [], c.name


def test_v1_producers_keep_working_after_domain_event_v2(tmp_path: Path) -> None:
    """A service still writing DomainEvent v1 is read into today's model, the v2 fields empty."""
    (tmp_path / "DomainEvent.v1.avsc").write_text((AVRO_DIR / "DomainEvent.v1.avsc").read_text())
    v1_only = Codec(load_contracts(tmp_path))
    old = v1_only.encode(DomainEvent(event_id="e", type="t", occurred_at=T0, user_id="u", payload='{"a":1}'))
    assert old[2:10] == v1_only.latest("DomainEvent").fingerprint != Codec().latest("DomainEvent").fingerprint
    event = Codec().decode(old, DomainEvent)
    assert (event.user_id, event.payload) == ("u", '{"a":1}')
    assert (event.topic, event.send_at, event.cancel_key) == (None, None, None)


def test_domain_event_v2_fields_round_trip() -> None:
    codec = Codec()
    event = DomainEvent(
        event_id="e", type="t", occurred_at=T0, user_id="", topic="launch", send_at=T0, cancel_key="k1"
    )
    back = codec.decode(codec.encode(event), DomainEvent)
    assert (back.topic, back.send_at, back.cancel_key, back.user_id) == ("launch", T0, "k1", "")
