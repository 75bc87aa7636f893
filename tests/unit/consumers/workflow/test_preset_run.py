"""The preset entries a run of outcomes arms: what each one writes, and the rounds they are written in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from consumers.fallback.escalation import PUSH_TIMEOUT, Escalated
from consumers.scheduler.store import Timer
from consumers.workflow.context import KIND_STEP
from consumers.workflow.preset_run import (
    Entry,
    Stored,
    after_escalation,
    digest_entry,
    escalation_entry,
    receipt_ended,
    rounds,
)
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
    for r in out:  # the lock order of the poller's batch
        assert [e.message.notification_id for e in r] == sorted(e.message.notification_id for e in r)


_TIMER = Timer("step-key", KIND_STEP, T0, data={"notification_id": "n1", "step": 2, "reason": PUSH_TIMEOUT})


def _failed_timer() -> Timer:
    return Timer("step-key:now", KIND_STEP, T0, data={**_TIMER.data, "reason": "push_failed:no_device"})


def test_a_receipt_ends_a_waiting_push_step_but_not_a_failed_push_one() -> None:
    ended = receipt_ended(_TIMER, "n1", 2, received=True)
    assert ended == Stored("n1", 3, "done", log=((2, "escalate", "receipt"),))
    assert receipt_ended(_TIMER, "n1", 2, received=False) is None
    assert receipt_ended(_failed_timer(), "n1", 2, received=True) is None  # it failed: escalate anyway


@given(st.sampled_from(["email", "no_address", "opted_out", "already"]))
def test_an_escalation_that_ran_logs_its_result_and_ends_the_step(result: str) -> None:
    assert after_escalation(_TIMER, "n1", 2, Escalated(result)) == (
        Stored("n1", 3, "done", log=((2, "escalate", result),)),
        None,
    )


def test_an_escalation_held_by_quiet_hours_runs_again_when_they_end_and_still_waits_for_a_receipt() -> None:
    until = T0 + timedelta(hours=7)
    to, held = after_escalation(_TIMER, "n1", 2, Escalated("held", held_until=until))
    assert to == Stored("n1", 2, "waiting", "delivered")  # a receipt meanwhile still ends it
    assert held is not None and (held.key, held.due_at, held.data) == (
        f"step-key:held:{until.isoformat()}",
        until,
        _TIMER.data,
    )
    to, held = after_escalation(_failed_timer(), "n1", 2, Escalated("held", held_until=until))
    assert to == Stored("n1", 2, "running") and held is not None
