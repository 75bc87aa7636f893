"""``herald receipt``: publishes a Receipt the fallback consumer reads."""

from __future__ import annotations

import pytest

from consumers.cli.main import build_parser
from consumers.cli.receipts import receipt
from consumers.infra.settings import HeraldSettings
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import Channel, Receipt, ReceiptStatus
from tests.kafka_helpers import read_all


async def test_receipt_command_publishes_a_receipt_keyed_by_notification(settings: HeraldSettings) -> None:
    args = build_parser().parse_args(
        ["receipt", "n-123", "--status", "opened", "--user", "u-9", "--channel", "push"]
    )
    assert await receipt(settings, args) == 0
    (record,) = await read_all(settings, Topics(settings.topic_prefix).receipts)
    value = default_codec().decode(record.value, Receipt)
    assert record.key == b"n-123"
    assert (value.notification_id, value.user_id, value.status, value.channel, value.source) == (
        "n-123",
        "u-9",
        ReceiptStatus.OPENED,
        Channel.PUSH,
        "cli",
    )


def test_receipt_command_rejects_an_unknown_status() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["receipt", "n-1", "--status", "seen", "--user", "u"])
