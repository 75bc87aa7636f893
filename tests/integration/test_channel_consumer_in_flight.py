"""The delivery ledger through the generic channel consumer, against real Redis: a crash
mid-batch re-sends at most what was in flight, an in-flight send of a tier that must not repeat
is reported ambiguous instead (so is a provider timeout), and a key a live process holds is left
to it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from channels.base import Content, Outcome
from consumers.infra.settings import HeraldSettings
from consumers.runtime import metrics
from schemas.models import Channel, ChannelMessage, Lane, OutcomeStatus, Tier
from tests.integration.test_channel_consumer import (
    ScriptedProvider,
    incoming,
    make_consumer,
    message,
    outcomes,
)


@dataclass
class HangingProvider(ScriptedProvider):
    """Accepts the first ``accept`` calls, then never answers (the process dies mid-call)."""

    accept: int = 0
    hung: asyncio.Event = field(default_factory=asyncio.Event)

    async def deliver(self, message: ChannelMessage, content: Content, *, idempotency_key: str) -> Outcome:
        if len(self.calls) >= self.accept:
            self.calls.append((message.user_id, content.text or "", time.monotonic(), 0.0))
            self.hung.set()
            await asyncio.Event().wait()
        return await super().deliver(message, content, idempotency_key=idempotency_key)


async def _die_mid_batch(
    settings: HeraldSettings, batch: list[ChannelMessage], accept: int, **channel: Any
) -> HangingProvider:
    """Run ``batch`` through a consumer whose provider hangs after ``accept`` sends, then kill it there."""
    provider = HangingProvider(accept=accept)
    consumer = make_consumer(settings, provider, concurrency=1, **channel)
    task = asyncio.create_task(consumer.handle(incoming(batch)))
    await asyncio.wait_for(provider.hung.wait(), 5)
    task.cancel()  # the process is gone: no outcome was produced, nothing committed
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return provider


async def test_a_replay_after_a_crash_mid_batch_sends_only_what_was_in_flight(
    settings: HeraldSettings,
) -> None:
    batch = [message("u-crash", tier=Tier.HIGH, payload={"code": f"{i}"}) for i in range(5)]
    dead = await _die_mid_batch(settings, batch, accept=3)
    assert len(dead.calls) == 4  # three accepted, the fourth in flight at the "kill"
    provider = ScriptedProvider()
    replay = outcomes(await make_consumer(settings, provider).handle(incoming(batch)))
    assert [o.status for o in replay] == [OutcomeStatus.SENT] * 5
    assert ["duplicate" in (o.detail or "") for o in replay] == [True, True, True, False, False]
    # high tier: the in-flight one is sent again (a duplicate beats a loss), plus the unstarted one
    assert [c[1] for c in provider.calls] == [f"Your sign-in code is {i}. Never share it." for i in (3, 4)]


async def test_an_in_flight_send_of_a_low_tier_is_ambiguous_not_resent(settings: HeraldSettings) -> None:
    batch = [message("u-ambiguous", tier=Tier.LOW, payload={"code": f"{i}"}) for i in range(3)]
    await _die_mid_batch(settings, batch, accept=1)
    counter = metrics.AMBIGUOUS_DELIVERIES.labels(Channel.SMS.value, Lane.PRIORITY.value)
    before = counter._value.get()
    provider = ScriptedProvider()
    consumer = make_consumer(settings, provider)
    first = outcomes(await consumer.handle(incoming(batch)))
    assert [(o.status, o.reason) for o in first] == [
        (OutcomeStatus.SENT, None),
        (OutcomeStatus.FAILED_PERMANENT, "ambiguous"),
        (OutcomeStatus.SENT, None),
    ]
    assert len(provider.calls) == 1 and counter._value.get() == before + 1
    again = outcomes(await make_consumer(settings, provider).handle(incoming(batch)))
    assert [o.outcome_id for o in again] == [o.outcome_id for o in first]  # same verdicts, same ids
    assert len(provider.calls) == 1


async def test_messages_queued_for_a_slot_hold_no_claim_so_a_kill_is_ambiguous_only_where_a_call_was(
    settings: HeraldSettings,
) -> None:
    # Four recipients, one provider call at a time: the first call hangs (the kill), three wait for
    # the slot. Only the call at the provider may have been taken; the others were certainly not.
    batch = [message(f"u-queued-{i}", tier=Tier.LOW, payload={"code": f"{i}"}) for i in range(4)]
    dead = await _die_mid_batch(settings, batch, accept=0)
    assert len(dead.calls) == 1
    provider = ScriptedProvider()
    replay = outcomes(await make_consumer(settings, provider).handle(incoming(batch)))
    assert sorted((o.status, o.reason or "") for o in replay) == [
        (OutcomeStatus.FAILED_PERMANENT, "ambiguous"),
        (OutcomeStatus.SENT, ""),
        (OutcomeStatus.SENT, ""),
        (OutcomeStatus.SENT, ""),
    ]
    (ambiguous,) = [o for o in replay if o.status is OutcomeStatus.FAILED_PERMANENT]
    assert ambiguous.user_id == dead.calls[0][0]  # the one that was at the provider
    assert len(provider.calls) == 3


async def test_a_key_in_flight_in_a_live_process_is_left_to_it(settings: HeraldSettings) -> None:
    m = message("u-live-owner", tier=Tier.LOW)
    other = make_consumer(settings, ScriptedProvider())
    assert other.ledger is not None
    stopping = asyncio.Event()
    beat = asyncio.create_task(other.ledger.heartbeat(stopping))  # the other process is alive
    try:
        assert await other.ledger.claim(m.idempotency_key, None)
        provider = ScriptedProvider()
        (o,) = outcomes(await make_consumer(settings, provider).handle(incoming([m])))
        assert (o.status, o.reason) == (OutcomeStatus.FAILED_RETRYABLE, "in_flight_elsewhere")
        assert provider.calls == []
    finally:
        stopping.set()
        await beat
    # the other process stopped without finishing: its claim is now a dead process's
    (o,) = outcomes(await make_consumer(settings, ScriptedProvider()).handle(incoming([m])))
    assert (o.status, o.reason) == (OutcomeStatus.FAILED_PERMANENT, "ambiguous")


TIMEOUT = Outcome("failed_retryable", "scripted", provider_code="ReadTimeoutError", reason="provider_timeout")


async def test_a_provider_timeout_follows_the_crash_rule(settings: HeraldSettings) -> None:
    # Timed out after the request went out: the provider may have taken it, exactly as a send in
    # flight at a crash. Low tier SMS: reported ambiguous at once, never resent (no in-process
    # retry, and the ledger answers every later retry or replay the same). High tier: resent.
    low = message("u-to-low", tier=Tier.LOW, recipient="+15555550101")
    high = message("u-to-high", tier=Tier.HIGH, recipient="+15555550102")
    provider = ScriptedProvider(script={low.recipient: [TIMEOUT] * 3, high.recipient: [TIMEOUT]})
    counter = metrics.AMBIGUOUS_DELIVERIES.labels(Channel.SMS.value, Lane.PRIORITY.value)
    before = counter._value.get()
    consumer = make_consumer(settings, provider)
    first = outcomes(await consumer.handle(incoming([low, high])))
    assert [(o.status, o.reason) for o in first] == [
        (OutcomeStatus.FAILED_PERMANENT, "ambiguous"),
        (OutcomeStatus.SENT, None),  # the in-process retry resent it: a duplicate beats a loss
    ]
    assert first[0].provider == "scripted" and first[0].error_code == "ReadTimeoutError"
    assert "timed out" in (first[0].detail or "") and counter._value.get() == before + 1
    assert [c[0] for c in provider.calls] == ["u-to-low", "u-to-high", "u-to-high"]
    (again,) = outcomes(await make_consumer(settings, provider).handle(incoming([low])))
    assert (again.status, again.reason) == (OutcomeStatus.FAILED_PERMANENT, "ambiguous")
    assert len(provider.calls) == 3  # the fallback's retry (or a replay) does not send it either


async def test_a_refusal_is_retried_whatever_the_tier(settings: HeraldSettings) -> None:
    low = message("u-refused-low", tier=Tier.LOW)
    refused = Outcome("failed_retryable", "scripted", provider_code="503", reason="provider_unavailable")
    provider = ScriptedProvider(script={low.recipient: [refused]})
    (o,) = outcomes(await make_consumer(settings, provider).handle(incoming([low])))
    assert o.status is OutcomeStatus.SENT and len(provider.calls) == 2  # nothing was taken: resent
