"""The webhook adapter and endpoint registry against a real receiver and real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio

from channels.base import Outcome
from channels.webhook.endpoints_pg import EndpointStore
from channels.webhook.http import WebhookAdapter
from channels.webhook.signing import generate_secret
from channels.webhook.ssrf import PerEndpointPool
from consumers.devstack import DevStack
from schemas.codec import default_codec
from schemas.models import ChannelMessage
from tests.fakes.webhook_receiver import Behaviour, WebhookReceiver, running_receiver
from tests.integration.webhook_helpers import adapter, endpoint, webhook_message


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with running_receiver() as r:
        yield r


async def _send(a: WebhookAdapter, message: ChannelMessage) -> Outcome:
    return await a.deliver(message, a.render(message), idempotency_key=message.idempotency_key)


async def test_signed_delivery_verified_by_ours_and_the_library(
    pg_pool: asyncpg.Pool, receiver: WebhookReceiver
) -> None:
    ep = await endpoint(pg_pool, receiver)
    a = adapter(pg_pool)
    try:
        msg = webhook_message(ep.endpoint_id, payload={"invoice": 7, "who": "Zoë"})
        outcome = await _send(a, msg)
    finally:
        await a.close()
    assert outcome.status == "sent" and outcome.provider == "http"
    (d,) = receiver.for_path(f"/hooks/{ep.endpoint_id}")
    assert d.accepted and d.verified_ours and d.verified_theirs
    assert d.webhook_id == msg.idempotency_key
    assert d.headers["content-type"] == "application/json"
    assert json.loads(d.body)["data"] == {"invoice": 7, "who": "Zoë"}
    assert json.loads(d.body)["type"] == "system.invoice_paid"
    stored = await EndpointStore(pg_pool).get(ep.endpoint_id)
    assert stored is not None and stored.total_successes == 1 and stored.failing_since is None


async def test_rotation_keeps_old_receivers_working_during_grace(
    pg_pool: asyncpg.Pool, receiver: WebhookReceiver
) -> None:
    store = EndpointStore(pg_pool)
    ep = await endpoint(pg_pool, receiver)
    old = ep.secrets[0]
    new = generate_secret()
    await store.rotate_secret(ep.endpoint_id, now=datetime.now(UTC), grace_s=3600, new_secret=new)
    a = adapter(pg_pool)
    path = f"/hooks/{ep.endpoint_id}"
    try:
        for secrets in ([old], [new]):  # a receiver that knows only one of them still accepts
            receiver.endpoints[path] = (secrets, Behaviour())
            assert (await _send(a, webhook_message(ep.endpoint_id))).status == "sent"
        d = receiver.for_path(path)[-1]
        assert len(d.headers["webhook-signature"].split(" ")) == 2
        # grace over: only the new secret signs; a receiver still on the old one rejects
        await store.rotate_secret(ep.endpoint_id, now=datetime.now(UTC), grace_s=0, new_secret=new)
        receiver.endpoints[path] = ([old], Behaviour())
        assert (await _send(a, webhook_message(ep.endpoint_id))).status == "failed_permanent"
        receiver.endpoints[path] = ([new], Behaviour())
        assert (await _send(a, webhook_message(ep.endpoint_id))).status == "sent"
        assert len(receiver.for_path(path)[-1].headers["webhook-signature"].split(" ")) == 1
    finally:
        await a.close()


async def test_410_disables_endpoint_and_keeps_later_messages(
    pg_pool: asyncpg.Pool, receiver: WebhookReceiver
) -> None:
    ep = await endpoint(pg_pool, receiver, Behaviour(status=410))
    disabled: list[str] = []
    a = adapter(pg_pool)
    a.on_disabled = disabled.append
    try:
        first = await _send(a, webhook_message(ep.endpoint_id))
        assert (first.status, first.reason, first.provider_code) == (
            "failed_permanent",
            "endpoint_gone",
            "410",
        )
        later = webhook_message(ep.endpoint_id)
        second = await _send(a, later)
    finally:
        await a.close()
    assert (second.status, second.reason) == ("failed_permanent", "endpoint_disabled")
    assert len(receiver.for_path(f"/hooks/{ep.endpoint_id}")) == 1  # nothing sent once disabled
    stored = await EndpointStore(pg_pool).get(ep.endpoint_id)
    assert stored is not None and stored.disabled and stored.disabled_reason == "gone"
    assert disabled == ["gone"]
    since = datetime.now(UTC) - timedelta(hours=1)
    pending = await EndpointStore(pg_pool).pending(ep.endpoint_id, since=since)
    assert later.idempotency_key in {p.idempotency_key for p in pending} and len(pending) == 2
    assert default_codec().decode(pending[-1].message, ChannelMessage).recipient == ep.endpoint_id


@pytest.mark.parametrize(
    ("behaviour", "status", "reason", "retry_after"),
    [
        (
            Behaviour(status=500, headers={"webhook-delivery": "abort-message"}),
            "failed_permanent",
            "receiver_aborted",
            None,
        ),
        (Behaviour(status=503, headers={"retry-after": "17"}), "failed_retryable", "http_503", 17.0),
        (Behaviour(status=429), "failed_retryable", "http_429", None),
        (Behaviour(status=408), "failed_retryable", "http_408", None),
        (Behaviour(status=404), "failed_permanent", "http_404", None),
        (
            Behaviour(status=302, headers={"location": "http://127.0.0.1:1/elsewhere"}),
            "failed_permanent",
            "redirect",
            None,
        ),
    ],
)
async def test_classification_against_real_responses(
    pg_pool: asyncpg.Pool,
    receiver: WebhookReceiver,
    *,
    behaviour: Behaviour,
    status: str,
    reason: str,
    retry_after: float | None,
) -> None:
    ep = await endpoint(pg_pool, receiver, behaviour)
    a = adapter(pg_pool)
    try:
        outcome = await _send(a, webhook_message(ep.endpoint_id))
    finally:
        await a.close()
    assert (outcome.status, outcome.reason, outcome.retry_after) == (status, reason, retry_after)
    stored = await EndpointStore(pg_pool).get(ep.endpoint_id)
    assert stored is not None and not stored.disabled and stored.total_failures == 1


async def test_response_body_is_read_only_up_to_the_cap(
    pg_pool: asyncpg.Pool, receiver: WebhookReceiver
) -> None:
    ep = await endpoint(pg_pool, receiver, Behaviour(status=500, body=b"x" * 2_000_000))
    a = adapter(pg_pool, max_response_bytes=100)
    try:
        outcome = await _send(a, webhook_message(ep.endpoint_id))
    finally:
        await a.close()
    assert outcome.status == "failed_retryable" and outcome.detail == "x" * 100


async def test_body_size_limit(pg_pool: asyncpg.Pool, receiver: WebhookReceiver) -> None:
    ep = await endpoint(pg_pool, receiver)
    a = adapter(pg_pool, max_body_bytes=1000)
    try:
        outcome = await _send(a, webhook_message(ep.endpoint_id, payload={"blob": "y" * 2000}))
        small = await _send(a, webhook_message(ep.endpoint_id, payload={"blob": "y" * 10}))
    finally:
        await a.close()
    assert (outcome.status, outcome.reason) == ("failed_permanent", "payload_too_large")
    assert small.status == "sent"
    assert len(receiver.for_path(f"/hooks/{ep.endpoint_id}")) == 1


async def test_timeout_and_refused_connection_are_retryable(
    pg_pool: asyncpg.Pool, receiver: WebhookReceiver
) -> None:
    slow = await endpoint(pg_pool, receiver, Behaviour(delay_s=2.0))
    closed = await endpoint(pg_pool, receiver, url="http://127.0.0.1:1/nothing-listens")
    a = adapter(pg_pool, total_timeout_s=0.3)
    try:
        started = asyncio.get_running_loop().time()
        timed_out = await _send(a, webhook_message(slow.endpoint_id))
        elapsed = asyncio.get_running_loop().time() - started
        refused = await _send(a, webhook_message(closed.endpoint_id))
    finally:
        await a.close()
    assert (timed_out.status, timed_out.reason) == ("failed_retryable", "timeout")
    assert elapsed < 1.5
    assert (refused.status, refused.reason) == ("failed_retryable", "connection_error")


async def test_event_filter_and_unknown_endpoint(pg_pool: asyncpg.Pool, receiver: WebhookReceiver) -> None:
    ep = await endpoint(pg_pool, receiver, event_types=("system.billing.*",))
    a = adapter(pg_pool)
    try:
        skipped = await _send(a, webhook_message(ep.endpoint_id, event_type="system.user.created"))
        taken = await _send(a, webhook_message(ep.endpoint_id, event_type="system.billing.paid"))
        missing = await _send(a, webhook_message("ep_does_not_exist"))
    finally:
        await a.close()
    assert (skipped.status, skipped.reason) == ("failed_permanent", "event_filtered")
    assert taken.status == "sent"
    assert (missing.status, missing.reason) == ("failed_permanent", "no_endpoint")


async def test_auto_disable_after_continuous_failure(
    pg_pool: asyncpg.Pool, receiver: WebhookReceiver
) -> None:
    # fail_first: the receiver answers 500 before it checks signatures, which the moved clock would spoil
    ep = await endpoint(pg_pool, receiver, Behaviour(fail_first=10**6))
    now = [datetime.now(UTC)]
    a = adapter(pg_pool, clock=lambda: now[0], disable_after_s=3600)
    try:
        first = await _send(a, webhook_message(ep.endpoint_id))
        now[0] += timedelta(minutes=59)
        second = await _send(a, webhook_message(ep.endpoint_id))
        now[0] += timedelta(minutes=2)  # 61 minutes of nothing but failures
        third = await _send(a, webhook_message(ep.endpoint_id))
    finally:
        await a.close()
    assert [o.status for o in (first, second, third)] == [
        "failed_retryable",
        "failed_retryable",
        "failed_permanent",
    ]
    assert third.reason == "endpoint_disabled"
    stored = await EndpointStore(pg_pool).get(ep.endpoint_id)
    assert stored is not None and stored.disabled_reason == "failing" and stored.consecutive_failures == 3
    assert len(await EndpointStore(pg_pool).pending(ep.endpoint_id, since=now[0] - timedelta(days=1))) == 3


async def test_success_resets_the_failure_clock(pg_pool: asyncpg.Pool, receiver: WebhookReceiver) -> None:
    ep = await endpoint(pg_pool, receiver, Behaviour(fail_first=1))
    now = [datetime.now(UTC)]
    a = adapter(pg_pool, clock=lambda: now[0], disable_after_s=60)
    try:
        failed = webhook_message(ep.endpoint_id)
        assert (await _send(a, failed)).status == "failed_retryable"
        now[0] += timedelta(seconds=30)
        assert (await _send(a, failed)).status == "sent"  # its retry succeeds: pending row removed
    finally:
        await a.close()
    store = EndpointStore(pg_pool)
    stored = await store.get(ep.endpoint_id)
    assert stored is not None and stored.failing_since is None and stored.consecutive_failures == 0
    assert await store.pending(ep.endpoint_id, since=now[0] - timedelta(days=1)) == []


async def test_concurrent_failures_report_one_disable(
    pg_pool: asyncpg.Pool, receiver: WebhookReceiver
) -> None:
    ep = await endpoint(pg_pool, receiver)
    store = EndpointStore(pg_pool)
    now = datetime.now(UTC)

    async def fail(i: int) -> bool:
        return await store.record_failure(
            ep.endpoint_id,
            idempotency_key=f"k{i}",
            event_type="system.x",
            message=b"m",
            reason="http_500",
            now=now,
            disable_after_s=0,
        )

    results: Sequence[bool] = await asyncio.gather(*(fail(i) for i in range(8)))
    assert sorted(results) == [False] * 7 + [True]


async def test_registry_crud(pg_pool: asyncpg.Pool, receiver: WebhookReceiver) -> None:
    store = EndpointStore(pg_pool)
    ep = await endpoint(pg_pool, receiver, event_types=("system.*",))
    assert ep.endpoint_id in {e.endpoint_id for e in await store.list_endpoints("acct-1")}
    now = datetime.now(UTC)
    assert await store.disable(ep.endpoint_id, reason="manual", now=now)
    assert not await store.disable(ep.endpoint_id, reason="manual", now=now)
    assert await store.enable(ep.endpoint_id)
    got = await store.get(ep.endpoint_id)
    assert got is not None and not got.disabled and got.accepts("system.a") and not got.accepts("billing.a")
    rotated = await store.rotate_secret(ep.endpoint_id, now=now, grace_s=60)
    rotated2 = await store.rotate_secret(ep.endpoint_id, now=now, grace_s=60)
    assert rotated is not None and rotated2 is not None
    assert rotated2.secrets == (rotated2.secrets[0], rotated.secrets[0])  # at most two, newest first
    assert rotated2.active_secrets(now) == rotated2.secrets
    assert rotated2.active_secrets(now + timedelta(seconds=61)) == rotated2.secrets[:1]
    assert await store.rotate_secret("ep_missing", now=now, grace_s=1) is None


async def test_one_small_pool_per_endpoint_and_idle_pools_are_evicted(
    pg_pool: asyncpg.Pool, receiver: WebhookReceiver
) -> None:
    eps = [await endpoint(pg_pool, receiver) for _ in range(3)]
    a = adapter(pg_pool, max_pooled_endpoints=2, max_connections_per_endpoint=4)
    try:
        for ep in eps[:2]:
            assert (await _send(a, webhook_message(ep.endpoint_id))).status == "sent"
        pools = a.transport._pool
        assert isinstance(pools, PerEndpointPool) and len(pools.pools) == 2
        # idle pools beyond the cap are closed when a new endpoint needs one
        assert (await _send(a, webhook_message(eps[2].endpoint_id))).status == "sent"
        assert len(pools.pools) == 1
        # an endpoint keeps reusing its connection: 3 more sends, no new connection
        before = receiver.connections
        for _ in range(3):
            assert (await _send(a, webhook_message(eps[2].endpoint_id))).status == "sent"
        assert receiver.connections == before
    finally:
        await a.close()


async def test_a_delivered_message_stays_sent_when_statistics_cannot_be_written(
    stack: DevStack, pg_pool: asyncpg.Pool, receiver: WebhookReceiver
) -> None:
    ep = await endpoint(pg_pool, receiver)
    own_pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=2)
    assert own_pool is not None
    a = adapter(own_pool, endpoint_cache_ttl_s=600)
    try:
        assert (await _send(a, webhook_message(ep.endpoint_id))).status == "sent"  # endpoint now cached
        await own_pool.close()  # the adapter's database goes away
        outcome = await _send(a, webhook_message(ep.endpoint_id))
    finally:
        await a.close()
    assert outcome.status == "sent"
    assert len([d for d in receiver.for_path(f"/hooks/{ep.endpoint_id}") if d.accepted]) == 2
