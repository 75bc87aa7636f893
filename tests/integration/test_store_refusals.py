"""A value PostgreSQL refuses in a channel consumer's batch-wide lookups (the suppression list, the
recipient properties) is the message's fault: a RecordError with a precise reason, never an outage,
and the message alone ends ``failed_permanent`` with an outcome rather than a ``handler_error``."""

from __future__ import annotations

import asyncpg
import pytest

from consumers.infra.recipient_properties import RecipientProperties
from consumers.infra.settings import HeraldSettings
from consumers.infra.suppressions import SuppressionStore
from consumers.runtime.isolate import isolate
from schemas.errors import DependencyUnavailable, RecordError
from schemas.models import Channel, OutcomeStatus
from tests.integration.test_channel_consumer import (
    ScriptedProvider,
    incoming,
    make_consumer,
    message,
    outcomes,
)


async def test_the_suppression_list_refuses_an_address_postgresql_cannot_compare(
    pg_pool: asyncpg.Pool,
) -> None:
    with pytest.raises(RecordError) as caught:
        await SuppressionStore(pg_pool).suppressed("email", ["ok@example.org", "n\x00ul@example.org"])
    assert caught.value.reason == "invalid_address"
    assert not isinstance(caught.value, DependencyUnavailable)


async def test_recipient_properties_refuse_a_user_id_postgresql_cannot_compare(pg_pool: asyncpg.Pool) -> None:
    with pytest.raises(RecordError) as caught:
        await RecipientProperties(pg_pool).get_many([("", "ok"), ("", "u\x00ser")])
    assert caught.value.reason == "invalid_recipient"
    assert not isinstance(caught.value, DependencyUnavailable)


async def test_the_message_at_fault_fails_permanently_and_the_rest_are_sent(
    settings: HeraldSettings, pg_pool: asyncpg.Pool
) -> None:
    adapter = ScriptedProvider(channel=Channel.EMAIL)
    consumer = make_consumer(settings, adapter)
    consumer.suppressions = SuppressionStore(pg_pool)
    try:
        assert await consumer.probe() is True  # Redis and PostgreSQL answer: the poison net may blame
        batch = incoming([message(f"u{i}", channel=Channel.EMAIL) for i in range(4)])
        batch[2].value.recipient = "n\x00ul@example.org"
        with pytest.raises(RecordError) as caught:
            await consumer.handle(batch)  # one lookup for the batch: refused as a whole
        results, _ = await isolate(consumer.handle, batch, caught.value, probe=consumer.probe)
    finally:
        assert consumer.ledger is not None
        await consumer.ledger.client.aclose()
    done = outcomes(results)  # no dead letter at all
    assert [o.status for o in done] == [OutcomeStatus.SENT] * 2 + [
        OutcomeStatus.FAILED_PERMANENT,
        OutcomeStatus.SENT,
    ]
    assert done[2].reason == "invalid_address"
    assert sorted(u for u, _, _, _ in adapter.calls) == ["u0", "u1", "u3"]
