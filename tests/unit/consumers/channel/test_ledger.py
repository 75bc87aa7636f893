"""The delivery ledger's replay rule, as a table: what a replayed message finds, what happens."""

from __future__ import annotations

import pytest

from consumers.channel.ledger import (
    Entry,
    LedgerState,
    Replay,
    parse_entries,
    replay_decision,
    resends_unknown,
)
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


# In flight from a dead process, every tier x channel: resend where a duplicate is harmless (in-app:
# the inbox insert is unique by key; webhooks: receivers dedupe on `webhook-id`) or beats a loss
# (critical, high); elsewhere report it ambiguous rather than risk a second email, SMS or push.
S, A = Replay.SEND, Replay.AMBIGUOUS
IN_FLIGHT_FROM_A_DEAD_PROCESS: dict[Tier, dict[Channel, Replay]] = {
    Tier.CRITICAL: {Channel.EMAIL: S, Channel.SMS: S, Channel.PUSH: S, Channel.IN_APP: S, Channel.WEBHOOK: S},
    Tier.HIGH: {Channel.EMAIL: S, Channel.SMS: S, Channel.PUSH: S, Channel.IN_APP: S, Channel.WEBHOOK: S},
    Tier.MEDIUM: {Channel.EMAIL: A, Channel.SMS: A, Channel.PUSH: A, Channel.IN_APP: S, Channel.WEBHOOK: S},
    Tier.LOW: {Channel.EMAIL: A, Channel.SMS: A, Channel.PUSH: A, Channel.IN_APP: S, Channel.WEBHOOK: S},
    Tier.SYSTEM: {Channel.EMAIL: A, Channel.SMS: A, Channel.PUSH: A, Channel.IN_APP: S, Channel.WEBHOOK: S},
}


def test_the_table_covers_every_tier_and_channel() -> None:
    assert set(IN_FLIGHT_FROM_A_DEAD_PROCESS) == set(Tier)
    assert all(set(row) == set(Channel) for row in IN_FLIGHT_FROM_A_DEAD_PROCESS.values())


@pytest.mark.parametrize(
    ("tier", "channel", "expected"),
    [(t, c, v) for t, row in IN_FLIGHT_FROM_A_DEAD_PROCESS.items() for c, v in row.items()],
)
def test_in_flight_from_a_dead_process(tier: Tier, channel: Channel, expected: Replay) -> None:
    assert replay_decision(DEAD, tier=tier, channel=channel, owner=ME) is expected
    # this process's own interrupted attempt is judged the same way
    assert replay_decision(MINE, tier=tier, channel=channel, owner=ME) is expected
    # and so is a send the provider timed out on (the channel consumer asks the same rule)
    assert resends_unknown(tier, channel) is (expected is S)


def test_parse_entries_keeps_the_known_values_of_the_keys_found() -> None:
    keys = ["a", "b", "c", "d", "e"]
    values = [b"done|pm-1", None, "in_flight|other", b"something-older", b"done|-"]
    assert parse_entries(keys, values) == {
        "a": Entry(LedgerState.DONE, "done|pm-1", provider_id="pm-1"),
        "c": Entry(LedgerState.IN_FLIGHT, "in_flight|other", owner="other"),
        "e": Entry(LedgerState.DONE, "done|-", provider_id=None),
    }
