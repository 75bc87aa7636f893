"""Receipt v2: an optional ``tenant``; v1 records decode with it unset, v1 readers skip it."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from fastavro import schemaless_reader

from schemas.codec import Codec
from schemas.models import Channel, Receipt, ReceiptStatus
from schemas.registry import AVRO_DIR, load_contracts

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _receipt(tenant: str | None) -> Receipt:
    return Receipt(
        "n", "u", ReceiptStatus.DELIVERED, at=T0, channel=Channel.PUSH, source="api", tenant=tenant
    )


def test_the_tenant_round_trips_on_v2() -> None:
    codec = Codec()
    assert codec.latest("Receipt").version == 2
    for tenant in ("acme", "", None):  # "" the default tenant, None not said
        assert codec.decode(codec.encode(_receipt(tenant)), Receipt).tenant == tenant


def test_a_v1_producers_receipt_says_no_tenant(tmp_path: Path) -> None:
    for name in ("Receipt.v1.avsc", "ChannelMessage.v1.avsc"):  # Receipt names herald.Channel
        (tmp_path / name).write_text((AVRO_DIR / name).read_text())
    old = Codec(load_contracts(tmp_path)).encode(_receipt(None))
    back = Codec().decode(old, Receipt)
    assert (back.notification_id, back.user_id, back.source, back.tenant) == ("n", "u", "api", None)


def test_a_v1_reader_reads_a_v2_receipt() -> None:
    versions = {c.version: c for c in load_contracts() if c.name == "Receipt"}
    data = Codec().encode(_receipt("acme"))
    record = schemaless_reader(io.BytesIO(data[10:]), versions[2].parsed, versions[1].parsed)
    assert isinstance(record, dict) and record["user_id"] == "u" and "tenant" not in record
