"""The delivery ledger's replay rule, as a table: what a replayed message finds, what happens."""

from __future__ import annotations

import pytest

from consumers.channel.ledger import Entry, LedgerState, Replay, replay_decision
from schemas.models import Channel, Tier

ME = "channel-email-priority:me"
DONE = Entry(LedgerState.DONE, "done|pm-1", provider_id="pm-1")
AMBIGUOUS = Entry(LedgerState.AMBIGUOUS, "ambiguous")
DEAD = Entry(LedgerState.IN_FLIGHT, "in_flight|other", owner="other", owner_alive=False)
LIVE = Entry(LedgerState.IN_FLIGHT, "in_flight|other", owner="other", owner_alive=True)
MINE = Entry(LedgerState.IN_FLIGHT, f"in_flight|{ME}", owner=ME)


@pytest.mark.parametrize("tier", list(Tier))
@pytest.mark.parametrize("channel", list(Channel))
def test_nothing_known_sends_done_acks_live_owner_waits(tier: Tier, channel: Channel) -> None:
    assert replay_decision(None, tier=tier, channel=channel, owner=ME) is Replay.SEND
    assert replay_decision(DONE, tier=tier, channel=channel, owner=ME) is Replay.ACK
    assert replay_decision(LIVE, tier=tier, channel=channel, owner=ME) is Replay.WAIT
    assert replay_decision(AMBIGUOUS, tier=tier, channel=channel, owner=ME) is Replay.AMBIGUOUS


@pytest.mark.parametrize(
    ("tier", "channel", "expected"),
    [
        (Tier.CRITICAL, Channel.EMAIL, Replay.SEND),
        (Tier.CRITICAL, Channel.SMS, Replay.SEND),
        (Tier.HIGH, Channel.PUSH, Replay.SEND),
        (Tier.HIGH, Channel.EMAIL, Replay.SEND),
        (Tier.MEDIUM, Channel.EMAIL, Replay.AMBIGUOUS),
        (Tier.MEDIUM, Channel.PUSH, Replay.AMBIGUOUS),
        (Tier.LOW, Channel.EMAIL, Replay.AMBIGUOUS),
        (Tier.LOW, Channel.SMS, Replay.AMBIGUOUS),
        (Tier.MEDIUM, Channel.IN_APP, Replay.SEND),  # the inbox insert is unique by key
        (Tier.SYSTEM, Channel.WEBHOOK, Replay.SEND),  # receivers dedupe on webhook-id
    ],
)
def test_in_flight_from_a_dead_process(tier: Tier, channel: Channel, expected: Replay) -> None:
    assert replay_decision(DEAD, tier=tier, channel=channel, owner=ME) is expected
    # this process's own interrupted attempt is judged the same way
    assert replay_decision(MINE, tier=tier, channel=channel, owner=ME) is expected
