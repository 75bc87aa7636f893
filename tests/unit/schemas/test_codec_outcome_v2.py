"""DeliveryOutcome v2: the ``cancelled`` status, readable by v1 readers as ``unknown``."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from fastavro import schemaless_reader

from schemas.codec import Codec
from schemas.models import DeliveryOutcome, OutcomeStatus, Tier
from schemas.registry import load_contracts

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _cancelled() -> DeliveryOutcome:
    return DeliveryOutcome(
        outcome_id="o",
        notification_id="n",
        event_id="e",
        event_type="payment_reminder",
        user_id="u",
        tier=Tier.HIGH,
        status=OutcomeStatus.CANCELLED,
        occurred_at=T0,
        recorded_at=T0,
        reason="cancel_key",
    )


def test_cancelled_round_trips_on_v2() -> None:
    codec = Codec()
    assert codec.latest("DeliveryOutcome").version == 2
    assert codec.decode(codec.encode(_cancelled()), DeliveryOutcome).status is OutcomeStatus.CANCELLED


def test_a_v1_reader_reads_cancelled_as_unknown() -> None:
    """A consumer still on v1 (its reader schema) resolving a v2 record: the enum default applies."""
    versions = {c.version: c for c in load_contracts() if c.name == "DeliveryOutcome"}
    data = Codec().encode(_cancelled())
    record = schemaless_reader(io.BytesIO(data[10:]), versions[2].parsed, versions[1].parsed)
    assert isinstance(record, dict)
    assert record["status"] == "unknown"
    assert record["notification_id"] == "n"
