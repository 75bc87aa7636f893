"""A run keeps the steps (and tier, category, template) it started with across a reload of the
routing file, and runs from that copy where the file in use lacks its route; a run whose route
became a preset, or without a copy whose route is gone, ends with a ``cancelled``/``route_changed``
outcome, a copy that cannot be read with ``pin_invalid``; a digest reads at most ``max_items``
events per tenant, whatever it holds, and its items go with its sending. On the real stack (see
workflow_harness)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from consumers.classifier.process import load_table
from consumers.devstack import DevStack
from consumers.infra.keys import notification_id
from consumers.runtime.handling import Incoming
from consumers.workflow import digest as digest_module
from schemas.models import Channel, OutcomeStatus, Tier
from tests.integration.fallback_harness import outcome_of
from tests.integration.workflow_harness import WorkflowHarness, running_workflows

REMINDER = {
    "match": "wf.reload.reminder",
    "tier": "high",
    "category": "payments",
    "template": "payment_receipt",
    "steps": [{"delay": "3d"}, {"send": ["email"]}],
}
# Version B puts a send and a wait for its receipt where A had its delay and its send: a run of A
# re-pointed by index would wait at B's wait for a receipt that never comes, then escalate.
REMINDER_B = {
    **REMINDER,
    "steps": [{"send": ["sms"]}, {"wait": {"until": "delivered", "timeout": "1d"}}, {"escalate": ["push"]}],
}
# A run that pushes: the high preset with an email fallback escalates a push it did not send.
ALERT = {
    "match": "wf.reload.alert",
    "tier": "high",
    "category": "payments",
    "template": "payment_receipt",
    "steps": [{"delay": "1h"}, {"send": ["push", "email"]}],
}
PAGE = {
    "match": "wf.reload.page",
    "tier": "critical",
    "category": "security",
    "template": "payment_receipt",
    "steps": [{"delay": "1h"}, {"send": ["email"]}],
}
DIGEST = {
    "match": "wf.reload.comment",
    "tier": "medium",
    "category": "activity",
    "template": "comment_reply",
    "steps": [{"digest": {"channel": "email", "window": "1h", "send_after": "1h", "max_items": 3}}],
}


@pytest_asyncio.fixture(loop_scope="session")
async def h(stack: DevStack, tmp_path: Path) -> AsyncIterator[WorkflowHarness]:
    async with running_workflows(stack, tmp_path, [REMINDER, DIGEST, ALERT, PAGE]) as harness:
        yield harness


def _reload(h: WorkflowHarness, tmp_path: Path, routes: list[dict[str, Any]]) -> None:
    """What ``kill -HUP`` does to the executor: the file is replaced, the new table used."""
    path = tmp_path / "routing-b.yaml"
    path.write_text(yaml.safe_dump({"routes": routes}))
    h.wf.use_table(load_table(h.settings, path))


async def test_a_run_started_under_a_route_finishes_its_steps_after_a_reload(
    h: WorkflowHarness, tmp_path: Path
) -> None:
    user = await h.add_user(email="r@example.com", phone="+15555550177")
    event = h.event("wf.reload.reminder", user)
    nid = notification_id(event.event_id, user)
    await h.emit(event)
    await h.advance(0)  # step 0: the 3-day delay
    _reload(h, tmp_path, [REMINDER_B])
    await h.advance(3 * 86_400)
    assert [m.recipient for m in await h.messages(Channel.EMAIL) if m.user_id == user] == ["r@example.com"]
    assert [m for m in await h.messages(Channel.SMS) if m.user_id == user] == []
    assert await h.runs(nid) == [(0, "delay", "delay"), (1, "send", "send:email")]
    assert await h.state(nid) == "done"


async def test_a_run_the_executors_table_lacks_the_route_of_runs_from_its_copy(
    h: WorkflowHarness, tmp_path: Path
) -> None:
    # The classifier has the route (just added, or renamed); the fallback process that runs the
    # executor has not reloaded yet (or has the new name only): the run still sends, as the
    # route said when it started (template, tier), not cancelled.
    user = await h.add_user(email="s@example.com")
    event = h.event("wf.reload.reminder", user)
    nid = notification_id(event.event_id, user)
    await h.emit(event)
    _reload(h, tmp_path, [DIGEST])
    await h.advance(0)
    await h.advance(3 * 86_400)
    (sent,) = [m for m in await h.messages(Channel.EMAIL) if m.user_id == user]
    assert (sent.template, sent.tier.value) == ("payment_receipt", "high")
    assert await h.runs(nid) == [(0, "delay", "delay"), (1, "send", "send:email")]
    assert await h.state(nid) == "done"


async def _outcomes_of(h: WorkflowHarness, nids: set[str]) -> list[tuple[str, OutcomeStatus, str | None]]:
    return sorted(
        (o.notification_id, o.status, o.reason) for o in await h.outcomes() if o.notification_id in nids
    )


async def test_a_run_without_a_copy_whose_route_is_gone_is_cancelled_with_a_reason(
    h: WorkflowHarness, tmp_path: Path
) -> None:
    user = await h.add_user(email="s2@example.com")
    event = h.event("wf.reload.reminder", user)
    nid = notification_id(event.event_id, user)
    await h.emit(event)
    await h.advance(0)
    # Started by a fallback from before migration 270: no copy of its route.
    await h.pool.execute("UPDATE herald_workflows SET pinned = NULL WHERE notification_id = $1", nid)
    _reload(h, tmp_path, [DIGEST])  # the reminder's route is removed (or renamed)
    await h.advance(3 * 86_400)
    assert [m for m in await h.messages(Channel.EMAIL) if m.user_id == user] == []
    assert await _outcomes_of(h, {nid}) == [(nid, OutcomeStatus.CANCELLED, "route_changed")]
    assert await h.state(nid) == "cancelled"


async def test_a_run_whose_type_goes_to_a_preset_that_leaves_its_sends_alone_runs_on(
    h: WorkflowHarness, tmp_path: Path
) -> None:
    # Its steps replaced by the high preset without a fallback (email, nothing after it): the
    # fallback does nothing with the run's email, so nothing stops the run sending it.
    user = await h.add_user(email="s3@example.com")
    event = h.event("wf.reload.reminder", user)
    nid = notification_id(event.event_id, user)
    await h.emit(event)
    await h.advance(0)
    preset = {k: v for k, v in REMINDER.items() if k != "steps"} | {"channels": ["email"]}
    _reload(h, tmp_path, [preset])
    await h.advance(3 * 86_400)
    sent = [m for m in await h.messages(Channel.EMAIL) if m.user_id == user]
    assert [m.recipient for m in sent] == ["s3@example.com"]
    assert await h.runs(nid) == [(0, "delay", "delay"), (1, "send", "send:email")]
    assert await _outcomes_of(h, {nid}) == []
    assert await h.state(nid) == "done"


async def test_a_run_whose_type_goes_to_a_preset_that_would_escalate_its_push_is_cancelled(
    h: WorkflowHarness, tmp_path: Path
) -> None:
    # The fallback takes the type's sends for the high preset's: a failed push would arm the
    # preset's escalation, due now, on this run's row. The run cannot go on beside it.
    user = await h.add_user(email="s5@example.com")
    event = h.event("wf.reload.alert", user)
    nid = notification_id(event.event_id, user)
    await h.emit(event)
    await h.advance(0)
    preset = {k: v for k, v in ALERT.items() if k != "steps"} | {"channels": ["push"], "fallback": ["email"]}
    _reload(h, tmp_path, [preset])
    await h.advance(3600)
    assert [m for m in await h.messages(Channel.EMAIL) if m.user_id == user] == []
    assert await _outcomes_of(h, {nid}) == [(nid, OutcomeStatus.CANCELLED, "route_changed")]
    assert await h.state(nid) == "cancelled"


async def test_a_critical_send_of_a_run_whose_route_is_gone_is_not_watched_as_a_presets(
    h: WorkflowHarness, tmp_path: Path
) -> None:
    # Sent an hour after the event from the run's copy: a critical watch would have its deadline
    # behind it and page CRITICAL_UNDELIVERED for a message sent as the route said.
    user = await h.add_user(email="s6@example.com")
    event = h.event("wf.reload.page", user)
    nid = notification_id(event.event_id, user)
    await h.emit(event)
    await h.advance(0)
    _reload(h, tmp_path, [DIGEST])
    await h.advance(3600)
    (sent,) = [m for m in await h.messages(Channel.EMAIL) if m.user_id == user]
    assert sent.tier is Tier.CRITICAL
    outcome = outcome_of(sent, OutcomeStatus.SENT, at=h.clock.now())
    await h.fallback.handle([Incoming("o", 0, 0, None, outcome, (), 0)])
    watched = await h.pool.fetchval(
        "SELECT count(*) FROM herald_critical_watch WHERE notification_id = $1", nid
    )
    assert watched == 0


async def test_a_copy_shorter_than_the_step_its_row_stands_at_is_pin_invalid(h: WorkflowHarness) -> None:
    user = await h.add_user(email="s7@example.com")
    event = h.event("wf.reload.reminder", user)
    nid = notification_id(event.event_id, user)
    await h.emit(event)
    await h.advance(0)  # at step 1 (the send), due in 3 days
    short = {"tier": "high", "category": "c", "template": "t", "lane": "priority"} | {
        "steps": [{"kind": "send", "channels": ["email"], "mode": "all", "opt_in": []}]
    }
    await h.pool.execute(
        "UPDATE herald_workflows SET pinned = $2 WHERE notification_id = $1", nid, json.dumps(short)
    )
    await h.advance(3 * 86_400)
    assert [m for m in await h.messages(Channel.EMAIL) if m.user_id == user] == []
    assert await _outcomes_of(h, {nid}) == [(nid, OutcomeStatus.CANCELLED, "pin_invalid")]
    assert await h.state(nid) == "cancelled"


async def test_a_run_whose_copy_cannot_be_read_is_cancelled_never_run(h: WorkflowHarness) -> None:
    user = await h.add_user(email="s4@example.com")
    event = h.event("wf.reload.reminder", user)
    nid = notification_id(event.event_id, user)
    await h.emit(event)
    await h.advance(0)
    bad = {"tier": "high", "category": "c", "template": "t", "lane": "priority"} | {
        "steps": [{"kind": "delay", "duration_s": 60}, {"kind": "delay", "duration_s": 1e300}]
    }
    await h.pool.execute(
        "UPDATE herald_workflows SET pinned = $2 WHERE notification_id = $1", nid, json.dumps(bad)
    )
    await h.advance(3 * 86_400)
    assert [m for m in await h.messages(Channel.EMAIL) if m.user_id == user] == []
    assert await _outcomes_of(h, {nid}) == [(nid, OutcomeStatus.CANCELLED, "pin_invalid")]
    assert await h.state(nid) == "cancelled"


async def test_a_digest_the_executors_table_lacks_the_route_of_is_sent_from_its_copy(
    h: WorkflowHarness, tmp_path: Path
) -> None:
    user = await h.add_user(email="t@example.com")
    await h.emit(*(h.event("wf.reload.comment", user) for _ in range(2)))
    await h.advance(0)
    _reload(h, tmp_path, [REMINDER])
    await h.advance(3600)
    (digest,) = [m for m in await h.messages(Channel.EMAIL) if m.user_id == user]
    assert (len(digest.data()["items"]), digest.tier.value) == (2, "medium")


async def _digest_of(h: WorkflowHarness, user: str) -> int:
    digest_id: int = await h.pool.fetchval("SELECT id FROM herald_workflow_digests WHERE user_id = $1", user)
    return digest_id


async def test_a_digest_without_a_copy_whose_route_is_gone_cancels_its_items_a_chunk_a_fire(
    h: WorkflowHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(digest_module, "CANCEL_CHUNK", 2)
    user = await h.add_user(email="t2@example.com")
    events = [h.event("wf.reload.comment", user) for _ in range(5)]
    await h.emit(*events)
    await h.advance(0)
    digest_id = await _digest_of(h, user)
    await h.pool.execute(
        "UPDATE herald_workflow_digests SET pinned = NULL WHERE id = $1", digest_id
    )  # pre-270
    _reload(h, tmp_path, [REMINDER])
    await h.advance(3600)
    assert [m for m in await h.messages(Channel.EMAIL) if m.user_id == user] == []
    nids = {notification_id(e.event_id, user) for e in events}
    assert await _outcomes_of(h, nids) == sorted((n, OutcomeStatus.CANCELLED, "route_changed") for n in nids)
    fires = await h.pool.fetchval(
        "SELECT count(*) FROM herald_timers WHERE kind = 'workflow_digest' AND data->>'digest_id' = $1",
        str(digest_id),
    )
    assert fires == 3  # 2, 2 and 1 items
    assert (
        await h.pool.fetchval(
            "SELECT count(*) FROM herald_workflow_digest_items WHERE digest_id = $1", digest_id
        )
        == 0
    )
    assert await h.pool.fetchval("SELECT count(*) FROM herald_workflow_digests WHERE id = $1", digest_id) == 0


async def test_a_digest_without_a_copy_takes_the_copy_of_the_next_item_that_joins(
    h: WorkflowHarness, tmp_path: Path
) -> None:
    # A digest made before migration 271 has no copy; an item that joins it since brings one,
    # so the digest is sent from it when its route is gone, not cancelled with every item in it.
    user = await h.add_user(email="t4@example.com")
    await h.emit(h.event("wf.reload.comment", user))
    await h.advance(0)
    digest_id = await _digest_of(h, user)
    await h.pool.execute("UPDATE herald_workflow_digests SET pinned = NULL WHERE id = $1", digest_id)
    await h.emit(h.event("wf.reload.comment", user))
    await h.advance(0)
    assert await h.pool.fetchval("SELECT pinned FROM herald_workflow_digests WHERE id = $1", digest_id)
    _reload(h, tmp_path, [REMINDER])
    await h.advance(3600)
    (digest,) = [m for m in await h.messages(Channel.EMAIL) if m.user_id == user]
    assert len(digest.data()["items"]) == 2


async def test_a_digest_whose_copy_cannot_be_read_cancels_its_items_never_silently(
    h: WorkflowHarness,
) -> None:
    user = await h.add_user(email="t3@example.com")
    events = [h.event("wf.reload.comment", user) for _ in range(2)]
    await h.emit(*events)
    await h.advance(0)
    bad = {"kind": "digest", "channel": "email", "window_s": 3600, "send_after_s": 60, "max_items": -5}
    pin = {"tier": "medium", "category": "c", "template": "t", "lane": "priority", "steps": [bad]}
    await h.pool.execute(
        "UPDATE herald_workflow_digests SET pinned = $2 WHERE id = $1",
        await _digest_of(h, user),
        json.dumps(pin),
    )
    await h.advance(3600)
    assert [m for m in await h.messages(Channel.EMAIL) if m.user_id == user] == []
    nids = {notification_id(e.event_id, user) for e in events}
    assert await _outcomes_of(h, nids) == sorted((n, OutcomeStatus.CANCELLED, "pin_invalid") for n in nids)


async def test_a_digest_keeps_its_step_across_a_reload(h: WorkflowHarness, tmp_path: Path) -> None:
    user = await h.add_user(email="u@example.com")
    await h.emit(
        *(h.event("wf.reload.comment", user, payload=json.dumps({"title": f"c{i}"})) for i in range(5))
    )
    await h.advance(0)
    one_item = {**DIGEST, "steps": [{"digest": {"channel": "email", "window": "1h", "max_items": 1}}]}
    _reload(h, tmp_path, [one_item])
    await h.advance(3600)
    (digest,) = [m for m in await h.messages(Channel.EMAIL) if m.user_id == user]
    content = digest.data()
    assert (len(content["items"]), content["more"]) == (3, 2)


async def test_a_digest_lists_the_newest_max_items_per_tenant_and_counts_the_rest(h: WorkflowHarness) -> None:
    user = await h.add_user(email="v@example.com")
    await h.add_user(email="v@acme.example", tenant="acme", user=user)
    for i in range(7):  # one at a time: joined_at orders them
        tenant = "acme" if i % 2 else None
        await h.emit(
            h.event("wf.reload.comment", user, tenant=tenant, payload=json.dumps({"title": f"c{i}"}))
        )
        await h.advance(1)
    # A digest row from before migration 240 (keyed by user only) may hold both tenants' items.
    sql = "SELECT id FROM herald_workflow_digests WHERE user_id = $1 AND tenant = $2"
    own, other = [await h.pool.fetchval(sql, user, tenant) for tenant in ("", "acme")]
    await h.pool.execute(
        "UPDATE herald_workflow_digest_items SET digest_id = $1 WHERE digest_id = $2", own, other
    )
    await h.pool.execute("DELETE FROM herald_workflow_digests WHERE id = $1", other)
    await h.advance(3600)
    digests = {m.tenant or "": m.data() for m in await h.messages(Channel.EMAIL) if m.user_id == user}
    assert sorted(digests) == ["", "acme"]
    assert [i["title"] for i in digests[""]["items"]] == ["c6", "c4", "c2"]
    assert digests[""]["more"] == 1
    assert [i["title"] for i in digests["acme"]["items"]] == ["c5", "c3", "c1"]
    assert digests["acme"]["more"] == 0
    count = await h.pool.fetchval("SELECT item_count FROM herald_workflow_digests WHERE id = $1", own)
    assert count == 7
    # Sent: its items, the 7 listed or counted, are gone with it (the row keeps the count).
    assert (
        await h.pool.fetchval("SELECT count(*) FROM herald_workflow_digest_items WHERE digest_id = $1", own)
        == 0
    )


async def test_an_erased_users_items_in_another_tenants_digest_are_not_listed_in_its_message(
    h: WorkflowHarness,
) -> None:
    user = await h.add_user(email="w@example.com")
    await h.add_user(email="w@acme.example", tenant="acme", user=user)
    for i in range(5):
        tenant = "acme" if i % 2 else None
        await h.emit(
            h.event("wf.reload.comment", user, tenant=tenant, payload=json.dumps({"title": f"c{i}"}))
        )
        await h.advance(1)
    # A digest row from before migration 240 holds both tenants' items; then acme's user is
    # erased: their workflow rows go, their items stay in the other tenant's digest.
    sql = "SELECT id FROM herald_workflow_digests WHERE user_id = $1 AND tenant = $2"
    own, other = [await h.pool.fetchval(sql, user, tenant) for tenant in ("", "acme")]
    await h.pool.execute(
        "UPDATE herald_workflow_digest_items SET digest_id = $1 WHERE digest_id = $2", own, other
    )
    await h.pool.execute("DELETE FROM herald_workflow_digests WHERE id = $1", other)
    await h.pool.execute("DELETE FROM herald_workflows WHERE user_id = $1 AND tenant = 'acme'", user)
    await h.advance(3600)
    digests = {m.tenant or "": m.data() for m in await h.messages(Channel.EMAIL) if m.user_id == user}
    assert [i["title"] for i in digests[""]["items"]] == ["c4", "c2", "c0"]
    assert digests[""]["more"] == 0
    # Listed under their own tenant (its own message: the recipient is still on file here).
    assert [i["title"] for i in digests["acme"]["items"]] == ["c3", "c1"]
