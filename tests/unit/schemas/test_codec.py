"""Avro single-object framing: round trips of every contract, fingerprints, bad bytes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.codec import MAGIC, Codec, DecodeError
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
from schemas.registry import load_contracts

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
