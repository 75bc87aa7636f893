"""A run keeps the steps it started with across a reload of the routing file; a run or a digest
whose route is gone ends with a ``cancelled``/``route_changed`` outcome; a digest reads at most
``max_items`` events per tenant, whatever it holds. On the real stack (see workflow_harness)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
import yaml

from consumers.classifier.process import load_table
from consumers.devstack import DevStack
from consumers.infra.keys import notification_id
from schemas.models import Channel, OutcomeStatus
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
DIGEST = {
    "match": "wf.reload.comment",
    "tier": "medium",
    "category": "activity",
    "template": "comment_reply",
    "steps": [{"digest": {"channel": "email", "window": "1h", "send_after": "1h", "max_items": 3}}],
}


@pytest_asyncio.fixture(loop_scope="session")
async def h(stack: DevStack, tmp_path: Path) -> AsyncIterator[WorkflowHarness]:
    async with running_workflows(stack, tmp_path, [REMINDER, DIGEST]) as harness:
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


async def test_a_run_whose_route_is_gone_is_cancelled_with_a_reason(
    h: WorkflowHarness, tmp_path: Path
) -> None:
    user = await h.add_user(email="s@example.com")
    event = h.event("wf.reload.reminder", user)
    nid = notification_id(event.event_id, user)
    await h.emit(event)
    await h.advance(0)
    _reload(h, tmp_path, [DIGEST])  # the reminder's route is removed (or renamed)
    await h.advance(3 * 86_400)
    assert [m for m in await h.messages(Channel.EMAIL) if m.user_id == user] == []
    mine = [o for o in await h.outcomes() if o.notification_id == nid]
    assert [(o.status, o.reason) for o in mine] == [(OutcomeStatus.CANCELLED, "route_changed")]
    assert await h.state(nid) == "cancelled"


async def test_a_digest_whose_route_is_gone_cancels_its_items_with_a_reason(
    h: WorkflowHarness, tmp_path: Path
) -> None:
    user = await h.add_user(email="t@example.com")
    events = [h.event("wf.reload.comment", user) for _ in range(2)]
    await h.emit(*events)
    await h.advance(0)
    _reload(h, tmp_path, [REMINDER])
    await h.advance(3600)
    assert [m for m in await h.messages(Channel.EMAIL) if m.user_id == user] == []
    nids = {notification_id(e.event_id, user) for e in events}
    mine = [o for o in await h.outcomes() if o.notification_id in nids]
    assert sorted((o.notification_id, o.status, o.reason) for o in mine) == sorted(
        (n, OutcomeStatus.CANCELLED, "route_changed") for n in nids
    )


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
