"""The SSRF guard end to end: refused destinations never see a byte; the allowed path connects to
the address that was checked while the Host header keeps the endpoint's name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence

import asyncpg
import pytest
import pytest_asyncio

from channels.webhook.ssrf import Resolver
from tests.fakes.webhook_receiver import WebhookReceiver, running_receiver
from tests.integration.webhook_helpers import adapter, endpoint, webhook_message


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with running_receiver() as r:
        yield r


def _fixed(answers: Mapping[str, Sequence[str]], calls: list[str]) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return answers[host]

    return resolve


@pytest.mark.parametrize(
    ("url", "allow", "code"),
    [
        ("http://127.0.0.1:{port}/x", (), "loopback"),  # the receiver itself, not allow-listed
        ("http://localhost:{port}/x", (), "loopback"),  # a name resolving to loopback (real resolver)
        ("http://[::1]:{port}/x", ("127.0.0.1",), "loopback"),  # allowing the v4 does not allow ::1
        ("http://[::ffff:127.0.0.1]:{port}/x", ("127.0.0.1",), "ipv4_mapped"),
        ("http://169.254.169.254/latest/meta-data/", ("169.254.0.0/16",), "metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", (), "metadata"),
        ("http://10.0.0.1/x", (), "private"),
        ("http://100.64.1.1/x", (), "cgnat"),
        ("http://0.0.0.0:{port}/x", (), "unspecified"),
        ("http://224.0.0.1/x", (), "multicast"),
        ("https://127.0.0.1:{port}/x", ("127.0.0.2",), "loopback"),
    ],
)
async def test_refused_destinations(
    pg_pool: asyncpg.Pool, receiver: WebhookReceiver, url: str, allow: tuple[str, ...], code: str
) -> None:
    before = len(receiver.deliveries), receiver.connections
    ep = await endpoint(pg_pool, receiver, url=url.format(port=receiver.port))
    a = adapter(pg_pool, allow_hosts=allow)
    try:
        msg = webhook_message(ep.endpoint_id)
        outcome = await a.deliver(msg, a.render(msg), idempotency_key=msg.idempotency_key)
    finally:
        await a.close()
    assert (outcome.status, outcome.reason, outcome.provider_code) == (
        "failed_permanent",
        "blocked_destination",
        code,
    )
    assert (len(receiver.deliveries), receiver.connections) == before  # not even a TCP connection


async def test_https_only_refuses_plain_http(pg_pool: asyncpg.Pool, receiver: WebhookReceiver) -> None:
    ep = await endpoint(pg_pool, receiver)
    a = adapter(pg_pool, https_only=True)
    try:
        msg = webhook_message(ep.endpoint_id)
        outcome = await a.deliver(msg, a.render(msg), idempotency_key=msg.idempotency_key)
    finally:
        await a.close()
    assert (outcome.status, outcome.provider_code) == ("failed_permanent", "https_only")
    assert receiver.for_path(f"/hooks/{ep.endpoint_id}") == []


async def test_name_resolving_to_a_refused_address(pg_pool: asyncpg.Pool, receiver: WebhookReceiver) -> None:
    calls: list[str] = []
    ep = await endpoint(pg_pool, receiver, url=f"http://hooks.customer.test:{receiver.port}/x")
    answers = {"hooks.customer.test": ["93.184.216.34", "169.254.169.254"]}
    a = adapter(pg_pool, resolver=_fixed(answers, calls))
    try:
        msg = webhook_message(ep.endpoint_id)
        outcome = await a.deliver(msg, a.render(msg), idempotency_key=msg.idempotency_key)
    finally:
        await a.close()
    assert (outcome.reason, outcome.provider_code) == ("blocked_destination", "metadata")
    assert calls == ["hooks.customer.test"]


async def test_connects_to_the_checked_address_with_the_real_host_header(
    pg_pool: asyncpg.Pool, receiver: WebhookReceiver
) -> None:
    """A rebinding DNS server answers 127.0.0.1 (allow-listed) first and 10.0.0.1 afterwards: the
    name is resolved once per connection and the socket goes to the answer that was checked."""
    calls: list[str] = []
    answers = iter([["127.0.0.1"], ["10.0.0.1"], ["10.0.0.1"]])

    async def rebinding(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        return next(answers)

    ep = await endpoint(pg_pool, receiver)
    ep_url = f"http://hooks.customer.test:{receiver.port}/hooks/{ep.endpoint_id}"
    await pg_pool.execute(
        "UPDATE herald_webhook_endpoints SET url = $2 WHERE endpoint_id = $1", ep.endpoint_id, ep_url
    )
    a = adapter(pg_pool, resolver=rebinding)
    try:
        first, second = webhook_message(ep.endpoint_id), webhook_message(ep.endpoint_id)
        sent = await a.deliver(first, a.render(first), idempotency_key=first.idempotency_key)
        assert sent.status == "sent"
        # the pooled connection (to the checked 127.0.0.1) is reused: no new lookup, no rebinding
        again = await a.deliver(second, a.render(second), idempotency_key=second.idempotency_key)
        assert again.status == "sent"
    finally:
        await a.close()
    deliveries = receiver.for_path(f"/hooks/{ep.endpoint_id}")
    assert [d.headers["host"] for d in deliveries] == [f"hooks.customer.test:{receiver.port}"] * 2
    assert calls == ["hooks.customer.test"]
    # a fresh client must resolve again and now gets the private answer: refused, never connected
    b = adapter(pg_pool, resolver=rebinding)
    try:
        third = webhook_message(ep.endpoint_id)
        refused = await b.deliver(third, b.render(third), idempotency_key=third.idempotency_key)
    finally:
        await b.close()
    assert (refused.reason, refused.provider_code) == ("blocked_destination", "private")
    assert len(receiver.for_path(f"/hooks/{ep.endpoint_id}")) == 2


async def test_dns_failure_is_retryable(pg_pool: asyncpg.Pool, receiver: WebhookReceiver) -> None:
    async def nxdomain(host: str, port: int) -> Sequence[str]:
        raise OSError(-2, "Name or service not known")

    ep = await endpoint(pg_pool, receiver, url="https://no-such-host.test/hook")
    a = adapter(pg_pool, resolver=nxdomain)
    try:
        msg = webhook_message(ep.endpoint_id)
        outcome = await a.deliver(msg, a.render(msg), idempotency_key=msg.idempotency_key)
    finally:
        await a.close()
    assert (outcome.status, outcome.reason) == ("failed_retryable", "connection_error")
