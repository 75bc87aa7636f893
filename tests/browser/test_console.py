"""The operators' console in a real browser (Debian's Chromium driven by Playwright), as an operator
uses it: log in with a one-time link, search a user, open the timeline of an escalated notification,
replay a dead letter and see it processed, disable a webhook endpoint. The ledger runs as its own
OS process (as in production and `herald dev`); the API with its console runs in the test's loop.
Each state is screenshotted under ``.herald-test-output/console/``."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import redis.asyncio as redis_asyncio
from aiokafka import AIOKafkaProducer

from channels.webhook.endpoints_pg import EndpointStore
from consumers.channel.breaker import BreakerState, Circuit
from consumers.devstack import DevStack
from consumers.devstack.processes import free_port, spawn_herald
from consumers.infra.settings import HeraldSettings
from consumers.runtime.handling import DeadLetter, dead_letter_headers
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import Topics, dlq
from schemas.codec import default_codec
from schemas.models import Channel, OutcomeStatus
from tests.browser.conftest import OUTPUT
from tests.conftest import make_settings
from tests.console_helpers import RunningConsole, console_settings, running_console
from tests.ledger_helpers import message, outcome, receipt
from tests.waiting import until

pw = pytest.importorskip("playwright.async_api")

OUT = OUTPUT / "console"
OUT.mkdir(parents=True, exist_ok=True)
USER = f"ops-{uuid.uuid4().hex[:8]}"
CODEC = default_codec()


@pytest.fixture(scope="module")
def console_pipeline_settings(stack: DevStack) -> HeraldSettings:
    return console_settings(make_settings(stack))


@pytest.fixture(scope="module")
def ledger(
    stack: DevStack, console_pipeline_settings: HeraldSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    s = console_pipeline_settings
    asyncio.run(create_topics(s, Topics(s.topic_prefix).all()))
    log = tmp_path_factory.mktemp("console-logs") / "ledger.log"
    env = {
        **os.environ,
        **stack.env(),
        "HERALD_TOPIC_PREFIX": s.topic_prefix,
        "HERALD_PARTITIONS": "2",
        "HERALD_METRICS_PORT": str(free_port()),
        "HERALD_RUNTIME__SESSION_TIMEOUT_MS": "6000",
        "HERALD_RUNTIME__HEARTBEAT_INTERVAL_MS": "500",
        "HERALD_RUNTIME__POLL_TIMEOUT_MS": "50",
    }
    proc = spawn_herald(["ledger"], env=env, log=log)
    try:
        yield log
    finally:
        proc.terminate()
        proc.wait(30)


@pytest_asyncio.fixture(loop_scope="session")
async def console(ledger: Path, console_pipeline_settings: HeraldSettings) -> AsyncIterator[RunningConsole]:
    async with running_console(console_pipeline_settings) as running:
        yield running


async def _produce(
    settings: HeraldSettings, topic: str, records: list[tuple[bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        await asyncio.gather(
            *[await producer.send(topic, v, key=USER.encode(), headers=h) for v, h in records]
        )
    finally:
        await producer.stop()


async def _logged_in(browser: Any, console: RunningConsole) -> tuple[Any, Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 860}, timezone_id="UTC")
    page = await context.new_page()
    await page.goto(f"{console.url}/console/login?link={await console.link('ana')}")
    await page.screenshot(path=OUT / "0-login.png")
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{console.url}/console/")
    return context, page


async def test_search_a_user_and_read_an_escalated_notifications_timeline(
    browser: Any, console: RunningConsole, pg_pool: asyncpg.Pool
) -> None:
    s = console.settings
    started = datetime.now(UTC) - timedelta(minutes=6)
    push = message(f"ev-{USER}", USER, Channel.PUSH, at=started)
    email = message(f"ev-{USER}", USER, Channel.EMAIL, at=started)
    email.escalated_from = push.idempotency_key
    history = [
        outcome(
            push, OutcomeStatus.SENT, after_s=0.4, provider="fcm", provider_message_id="projects/x/messages/1"
        ),
        outcome(push, OutcomeStatus.ESCALATED, after_s=300.5, reason="no_receipt"),
        outcome(email, OutcomeStatus.FAILED_RETRYABLE, after_s=301, provider="ses", error_code="Throttling"),
        outcome(
            message(f"ev-{USER}", USER, Channel.EMAIL, at=started, attempt=2),
            OutcomeStatus.SENT,
            after_s=311,
            provider="ses",
        ),
    ]
    sms = message(f"ev-{USER}", USER, Channel.SMS, at=started)
    history.insert(0, outcome(sms, OutcomeStatus.SUPPRESSED, after_s=0.1, reason="preference"))
    await _produce(s, Topics(s.topic_prefix).outcomes, [(CODEC.encode(o), []) for o in history])
    await _produce(s, Topics(s.topic_prefix).receipts, [(CODEC.encode(receipt(email, after_s=330)), [])])

    async def sunk() -> bool:
        n = await pg_pool.fetchval("SELECT count(*) FROM herald_activity WHERE user_id = $1", USER)
        return bool(n == 6)

    await until(sunk, what="the ledger sank the notification's 6 rows", timeout=60, interval=0.2)

    context, page = await _logged_in(browser, console)
    await page.get_by_label("User id").fill(USER)
    await page.get_by_role("button", name="Search").click()
    link = page.get_by_role("link", name=push.notification_id)
    await link.wait_for()
    await page.screenshot(path=OUT / "1-search.png", full_page=True)
    await link.click()
    await page.locator("ol.timeline").wait_for()
    stages = await page.locator("ol.timeline li").evaluate_all("els => els.map(e => e.dataset.stage)")
    assert stages == ["event", "decision", "attempt", "escalation", "attempt", "attempt", "receipt"]
    text = await page.locator("ol.timeline").inner_text()
    for expected in (
        "preference",
        "fcm",
        "no_receipt",
        "Throttling",
        "+5m 0s",
        "+5m 30s",
        "receipt: delivered",
    ):
        assert expected in text, expected
    await page.screenshot(path=OUT / "2-timeline.png", full_page=True)
    await context.close()


async def test_replay_a_dead_letter_and_see_it_processed(
    browser: Any, console: RunningConsole, pg_pool: asyncpg.Pool
) -> None:
    s = console.settings
    outcomes = Topics(s.topic_prefix).outcomes
    lost = message(f"ev-dl-{USER}", USER, Channel.PUSH)
    value = CODEC.encode(outcome(lost, OutcomeStatus.SENT, provider="fcm"))
    reason = "database_unavailable"
    headers = dead_letter_headers(
        DeadLetter(reason, "DatabaseUnavailable", "PostgreSQL was down"), outcomes, 0, 9, "g"
    )
    await _produce(s, dlq(outcomes), [(value, headers)])

    async def recorded() -> bool:
        n = await pg_pool.fetchval(
            "SELECT count(*) FROM herald_activity WHERE kind = 'dead_letter' AND topic = $1 AND user_id = $2",
            dlq(outcomes),
            USER,
        )
        return bool(n)

    await until(recorded, what="the ledger recorded the dead letter", timeout=60, interval=0.2)
    context, page = await _logged_in(browser, console)
    await page.get_by_role("link", name="Dead letters").click()
    row = page.locator("table.dlq tr", has_text=dlq(outcomes))
    await row.wait_for()
    assert reason in await row.inner_text()
    await row.get_by_role("link", name=reason).click()
    await page.get_by_role("link", name="0:0").or_(page.get_by_role("link", name="1:0")).first.click()
    await page.locator("pre.body").wait_for()
    assert (
        "DeliveryOutcome" in await page.content()
        and lost.notification_id in await page.locator("pre.body").inner_text()
    )
    await page.screenshot(path=OUT / "3-dead-letter.png", full_page=True)
    await page.get_by_role("button", name=f"Replay to {outcomes}").click()
    await page.locator(".flash").wait_for()
    assert "replayed 1 record(s)" in await page.locator(".flash").inner_text()
    assert "link:ana" in await page.locator("table.audit").inner_text()
    await page.screenshot(path=OUT / "4-dead-letters-after-replay.png", full_page=True)

    async def processed() -> bool:  # back on outcomes, the ledger sinks it as the outcome it is
        n = await pg_pool.fetchval(
            "SELECT count(*) FROM herald_activity WHERE kind = 'outcome' AND notification_id = $1",
            lost.notification_id,
        )
        return bool(n)

    await until(processed, what="the replayed outcome reached the store", timeout=60, interval=0.2)
    await page.goto(f"{console.url}/console/n/{lost.notification_id}")
    assert await page.locator("ol.timeline li[data-stage='attempt']").count() == 1
    await context.close()


async def test_disable_an_endpoint(browser: Any, console: RunningConsole, pg_pool: asyncpg.Pool) -> None:
    store = EndpointStore(pg_pool)
    ep = await store.add(
        USER, "https://hooks.example.com/herald", now=datetime.now(UTC), description="billing"
    )
    context, page = await _logged_in(browser, console)
    await page.get_by_role("link", name="Endpoints").click()
    row = page.locator(f"tr[data-endpoint='{ep.endpoint_id}']")
    assert "enabled" in await row.locator(".state").inner_text()
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await row.get_by_role("button", name="Disable").click()
    await page.locator(".flash").wait_for()
    assert "disabled" in await row.locator(".state").inner_text()
    await page.screenshot(path=OUT / "5-endpoints.png", full_page=True)
    stored = await store.get(ep.endpoint_id)
    assert stored is not None and stored.disabled and stored.disabled_reason == "manual (link:ana)"
    await row.get_by_role("button", name="Enable").click()
    await page.locator(".flash").wait_for()
    stored = await store.get(ep.endpoint_id)
    assert stored is not None and not stored.disabled
    await page.get_by_role("link", name="Live").click()
    await page.locator("#lag").wait_for()
    await page.wait_for_timeout(300)
    await page.screenshot(path=OUT / "6-live.png", full_page=True)
    await context.close()


async def test_providers_show_circuit_state(browser: Any, console: RunningConsole, stack: DevStack) -> None:
    prefix = console.settings.topic_prefix
    client = redis_asyncio.Redis.from_url(stack.redis_url)
    try:
        opened = BreakerState(Circuit.OPEN, since=datetime.now(UTC).timestamp() - 7, consecutive=5)
        await client.set(f"{prefix}:breaker:email:ses", opened.to_json(), ex=600)
        context, page = await _logged_in(browser, console)
        await page.get_by_role("link", name="Providers").click()
        row = page.locator("tr[data-provider='email:ses']")
        await row.wait_for()
        assert "open" in await row.inner_text() and "5" in await row.inner_text()
        await page.screenshot(path=OUT / "7-providers.png", full_page=True)
        await context.close()
    finally:
        await client.delete(f"{prefix}:breaker:email:ses")
        await client.aclose()
