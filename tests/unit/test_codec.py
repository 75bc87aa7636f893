"""Avro contracts: round trips, single-object framing, evolution, bad bytes."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.codec import MAGIC, Codec, DecodeError
from schemas.compat import IncompatibleSchema, backward_problems, check_backward
from schemas.models import (
    Channel,
    ChannelMessage,
    DeliveryOutcome,
    DomainEvent,
    Lane,
    OutcomeStatus,
    Receipt,
    ReceiptStatus,
    Record,
    Tier,
)
from schemas.registry import AVRO_DIR, load_contracts

T0 = datetime(2026, 3, 29, 1, 30, 0, 123000, tzinfo=UTC)


def _message() -> ChannelMessage:
    return ChannelMessage(
        notification_id="n1",
        event_id="e1",
        event_type="payment_receipt",
        user_id="u1",
        channel=Channel.PUSH,
        lane=Lane.PRIORITY,
        tier=Tier.HIGH,
        category="payments",
        recipient="u1",
        template="payment_receipt",
        locale="pt-BR",
        idempotency_key="msg_x",
        occurred_at=T0,
        payload='{"amount": "1.00"}',
        not_before=T0,
        attempt=3,
    )


@pytest.mark.parametrize(
    "record",
    [
        DomainEvent(
            event_id="e1",
            type="security_alert",
            occurred_at=T0,
            user_id="u1",
            tenant="acme",
            locale="de",
            payload='{"ip": "10.0.0.1"}',
        ),
        _message(),
        DeliveryOutcome(
            outcome_id="o1",
            notification_id="n1",
            event_id="e1",
            event_type="t",
            user_id="u1",
            tier=Tier.HIGH,
            status=OutcomeStatus.FAILED_RETRYABLE,
            occurred_at=T0,
            recorded_at=T0,
            channel=Channel.PUSH,
            lane=Lane.PRIORITY,
            error_code="QUOTA_EXCEEDED",
            retry_after_ms=1500,
            message=_message(),
        ),
        Receipt(notification_id="n1", user_id="u1", status=ReceiptStatus.READ, at=T0, channel=Channel.IN_APP),
    ],
    ids=lambda r: type(r).__name__,
)
def test_every_contract_round_trips(record: Record) -> None:
    codec = Codec()
    data = codec.encode(record)
    assert data[:2] == MAGIC
    assert codec.decode(data, type(record)) == record


def test_fingerprint_identifies_the_writer_schema() -> None:
    codec = Codec()
    contracts = {c.name: c for c in load_contracts()}
    data = codec.encode(_message())
    assert data[2:10] == contracts["ChannelMessage"].fingerprint
    # Fingerprints differ between contracts, and an embedded type's change changes its container's.
    assert len({c.fingerprint for c in contracts.values()}) == len(contracts)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "malformed"),
        (b"\x00\x01garbage-garbage", "malformed"),
        (MAGIC + b"\xff" * 8 + b"\x00", "unknown_schema"),
    ],
)
def test_bad_bytes_are_classified(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as err:
        Codec().decode(data, DomainEvent)
    assert err.value.reason == reason


def test_truncated_and_trailing_bytes_are_malformed() -> None:
    codec = Codec()
    good = codec.encode(_message())
    for bad in (good[:-5], good + b"\x00\x00"):
        with pytest.raises(DecodeError) as err:
            codec.decode(bad, ChannelMessage)
        assert err.value.reason == "malformed"


def test_decoding_the_wrong_contract_is_an_error() -> None:
    codec = Codec()
    with pytest.raises(DecodeError) as err:
        codec.decode(codec.encode(_message()), DomainEvent)
    assert err.value.reason == "unexpected_schema"


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
