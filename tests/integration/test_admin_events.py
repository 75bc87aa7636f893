"""The admin API's POST /v1/events end to end on Kafka, topics and their subscribers, and
recipients in batches, against a real server over the dev stack."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from consumers.api.admin.dedupe import Claim, EventIds
from consumers.api.admin.keys import Scope
from consumers.api.admin.routes_events import _send
from consumers.devstack import DevStack
from schemas.codec import default_codec
from schemas.models import DomainEvent, utcnow
from tests.admin_helpers import PROBLEM, key, rid, running_admin_api
from tests.api_helpers import RunningApi
from tests.kafka_helpers import wait_for_records


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: DevStack) -> AsyncIterator[RunningApi]:
    async with running_admin_api(stack) as running:
        yield running


async def test_post_events_produces_like_the_emitter(api: RunningApi) -> None:
    h = await key(api, Scope.EMIT, tenant="acme")
    ident, event_id = rid(), str(uuid.uuid4())
    one = {"type": "payment_receipt", "user_id": ident, "event_id": event_id, "data": {"amount": "1.00"}}
    r = await api.client.post("/v1/events", json=one, headers=h)
    assert r.status_code == 202, r.text
    assert r.json() == {"events": [{"event_id": event_id, "duplicate": False}]}
    again = await api.client.post("/v1/events", json=one, headers=h)
    assert again.json() == {"events": [{"event_id": event_id, "duplicate": True}]}

    batch = [{"type": "payment_receipt", "user_id": f"{ident}-{i}"} for i in range(20)]
    r = await api.client.post("/v1/events", json=batch, headers=h)
    assert r.status_code == 202 and len(r.json()["events"]) == 20

    records = await wait_for_records(api.settings, api.ctx.topics.events, 21)
    codec = default_codec()
    (first,) = [r for r in records if r.key == ident.encode()]  # keyed by user, as the emitter does
    event = codec.decode(first.value, DomainEvent)
    assert event.event_id == event_id and event.tenant == "acme" and event.data() == {"amount": "1.00"}
    assert len(records) == 21  # the repeat was not sent again


async def test_the_same_event_id_in_two_tenants_is_two_events(api: RunningApi) -> None:
    # Tenants choose their event ids: acme's invoice-1001 must not make globex's a duplicate.
    ident, event_id = rid(), f"invoice-{uuid.uuid4().hex[:8]}"
    one = {"type": "payment_receipt", "user_id": ident, "event_id": event_id}
    answers = []
    for tenant in ("acme", "globex", None, "acme", "globex", None):
        r = await api.client.post("/v1/events", json=one, headers=await key(api, Scope.EMIT, tenant=tenant))
        assert r.status_code == 202, r.text
        answers.append(r.json()["events"][0]["duplicate"])
    assert answers == [False, False, False, True, True, True]
    records = await wait_for_records(api.settings, api.ctx.topics.events, 3)
    codec = default_codec()
    sent = [codec.decode(r.value, DomainEvent) for r in records if r.key == ident.encode()]
    assert sorted(e.tenant or "" for e in sent) == ["", "acme", "globex"]
    # the default tenant's key is the one from before tenants: ids claimed before the upgrade hold
    admin = api.ctx.admin
    assert admin is not None
    assert await admin.redis.exists(f"{admin.settings.event_dedupe_prefix}:{event_id}")


@pytest.mark.parametrize(
    ("body", "loc", "text"),
    [
        ({"type": "payment_reciept", "user_id": "u"}, "body.type", "payment_receipt"),
        ({"type": "payment_receipt"}, "body", "exactly one of user_id and topic"),
        ({"type": "payment_receipt", "user_id": "u", "data": [1]}, "body.data", ""),
        (
            [{"type": "payment_receipt", "user_id": "u"}, {"type": "payment_receipt", "user_id": 5}],
            "body[1].user_id",
            "",
        ),
        ([], "body", "empty"),
        ({"type": "payment_receipt", "user_id": "u\u0000x"}, "body.user_id", "control character"),
        (
            [{"type": "payment_receipt", "user_id": "u"}, {"type": "payment_receipt", "user_id": "x" * 300}],
            "body[1].user_id",
            "> 256",
        ),
    ],
)
async def test_post_events_names_the_offending_field(api: RunningApi, body: Any, loc: str, text: str) -> None:
    r = await api.client.post("/v1/events", json=body, headers=await key(api, Scope.EMIT))
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert any(e["loc"] == loc and text in e["msg"] for e in errors), errors


async def test_post_events_that_are_not_json_are_a_422_at_the_body(api: RunningApi) -> None:
    h = {"content-type": "application/json", **await key(api, Scope.EMIT)}
    r = await api.client.post("/v1/events", content=b"{not json", headers=h)
    assert r.status_code == 422, r.text
    assert [(e["loc"], e["msg"]) for e in r.json()["errors"]] == [("body", "not JSON")]


async def test_post_events_refuses_another_tenant(api: RunningApi) -> None:
    h = await key(api, Scope.EMIT, tenant="acme")
    r = await api.client.post(
        "/v1/events", json={"type": "payment_receipt", "user_id": "u", "tenant": "globex"}, headers=h
    )
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM


async def test_topics_subscribe_and_page_by_keyset(api: RunningApi) -> None:
    h, topic = await key(api, Scope.TOPICS_WRITE), rid()
    assert (await api.client.put(f"/v1/topics/{topic}", json={}, headers=h)).status_code == 201
    assert (await api.client.put(f"/v1/topics/{topic}", json={"name": "n"}, headers=h)).status_code == 200
    users = [f"u{i:04d}" for i in range(250)]
    r = await api.client.post(f"/v1/topics/{topic}/subscribers", json={"user_ids": users}, headers=h)
    assert r.json() == {"added": 250}
    r = await api.client.post(f"/v1/topics/{topic}/subscribers", json={"user_ids": users[:10]}, headers=h)
    assert r.json() == {"added": 0}
    r = await api.client.request(
        "DELETE", f"/v1/topics/{topic}/subscribers", json={"user_ids": users[:5]}, headers=h
    )
    assert r.json() == {"removed": 5}
    seen, after = [], ""
    while True:
        page = (
            await api.client.get(
                f"/v1/topics/{topic}/subscribers", params={"after": after, "limit": 100}, headers=h
            )
        ).json()
        seen += page["user_ids"]
        if page["next_cursor"] is None:
            break
        after = page["next_cursor"]
    assert seen == users[5:]
    bad_cursor: dict[str, str | int] = {"after": "u0\x00", "limit": 10}  # a NUL would reach SQL: 422
    r = await api.client.get(f"/v1/topics/{topic}/subscribers", params=bad_cursor, headers=h)
    assert r.status_code == 422 and "after" in r.text, r.text
    other = await key(api, Scope.TOPICS_WRITE, tenant="globex")
    assert (await api.client.get(f"/v1/topics/{topic}", headers=other)).status_code == 404
    too_many = {"user_ids": [f"x{i}" for i in range(1001)]}
    assert (
        await api.client.post(f"/v1/topics/{topic}/subscribers", json=too_many, headers=h)
    ).status_code == 422
    r = await api.client.post(
        "/v1/events", json={"type": "marketing.weekly", "topic": topic}, headers=await key(api, Scope.EMIT)
    )
    assert r.status_code == 202


async def test_batch_answers_per_row(api: RunningApi) -> None:
    h, p = await key(api, Scope.RECIPIENTS_WRITE, tenant="acme"), rid()
    taken = rid()  # globex's id: in acme, the same id is another recipient
    assert (
        await api.client.put(
            f"/v1/recipients/{taken}",
            json={},
            headers=await key(api, Scope.RECIPIENTS_WRITE, tenant="globex"),
        )
    ).status_code == 201
    rows = [{"id": f"{p}-{i}", "email": f"u{i}@example.com"} for i in range(998)]
    rows.append({"id": f"{p}-bad", "timezone": "GMT+1"})
    rows.append({"id": taken})
    r = await api.client.post("/v1/recipients:batch", json={"recipients": rows}, headers=h)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results].count("created") == 999
    assert results[998]["status"] == "invalid" and results[998]["errors"][0]["loc"] == "timezone"
    assert results[999] == {"index": 999, "id": taken, "status": "created", "errors": None}
    again = await api.client.post("/v1/recipients:batch", json={"recipients": rows[:2]}, headers=h)
    assert [x["status"] for x in again.json()["results"]] == ["updated", "updated"]
    too_many = {"recipients": [{"id": f"x{i}"} for i in range(1001)]}
    assert (await api.client.post("/v1/recipients:batch", json=too_many, headers=h)).status_code == 422


async def test_an_id_whose_send_is_not_acked_is_never_a_duplicate(api: RunningApi) -> None:
    admin = api.ctx.admin
    assert admin is not None
    h, ident = await key(api, Scope.EMIT), rid()
    # Another request is sending this id (its pending mark): the outcome is unknown, so 503 and
    # Retry-After, never "duplicate"; the batch's other, new id is released, nothing is sent.
    busy, other = f"ev-{uuid.uuid4().hex[:8]}", f"ev-{uuid.uuid4().hex[:8]}"
    busy_key = f"{admin.settings.event_dedupe_prefix}:{busy}"
    await admin.redis.set(busy_key, b"p:0123456789abcdef", px=59_500)
    batch = [{"type": "payment_receipt", "user_id": ident, "event_id": i} for i in (other, busy)]
    r = await api.client.post("/v1/events", json=batch, headers=h)
    # Retry-After: when that mark expires at the latest (its PTTL rounded up), not a fixed 2 s
    assert r.status_code == 503 and r.headers["retry-after"] == "60", r.text
    assert r.json()["type"].endswith("event-in-flight") and busy in r.json()["detail"]
    assert not await admin.redis.exists(f"{admin.settings.event_dedupe_prefix}:{other}")
    # That send failed and released its mark: the retry sends, and only then is it a duplicate.
    await admin.redis.delete(busy_key)
    r = await api.client.post("/v1/events", json=batch, headers=h)
    assert [e["duplicate"] for e in r.json()["events"]] == [False, False]
    assert await admin.redis.get(busy_key) == b"1"
    assert 0 < await admin.redis.ttl(busy_key) <= admin.settings.event_dedupe_ttl_s
    r = await api.client.post("/v1/events", json=batch, headers=h)
    assert [e["duplicate"] for e in r.json()["events"]] == [True, True]
    records = await wait_for_records(api.settings, api.ctx.topics.events, 2)
    assert len([x for x in records if x.key == ident.encode()]) == 2


async def test_the_same_id_twice_in_a_batch_is_sent_once(api: RunningApi) -> None:
    # The request's second SET NX met its own pending mark: every try was 503 event-in-flight.
    h, ident, event_id = await key(api, Scope.EMIT), rid(), f"ev-{uuid.uuid4().hex[:8]}"
    one = {"type": "payment_receipt", "user_id": ident, "event_id": event_id}
    batch = [one, {**one, "event_id": f"{event_id}-b"}, one]
    r = await api.client.post("/v1/events", json=batch, headers=h)
    assert r.status_code == 202, r.text
    assert [e["duplicate"] for e in r.json()["events"]] == [False, False, True]
    r = await api.client.post("/v1/events", json=batch, headers=h)
    assert [e["duplicate"] for e in r.json()["events"]] == [True, True, True]
    records = await wait_for_records(api.settings, api.ctx.topics.events, 2)
    assert len([x for x in records if x.key == ident.encode()]) == 2


async def test_a_send_the_broker_refuses_leaves_no_mark(api: RunningApi) -> None:
    admin = api.ctx.admin
    assert admin is not None
    h, event_id = await key(api, Scope.EMIT), f"ev-{uuid.uuid4().hex[:8]}"
    # Larger than the producer's max_request_size (4 MiB): a real KafkaError from the producer.
    big = {"type": "payment_receipt", "user_id": rid(), "event_id": event_id, "data": {"x": "y" * 4_300_000}}
    r = await api.client.post("/v1/events", json=big, headers=h)
    assert r.status_code == 503, r.text
    assert not await admin.redis.exists(f"{admin.settings.event_dedupe_prefix}:{event_id}")
    small = {**big, "data": {}}
    r = await api.client.post("/v1/events", json=small, headers=h)
    assert r.json() == {"events": [{"event_id": event_id, "duplicate": False}]}


async def test_a_cancelled_send_releases_its_marks(api: RunningApi) -> None:
    # A request cancelled mid-send (shutdown, a client gone under a server that cancels) is not
    # a KafkaError: its pending marks must go too, or every retry would wait for them to expire.
    admin = api.ctx.admin
    assert admin is not None
    ids = EventIds(admin.redis, prefix=admin.settings.event_dedupe_prefix, ttl_s=60, pending_ttl_s=60)
    event = DomainEvent(
        event_id=f"ev-{uuid.uuid4().hex[:8]}", type="payment_receipt", occurred_at=utcnow(), user_id=rid()
    )
    assert (await ids.claim([(None, event.event_id)])).states == [Claim.NEW]
    task = asyncio.create_task(_send(api.ctx, ids, [event], in_flight=[]))
    await asyncio.sleep(0)  # the task is inside the produce, the broker has not acked
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await admin.redis.exists(f"{admin.settings.event_dedupe_prefix}:{event.event_id}")


async def test_send_at_more_than_366_days_ahead_is_refused(api: RunningApi) -> None:
    h = await key(api, Scope.EMIT)
    far = (datetime.now(UTC) + timedelta(days=400)).isoformat()
    r = await api.client.post(
        "/v1/events", json={"type": "payment_receipt", "user_id": rid(), "send_at": far}, headers=h
    )
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "body.send_at", r.text
    near = (datetime.now(UTC) + timedelta(days=300)).isoformat()
    r = await api.client.post(
        "/v1/events", json={"type": "payment_receipt", "user_id": rid(), "send_at": near}, headers=h
    )
    assert r.status_code == 202, r.text
