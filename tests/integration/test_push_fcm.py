"""The push adapter against the local FCM fake (real HTTP, real JWT checks) and real PostgreSQL tokens."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from channels.base import Content, Outcome
from channels.push.devices_pg import DeviceToken, PgDeviceTokens
from channels.push.fcm import FcmAdapter, make_client
from channels.push.fcm_auth import FcmAuth
from consumers.channel.builders.push import build
from consumers.devstack import DevStack
from consumers.devstack.fcm_fake import FcmFake, make_service_account
from consumers.infra.resources import Resources
from consumers.infra.settings import PushSettings
from schemas.models import Channel, ChannelMessage, Lane, Tier
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def fcm() -> Iterator[FcmFake]:
    with FcmFake(project_id="herald-test") as fake:
        yield fake


@pytest.fixture(autouse=True)
def _clean(fcm: FcmFake) -> None:
    fcm.reset()
    fcm.state.token_delay_s = 0.0


@pytest_asyncio.fixture(loop_scope="session")
async def devices(pg_pool: asyncpg.Pool) -> PgDeviceTokens:
    return PgDeviceTokens(pg_pool)


@pytest_asyncio.fixture(loop_scope="session")
async def adapter(fcm: FcmFake, devices: PgDeviceTokens) -> AsyncIterator[FcmAdapter]:
    ad = FcmAdapter(
        client=make_client(fcm.base_url),
        auth=FcmAuth(fcm.service_account()),
        devices=devices,
        project_id=fcm.project_id,
    )
    yield ad
    await ad.close()


def message(user: str, tier: Tier = Tier.HIGH, payload: dict[str, object] | None = None) -> ChannelMessage:
    return ChannelMessage(
        notification_id=str(uuid.uuid4()),
        event_id=str(uuid.uuid4()),
        event_type="payment_receipt",
        user_id=user,
        channel=Channel.PUSH,
        lane=Lane.PRIORITY,
        tier=tier,
        category="payments",
        recipient=user,
        template="payment_receipt",
        locale="en",
        idempotency_key="msg_" + uuid.uuid4().hex,
        occurred_at=datetime.now(UTC),
        payload=json.dumps(payload or {"amount": "12.50", "currency": "EUR"}),
    )


async def user_with(devices: PgDeviceTokens, *tokens: str) -> str:
    user = f"u-{uuid.uuid4().hex[:10]}"
    for i, token in enumerate(tokens):
        await devices.register(user, token, "ios" if i % 2 else "android")
    return user


def tok(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex}"


async def send(adapter: FcmAdapter, m: ChannelMessage, body: str = "12.50 EUR at Acme") -> Outcome:
    return await adapter.deliver(
        m, Content(title="Payment received", text=body), idempotency_key=m.idempotency_key
    )


async def test_one_message_per_device(adapter: FcmAdapter, devices: PgDeviceTokens, fcm: FcmFake) -> None:
    a, b = tok("a"), tok("b")
    user = await user_with(devices, a, b)
    m = message(user)
    outcome = await send(adapter, m)
    assert outcome.status == "sent" and outcome.provider == "fcm"
    assert outcome.provider_message_id and outcome.provider_message_id.startswith(
        "projects/herald-test/messages/"
    )
    got = fcm.messages()
    assert sorted(x["message"]["token"] for x in got) == sorted([a, b])
    sent = got[0]["message"]
    assert sent["notification"] == {"title": "Payment received", "body": "12.50 EUR at Acme"}
    assert sent["data"]["notification_id"] == m.notification_id and sent["data"]["amount"] == "12.50"
    assert sent["android"]["priority"] == "HIGH" and sent["apns"]["headers"]["apns-priority"] == "10"


async def test_medium_tier_is_not_urgent(adapter: FcmAdapter, devices: PgDeviceTokens, fcm: FcmFake) -> None:
    user = await user_with(devices, tok("a"))
    assert (await send(adapter, message(user, Tier.MEDIUM))).ok
    sent = fcm.messages()[0]["message"]
    assert sent["android"]["priority"] == "NORMAL" and sent["apns"]["headers"]["apns-priority"] == "5"


async def test_no_tokens_is_no_device(adapter: FcmAdapter, fcm: FcmFake) -> None:
    outcome = await send(adapter, message(f"u-{uuid.uuid4().hex}"))
    assert (outcome.status, outcome.reason) == ("failed_permanent", "no_device")
    assert fcm.messages() == []


@pytest.mark.parametrize("code", ["UNREGISTERED", "INVALID_ARGUMENT"])
async def test_dead_token_is_deleted_and_outcome_says_so(
    adapter: FcmAdapter, devices: PgDeviceTokens, fcm: FcmFake, code: str
) -> None:
    dead, alive = tok("dead"), tok("alive")
    user = await user_with(devices, dead, alive)
    fcm.fault(code, token=dead)
    outcome = await send(adapter, message(user))
    assert outcome.status == "sent"  # the other device got it
    assert "1 dead token deleted" in (outcome.detail or "") and code in (outcome.detail or "")
    assert [t.token for t in await devices.tokens(user)] == [alive]

    # The last device dies too: a permanent failure naming the code, then no_device.
    fcm.fault(code, token=alive)
    outcome = await send(adapter, message(user))
    assert (outcome.status, outcome.provider_code) == ("failed_permanent", code)
    assert outcome.reason == ("unregistered" if code == "UNREGISTERED" else "invalid_token")
    assert "1 dead token deleted" in (outcome.detail or "")
    assert await devices.tokens(user) == []
    assert (await send(adapter, message(user))).reason == "no_device"


class _DeletesOnAClosedPool:
    """The real token store, whose delete goes through a PostgreSQL pool that has been closed: the
    database goes away between the lookup and the delete."""

    def __init__(self, reads: PgDeviceTokens, deletes: PgDeviceTokens) -> None:
        self.reads, self.deletes = reads, deletes

    async def tokens(self, user_id: str, tenant: str = "") -> list[DeviceToken]:
        return await self.reads.tokens(user_id, tenant)

    async def delete(self, user_id: str, tokens: Sequence[str], tenant: str = "") -> int:
        return await self.deletes.delete(user_id, tokens, tenant)


async def test_a_failed_token_delete_keeps_the_push_sent(
    fcm: FcmFake, devices: PgDeviceTokens, stack: DevStack
) -> None:
    dead, alive = tok("dead"), tok("alive")
    user = await user_with(devices, dead, alive)
    closed = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=1)
    await closed.close()
    adapter = FcmAdapter(
        client=make_client(fcm.base_url),
        auth=FcmAuth(fcm.service_account()),
        devices=_DeletesOnAClosedPool(devices, PgDeviceTokens(closed)),
        project_id=fcm.project_id,
    )
    try:
        fcm.fault("UNREGISTERED", token=dead)
        outcome = await send(adapter, message(user))
    finally:
        await adapter.close()
    # Accepted by the live device: a retry would push it again, so the storage error is not one.
    assert outcome.status == "sent", outcome
    assert "1 dead token not deleted" in (outcome.detail or "")
    assert {t.token for t in await devices.tokens(user)} == {dead, alive}  # found dead again next time


async def test_sender_id_mismatch_is_permanent_and_keeps_the_token(
    adapter: FcmAdapter, devices: PgDeviceTokens, fcm: FcmFake
) -> None:
    token = tok("t")
    user = await user_with(devices, token)
    fcm.fault("SENDER_ID_MISMATCH", token=token)
    outcome = await send(adapter, message(user))
    assert (outcome.status, outcome.reason, outcome.provider_code) == (
        "failed_permanent",
        "sender_id_mismatch",
        "SENDER_ID_MISMATCH",
    )
    assert [t.token for t in await devices.tokens(user)] == [token]


async def test_a_third_party_auth_error_is_our_configuration(
    adapter: FcmAdapter, devices: PgDeviceTokens, fcm: FcmFake
) -> None:
    # FCM's 401 for an invalid or missing APNs certificate / web push key on the project: retried
    # as provider_config, the token kept, our own access token not refreshed for it.
    ios = tok("ios")
    user = await user_with(devices, ios)
    assert (await send(adapter, message(user))).ok  # an access token is cached
    before = fcm.state.token_requests
    fcm.fault("THIRD_PARTY_AUTH_ERROR", token=ios, count=2)
    outcome = await send(adapter, message(user))
    assert (outcome.status, outcome.reason, outcome.provider_code) == (
        "failed_retryable",
        "provider_config",
        "THIRD_PARTY_AUTH_ERROR",
    )
    assert fcm.state.token_requests == before
    android = tok("android")
    await devices.register(user, android, "android")
    outcome = await send(adapter, message(user))
    assert outcome.ok and "1/2 devices accepted" in (outcome.detail or "")  # the other device has it
    assert {t.token for t in await devices.tokens(user)} == {ios, android}


@pytest.mark.parametrize(
    ("code", "reason", "retry_after"),
    [
        ("QUOTA_EXCEEDED", "quota_exceeded", 30),
        ("UNAVAILABLE", "unavailable", 7),
        ("INTERNAL", "internal", None),
    ],
)
async def test_retryable_errors_honour_retry_after(  # noqa: PLR0917 - parametrized
    adapter: FcmAdapter,
    devices: PgDeviceTokens,
    fcm: FcmFake,
    code: str,
    reason: str,
    retry_after: int | None,
) -> None:
    token = tok("t")
    user = await user_with(devices, token)
    fcm.fault(code, token=token, retry_after=retry_after)
    outcome = await send(adapter, message(user))
    assert (outcome.status, outcome.reason, outcome.provider_code) == ("failed_retryable", reason, code)
    assert outcome.retry_after == (float(retry_after) if retry_after else None)
    assert [t.token for t in await devices.tokens(user)] == [token]
    assert (await send(adapter, message(user))).ok  # the fault was for one send


async def test_expired_access_token_is_refreshed_once(fcm: FcmFake, devices: PgDeviceTokens) -> None:
    auth = FcmAuth(fcm.service_account())
    adapter = FcmAdapter(
        client=make_client(fcm.base_url), auth=auth, devices=devices, project_id=fcm.project_id
    )
    try:
        user = await user_with(devices, tok("t"))
        assert (await send(adapter, message(user))).ok and auth.refreshes == 1
        fcm.fault("EXPIRED_TOKEN")  # the next send gets 401 and every issued token is dead
        outcome = await send(adapter, message(user))
        assert outcome.ok and auth.refreshes == 2
        assert len(fcm.messages()) == 2
    finally:
        await adapter.close()


async def test_oversized_payload_is_refused_and_long_body_truncated(
    adapter: FcmAdapter, devices: PgDeviceTokens, fcm: FcmFake
) -> None:
    user = await user_with(devices, tok("t"))
    outcome = await send(adapter, message(user, payload={"blob": "x" * 5000}))
    assert (outcome.status, outcome.reason) == ("failed_permanent", "payload_too_large")
    assert fcm.messages() == []
    outcome = await send(adapter, message(user), body="long " * 2000)
    assert outcome.ok and "truncated" in (outcome.detail or "")
    assert fcm.messages()[0]["message"]["notification"]["body"].endswith(
        "…"
    )  # and the fake's 4 KB check passed


async def test_fake_rejects_a_forged_service_account(fcm: FcmFake, devices: PgDeviceTokens) -> None:
    trusted = fcm.service_account()
    forged = make_service_account(fcm.token_uri, fcm.project_id)
    forged["client_email"] = trusted["client_email"]  # right name, wrong key: the signature fails
    adapter = FcmAdapter(
        client=make_client(fcm.base_url), auth=FcmAuth(forged), devices=devices, project_id=fcm.project_id
    )
    try:
        outcome = await send(adapter, message(await user_with(devices, tok("t"))))
    finally:
        await adapter.close()
    assert (outcome.status, outcome.reason) == ("failed_retryable", "auth_failed")
    assert "Signature verification failed" in (outcome.detail or "")
    assert fcm.messages() == []


async def test_refresh_is_single_flight_and_leaves_the_loop_free(
    fcm: FcmFake, devices: PgDeviceTokens
) -> None:
    fcm.state.token_delay_s = 0.5  # a slow token endpoint
    before = fcm.state.token_requests
    auth = FcmAuth(fcm.service_account())
    adapter = FcmAdapter(
        client=make_client(fcm.base_url), auth=auth, devices=devices, project_id=fcm.project_id
    )
    users = [await user_with(devices, tok("t")) for _ in range(40)]
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:  # how late does a 10 ms sleep wake up while the refresh runs?
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t0 - 0.01)

    tick = asyncio.create_task(ticker())
    try:
        t0 = time.perf_counter()
        outcomes = await asyncio.gather(*(send(adapter, message(u)) for u in users))
        elapsed = time.perf_counter() - t0
    finally:
        done.set()
        await tick
        await adapter.close()
    print(
        f"\n40 concurrent sends, 0.5 s token endpoint: {elapsed:.2f} s, 1 refresh, "
        f"loop lag max {max(lags) * 1000:.1f} ms over {len(lags)} ticks"
    )
    assert all(o.ok for o in outcomes)
    assert auth.refreshes == 1 and fcm.state.token_requests - before == 1
    assert elapsed >= 0.5 and len(lags) >= 20  # the loop kept ticking during the 0.5 s refresh
    assert max(lags) < 0.2, f"event loop blocked for {max(lags):.3f}s"


async def test_builder_from_settings(
    stack: DevStack, fcm: FcmFake, tmp_path: Path, devices: PgDeviceTokens
) -> None:
    sa = tmp_path / "sa.json"
    fcm.service_account(sa)
    settings = make_settings(
        stack, push=PushSettings(service_account_file=sa, fcm_base_url=fcm.base_url, token_uri=fcm.token_uri)
    )
    res = Resources(settings)
    try:
        adapter = await build(res)
        user = await user_with(devices, tok("t"))
        outcome = await adapter.deliver(message(user), Content(title="t", text="b"), idempotency_key="k")
        assert outcome.ok
        await adapter.close()
    finally:
        await res.close()
