"""The preset entries a run of outcomes arms: what each one writes, and the rounds they are written in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from consumers.fallback.escalation import PUSH_TIMEOUT
from consumers.workflow.preset_run import Entry, digest_entry, escalation_entry, rounds
from consumers.workflow.presets import AfterSend
from schemas.models import Channel, ChannelMessage, Lane, Tier

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AFTER = AfterSend(step=2, wait_s=300.0, channels=(Channel.EMAIL,))


def _msg(nid: str = "n1", key: str = "msg_push") -> ChannelMessage:
    return ChannelMessage(
        notification_id=nid,
        event_id="e1",
        event_type="payment_receipt",
        user_id="u1",
        channel=Channel.PUSH,
        lane=Lane.PRIORITY,
        tier=Tier.HIGH,
        category="payments",
        recipient="u1",
        template="payment_receipt",
        locale="en",
        idempotency_key=key,
        occurred_at=T0,
    )


def test_a_sent_push_waits_for_its_receipt_until_the_wait_ends() -> None:
    entry = escalation_entry(_msg(), AFTER, reason=PUSH_TIMEOUT, now=T0)
    assert (entry.state, entry.wait_for, entry.due) == ("waiting", "delivered", T0 + timedelta(seconds=300))


def test_a_failed_push_escalates_now() -> None:
    entry = escalation_entry(_msg(), AFTER, reason="push_failed:invalid_token", now=T0)
    assert (entry.state, entry.wait_for, entry.due) == ("running", None, T0)


def test_an_in_app_item_is_looked_at_again_when_the_wait_ends() -> None:
    entry = digest_entry(_msg(), AFTER, sent_at=T0)
    assert (entry.state, entry.wait_for, entry.due, entry.reason) == (
        "running",
        None,
        T0 + timedelta(seconds=300),
        "unread",
    )


@given(st.lists(st.sampled_from(["n1", "n2", "n3"]), max_size=12))
def test_rounds_hold_each_notification_once_and_keep_its_order(nids: list[str]) -> None:
    entries = [Entry(_msg(nid, f"k{i}"), AFTER, "running", None, T0, "unread") for i, nid in enumerate(nids)]
    out = rounds(entries)
    assert sorted((e for r in out for e in r), key=entries.index) == entries  # each entry once
    for r in out:
        assert len({e.message.notification_id for e in r}) == len(r)  # a row at most once a round
        assert r  # no empty round
    for nid in set(nids):  # round n holds the notification's n-th entry
        mine = [e for e in entries if e.message.notification_id == nid]
        assert [e for r in out for e in r if e.message.notification_id == nid] == mine
    assert len(out) == max((nids.count(n) for n in set(nids)), default=0)
