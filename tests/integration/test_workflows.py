"""Workflows end to end on the real stack: the four use-cases, scheduled sends and cancellation.

The classifier and the executor (the fallback's timer poller) run in-process on a manual
clock, so "in 3 days" and "every hour" take milliseconds; every record goes through Kafka,
every timer and state row through PostgreSQL, every cancellation through Redis.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from consumers.channel.cancelled import CancelCheck
from consumers.devstack import DevStack
from consumers.infra.keys import notification_id
from consumers.workflow.cancel import scoped_cancel_key
from schemas.models import Channel, Lane, OutcomeStatus, Receipt, ReceiptStatus
from tests.integration.test_channel_consumer import ScriptedProvider, incoming, make_consumer, outcomes
from tests.integration.workflow_harness import WorkflowHarness, running_workflows

PHONE = "+15555550123"
ALERT = '{"device": "phone", "location": "Lisbon"}'
LOGIN = {
    "match": "wf.login_code",
    "tier": "high",
    "category": "auth",
    "template": "login_code",
    "steps": [{"send": ["sms"]}, {"wait": {"until": "delivered", "timeout": "30s"}}, {"escalate": ["email"]}],
}
REMINDER = {
    "match": "wf.payment_reminder",
    "tier": "high",
    "category": "payments",
    "template": "payment_receipt",
    "steps": [{"delay": "3d"}, {"send": ["email"]}],
}
DIGEST = {
    "match": "wf.comment",
    "tier": "medium",
    "category": "activity",
    "template": "comment_reply",
    "steps": [{"digest": {"channel": "email", "window": "1h", "send_after": "1h", "max_items": 10}}],
}
MARKETING = {
    "match": "wf.marketing",
    "tier": "low",
    "category": "marketing",
    "template": "marketing",
    "steps": [{"throttle": {"limit": 2, "per": "1d"}}, {"send": ["email"]}],
}
FIRST = {
    "match": "wf.first",
    "tier": "high",
    "category": "auth",
    "template": "login_code",
    "steps": [{"send": {"channels": ["sms", "email"], "mode": "first"}}],
}


@pytest_asyncio.fixture(loop_scope="session")
async def h(stack: DevStack, tmp_path: Path) -> AsyncIterator[WorkflowHarness]:
    async with running_workflows(stack, tmp_path, [LOGIN, REMINDER, DIGEST, MARKETING, FIRST]) as harness:
        yield harness


def _nid(event_id: str, user: str) -> str:
    return notification_id(event_id, user)


async def test_login_code_sms_then_email_when_not_delivered_in_30s(h: WorkflowHarness) -> None:
    user = await h.add_user(email="a@example.com", phone=PHONE)
    event = h.event("wf.login_code", user)
    assert await h.emit(event) == []  # nothing at once: the workflow's step 0 is a timer
    await h.advance(0)
    nid = _nid(event.event_id, user)
    assert [m.notification_id for m in await h.messages(Channel.SMS)] == [nid]
    assert await h.messages(Channel.EMAIL) == []
    await h.advance(29)
    assert await h.messages(Channel.EMAIL) == []  # one second early
    await h.advance(1)
    emails = await h.messages(Channel.EMAIL)
    assert [(m.notification_id, m.recipient) for m in emails] == [(nid, "a@example.com")]
    sms_key = (await h.messages(Channel.SMS))[0].idempotency_key
    assert emails[0].idempotency_key != sms_key
    assert [(s, k) for s, k, _ in await h.runs(nid)] == [(0, "send"), (1, "wait"), (2, "escalate")]
    assert await h.state(nid) == "done"


async def test_login_code_delivered_in_time_sends_no_email(h: WorkflowHarness) -> None:
    user = await h.add_user(email="b@example.com", phone=PHONE)
    event = h.event("wf.login_code", user)
    await h.emit(event)
    await h.advance(0)
    nid = _nid(event.event_id, user)
    await h.advance(10)
    await h.receipt(Receipt(nid, user, ReceiptStatus.DELIVERED, at=h.clock.now(), channel=Channel.SMS))
    assert await h.state(nid) == "done"
    await h.advance(60)
    assert [m for m in await h.messages(Channel.EMAIL) if m.notification_id == nid] == []
    assert [k for _, k, _ in await h.runs(nid)] == ["send", "wait"]


async def test_a_receipt_posted_by_another_user_does_not_end_the_wait(h: WorkflowHarness) -> None:
    user = await h.add_user(email="e@example.com", phone=PHONE)
    event = h.event("wf.login_code", user)
    await h.emit(event)
    await h.advance(0)
    nid = _nid(event.event_id, user)
    await h.advance(10)
    forged = Receipt(
        nid, "mallory", ReceiptStatus.DELIVERED, at=h.clock.now(), channel=Channel.SMS, source="api"
    )
    await h.receipt(forged)
    assert await h.state(nid) == "waiting"
    await h.advance(20)
    assert [m.notification_id for m in await h.messages(Channel.EMAIL) if m.user_id == user] == [nid]


async def test_payment_reminder_cancelled_before_it_fires_sends_nothing(h: WorkflowHarness) -> None:
    user = await h.add_user(email="c@example.com")
    paid_key, unpaid_key = f"invoice-paid-{user}", f"invoice-open-{user}"
    paid = h.event("wf.payment_reminder", user, cancel_key=paid_key)
    unpaid = h.event("wf.payment_reminder", user, cancel_key=unpaid_key)
    await h.emit(paid, unpaid)
    await h.advance(0)
    await h.advance(86_400)  # a day later the first invoice is paid
    await h.emit(h.event("herald.cancel", user, cancel_key=paid_key))
    await h.advance(2 * 86_400)
    emails = [m for m in await h.messages(Channel.EMAIL) if m.user_id == user]
    assert [m.notification_id for m in emails] == [_nid(unpaid.event_id, user)]
    cancelled = [o for o in await h.outcomes() if o.status is OutcomeStatus.CANCELLED]
    assert [o.notification_id for o in cancelled] == [_nid(paid.event_id, user)]
    assert await h.state(_nid(paid.event_id, user)) == "cancelled"
    # A replay of the cancel changes nothing and reports nothing new.
    await h.emit(h.event("herald.cancel", user, cancel_key=paid_key))
    assert len([o for o in await h.outcomes() if o.status is OutcomeStatus.CANCELLED]) == 1


async def test_a_tenants_cancel_and_event_ids_stay_in_that_tenant(h: WorkflowHarness) -> None:
    # Tenants choose their event ids and cancel keys: the same ones in two tenants (same user id)
    # are two notifications, and acme's herald.cancel stops only acme's.
    user = await h.add_user(email="d@example.com")
    await h.add_user(email="d@acme.example", tenant="acme", user=user)
    key = f"invoice-{user}"
    mine = h.event("wf.payment_reminder", user, cancel_key=key)
    theirs = h.event("wf.payment_reminder", user, cancel_key=key, tenant="acme")
    later = h.event("wf.payment_reminder", user, cancel_key=key, tenant="acme", send_at=h.at(86_400))
    theirs.event_id = mine.event_id
    await h.emit(mine, theirs, later)
    await h.advance(0)
    ours, acme = notification_id(mine.event_id, user), notification_id(mine.event_id, user, "acme")
    assert ours != acme and await h.state(ours) == await h.state(acme) == "running"
    await h.emit(h.event("herald.cancel", user, cancel_key=key, tenant="acme"))
    assert (await h.state(ours), await h.state(acme)) == ("running", "cancelled")
    await h.advance(4 * 86_400)
    emails = [m for m in await h.messages(Channel.EMAIL) if m.user_id == user]
    assert [(m.notification_id, m.recipient, m.tenant) for m in emails] == [(ours, "d@example.com", None)]
    cancelled = {o.notification_id for o in await h.outcomes() if o.status is OutcomeStatus.CANCELLED}
    assert cancelled >= {acme, notification_id(later.event_id, user, "acme")} and ours not in cancelled


async def test_a_tenants_cancel_of_messages_sent_at_once_stays_in_that_tenant(h: WorkflowHarness) -> None:
    # The same event id, user id and cancel key in the default tenant and acme, sent at once
    # (herald_cancel_index, not a workflow): acme's cancel flags only acme's message for the
    # channel consumer, and a later default-tenant event with the key is not refused (the Redis
    # set of cancelled keys names the tenant).
    user = await h.add_user(email="k@example.com", phone=PHONE)
    await h.add_user(email="k@acme.example", phone=PHONE, tenant="acme", user=user)
    key = f"alert-{user}"
    ours = h.event("security_alert", user, cancel_key=key, payload=ALERT)
    theirs = h.event("security_alert", user, cancel_key=key, payload=ALERT, tenant="acme")
    theirs.event_id = ours.event_id
    await h.emit(ours, theirs)
    nid, acme = notification_id(ours.event_id, user), notification_id(ours.event_id, user, "acme")
    indexed = await h.pool.fetch(
        "SELECT cancel_key, notification_id FROM herald_cancel_index WHERE notification_id = ANY($1)",
        [nid, acme],
    )
    assert {(r["cancel_key"], r["notification_id"]) for r in indexed} == {
        (key, nid),
        (scoped_cancel_key(key, "acme"), acme),
    }
    await h.emit(h.event("herald.cancel", user, cancel_key=key, tenant="acme"))
    later = h.event("security_alert", user, cancel_key=key, payload=ALERT)
    assert any(o.topic != h.topics.outcomes for o in await h.emit(later))  # a message: not refused

    consumer = make_consumer(h.settings, ScriptedProvider(channel=Channel.SMS))
    consumer.cancel_check = CancelCheck(
        h.res.redis(), consumer="test", prefix=f"{h.settings.topic_prefix}:cancel"
    )
    lane = [m for m in await h.messages(Channel.SMS) if m.user_id == user]
    results = outcomes(await consumer.handle(incoming(lane)))
    assert sorted((o.notification_id, o.status) for o in results) == sorted(
        [
            (nid, OutcomeStatus.SENT),
            (acme, OutcomeStatus.CANCELLED),
            (notification_id(later.event_id, user), OutcomeStatus.SENT),
        ]
    )


async def test_scheduled_send_is_deferred_then_sent_or_cancelled(h: WorkflowHarness) -> None:
    user = await h.add_user(email="d@example.com")
    kept = h.event("marketing.weekly", user, send_at=h.at(3600))
    dropped = h.event("marketing.weekly", user, send_at=h.at(3600), cancel_key=f"promo-{user}")
    await h.emit(kept, dropped)
    deferred = [o for o in await h.outcomes() if o.status is OutcomeStatus.DEFERRED and o.user_id == user]
    assert {(o.reason, o.not_before) for o in deferred} == {("scheduled", h.at(3600))}
    assert len(deferred) == 2
    held = "SELECT data->>'tenant' FROM herald_timers WHERE msg_key = $1 AND state = 'pending'"
    assert await h.pool.fetchval(held, user.encode()) == ""  # keyed by the user: erased by (tenant, user)
    await h.advance(1800)
    await h.emit(h.event("herald.cancel", user, cancel_key=f"promo-{user}"))
    assert [m for m in await h.messages(Channel.EMAIL, Lane.BULK) if m.user_id == user] == []
    await h.advance(1800)
    sent = [m for m in await h.messages(Channel.EMAIL, Lane.BULK) if m.user_id == user]
    assert [m.event_id for m in sent] == [kept.event_id]
    cancelled = [o for o in await h.outcomes() if o.status is OutcomeStatus.CANCELLED and o.user_id == user]
    assert [(o.event_id, o.reason) for o in cancelled] == [(dropped.event_id, "cancel_key")]


async def test_an_event_whose_key_was_already_cancelled_is_not_sent(h: WorkflowHarness) -> None:
    user = await h.add_user(email="e@example.com")
    await h.emit(h.event("herald.cancel", user, cancel_key=f"late-{user}"))
    late = h.event("payment_receipt", user, cancel_key=f"late-{user}")
    outputs = await h.emit(late)
    assert [o.topic for o in outputs] == [h.topics.outcomes]
    cancelled = [o for o in await h.outcomes() if o.event_id == late.event_id]
    assert [o.status for o in cancelled] == [OutcomeStatus.CANCELLED]


async def test_comment_digest_every_hour_lists_at_most_ten(h: WorkflowHarness) -> None:
    user = await h.add_user(email="f@example.com")
    events = [
        h.event("wf.comment", user, payload=json.dumps({"title": f"comment {i}", "body": "hi"}))
        for i in range(12)
    ]
    await h.emit(*events)
    await h.advance(0)
    assert [m for m in await h.messages(Channel.EMAIL) if m.user_id == user] == []
    await h.advance(3600)
    digests = [m for m in await h.messages(Channel.EMAIL) if m.user_id == user]
    assert len(digests) == 1
    content = digests[0].data()
    assert (len(content["items"]), content["more"]) == (10, 2)
    assert digests[0].template == "digest"
    # The next hour's comment goes into the next digest, not a second one for this hour.
    await h.emit(h.event("wf.comment", user, payload='{"title": "late"}'))
    await h.advance(0)
    await h.advance(3600)
    digests = [m for m in await h.messages(Channel.EMAIL) if m.user_id == user]
    assert len(digests) == 2
    assert [i["title"] for i in digests[1].data()["items"]] == ["late"]


async def test_marketing_at_most_two_per_user_per_day_rest_dropped(h: WorkflowHarness) -> None:
    user = await h.add_user(email="g@example.com")
    await h.emit(*(h.event("wf.marketing", user) for _ in range(4)))
    await h.advance(0)
    sent = [m for m in await h.messages(Channel.EMAIL, Lane.BULK) if m.user_id == user]
    assert len(sent) == 2
    dropped = [o for o in await h.outcomes() if o.user_id == user and o.reason == "throttled"]
    assert len(dropped) == 2 and {o.status for o in dropped} == {OutcomeStatus.SUPPRESSED}
    await h.advance(86_400)  # a new day, a new allowance
    await h.emit(h.event("wf.marketing", user))
    await h.advance(0)
    assert len([m for m in await h.messages(Channel.EMAIL, Lane.BULK) if m.user_id == user]) == 3


async def test_the_same_user_id_in_two_tenants_has_its_own_throttle_and_digest(h: WorkflowHarness) -> None:
    user = await h.add_user(email="k@example.com")
    await h.add_user(email="k@acme.example", tenant="acme", user=user)
    # Throttle: two a day each; the default tenant's two do not use up acme's allowance.
    await h.emit(*(h.event("wf.marketing", user, tenant=t) for t in (None, "acme", None, "acme")))
    await h.advance(0)
    sent = [m for m in await h.messages(Channel.EMAIL, Lane.BULK) if m.user_id == user]
    assert sorted((m.tenant or "", m.recipient) for m in sent) == [
        ("", "k@example.com"),
        ("", "k@example.com"),
        ("acme", "k@acme.example"),
        ("acme", "k@acme.example"),
    ]
    assert [o for o in await h.outcomes() if o.user_id == user and o.reason == "throttled"] == []
    rows = await h.pool.fetch(
        "SELECT tenant, admitted FROM herald_workflow_throttle WHERE user_id = $1 ORDER BY tenant", user
    )
    assert [(r["tenant"], r["admitted"]) for r in rows] == [("", 2), ("acme", 2)]
    # Digest: one per tenant, each with its own items, at its own address, under its own tenant.
    comments = [
        h.event("wf.comment", user, tenant=t, payload=json.dumps({"title": f"{t or 'default'} {i}"}))
        for i, t in enumerate((None, "acme", "acme"))
    ]
    await h.emit(*comments)
    await h.advance(0)
    await h.advance(3600)
    digests = [m for m in await h.messages(Channel.EMAIL) if m.user_id == user and m.template == "digest"]
    by_tenant = {m.tenant or "": m for m in digests}
    assert len(digests) == 2 and sorted(by_tenant) == ["", "acme"]
    assert by_tenant["acme"].recipient == "k@acme.example"
    assert sorted(i["title"] for i in by_tenant["acme"].data()["items"]) == ["acme 1", "acme 2"]
    assert by_tenant[""].recipient == "k@example.com"
    assert [i["title"] for i in by_tenant[""].data()["items"]] == ["default 0"]


async def test_send_first_that_works_skips_a_channel_without_address(h: WorkflowHarness) -> None:
    user = await h.add_user(email="h@example.com")  # no phone: SMS cannot work
    event = h.event("wf.first", user)
    await h.emit(event)
    await h.advance(0)
    assert [m.user_id for m in await h.messages(Channel.SMS) if m.user_id == user] == []
    assert [m.recipient for m in await h.messages(Channel.EMAIL) if m.user_id == user] == ["h@example.com"]
    reasons = [o.reason for o in await h.outcomes() if o.user_id == user]
    assert "no_address" in reasons


async def test_a_replayed_step_timer_runs_nothing_twice(h: WorkflowHarness) -> None:
    user = await h.add_user(email="i@example.com", phone=PHONE)
    event = h.event("wf.login_code", user)
    await h.emit(event)
    await h.emit(event)  # the classifier replays the event: the same step-0 timer, armed once
    await h.advance(0)
    nid = _nid(event.event_id, user)
    # Re-arm step 1's timer as a crashed poller would have left it: pending again.
    await h.pool.execute(
        "UPDATE herald_timers SET state = 'pending' WHERE data->>'notification_id' = $1 AND kind = 'workflow_step'",
        nid,
    )
    await h.advance(30)
    await h.advance(30)
    assert len([m for m in await h.messages(Channel.SMS) if m.notification_id == nid]) == 1
    assert len([m for m in await h.messages(Channel.EMAIL) if m.notification_id == nid]) == 1
    assert [s for s, _, _ in await h.runs(nid)] == [0, 1, 2]


async def test_a_cancel_wins_over_a_message_already_waiting_in_a_lane(h: WorkflowHarness) -> None:
    """The message was routed at once; the cancel comes before the channel consumer reads it."""
    user = await h.add_user(email="j@example.com", phone=PHONE)
    event = h.event("security_alert", user, cancel_key=f"alert-{user}", payload=ALERT)
    await h.emit(event)
    waiting = [m for m in await h.messages(Channel.SMS) if m.user_id == user]
    assert len(waiting) == 1
    await h.emit(h.event("herald.cancel", user, cancel_key=f"alert-{user}"))

    provider = ScriptedProvider(channel=Channel.SMS)
    consumer = make_consumer(h.settings, provider)
    consumer.cancel_check = CancelCheck(
        h.res.redis(), consumer="test", prefix=f"{h.settings.topic_prefix}:cancel"
    )
    other = h.event("security_alert", user, payload=ALERT)  # not cancelled: delivered as usual
    await h.emit(other)
    lane = [m for m in await h.messages(Channel.SMS) if m.user_id == user]
    results = outcomes(await consumer.handle(incoming(lane)))
    assert [(o.event_id, o.status) for o in results] == [
        (event.event_id, OutcomeStatus.CANCELLED),
        (other.event_id, OutcomeStatus.SENT),
    ]
    assert len(provider.calls) == 1  # the cancelled one never reached the provider
