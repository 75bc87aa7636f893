"""The web components in a real browser (Debian's Chromium driven by Playwright), as a person uses
them: the demo page of `herald dev` against the real API, with the classifier and the in-app
channel running as their own processes on the dev stack. Each state is screenshotted under
``.herald-test-output/browser/``."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from consumers.devstack import DevStack
from consumers.devstack.processes import free_port, spawn_herald
from consumers.emitter import build_event
from consumers.infra.settings import HeraldSettings
from consumers.runtime.kafka import create_topics
from consumers.runtime.topics import Topics
from schemas.codec import default_codec
from schemas.models import DeliveryOutcome
from tests.api_helpers import RunningApi, api_settings, running_api
from tests.browser.conftest import OUTPUT
from tests.conftest import make_settings
from tests.kafka_helpers import read_all
from tests.waiting import until

pw = pytest.importorskip("playwright.async_api")

OUT = OUTPUT / "browser"
OUT.mkdir(parents=True, exist_ok=True)
USER = f"web-{uuid.uuid4().hex[:8]}"
WARM = f"{USER}-warm-up"
CODEC = default_codec()


@pytest.fixture(scope="module")
def pipeline_settings(stack: DevStack) -> HeraldSettings:
    return make_settings(stack, api=api_settings(demo_user=USER, rate_limit_requests=0))


@pytest.fixture(scope="module")
def pipeline(
    stack: DevStack, pipeline_settings: HeraldSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """The classifier and the in-app channel as OS processes (as in production and `herald dev`)."""
    s = pipeline_settings
    asyncio.run(create_topics(s, Topics(s.topic_prefix).all()))
    logs = tmp_path_factory.mktemp("browser-logs")
    env = {
        **os.environ,
        **stack.env(),
        "HERALD_TOPIC_PREFIX": s.topic_prefix,
        "HERALD_PARTITIONS": "2",
        "HERALD_CLASSIFIER__LOOKUP_CACHE_TTL_S": "0",  # a preference change applies to the next event
        "HERALD_CLASSIFIER__RATE_LIMITS_PER_HOUR": '{"medium": 0}',  # the latency run sends 100 to one user
        "HERALD_CLASSIFIER__RATE_LIMIT_PREFIX": f"t:rl:{s.topic_prefix}",
        "HERALD_RUNTIME__SESSION_TIMEOUT_MS": "6000",
        "HERALD_RUNTIME__HEARTBEAT_INTERVAL_MS": "500",
        "HERALD_RUNTIME__POLL_TIMEOUT_MS": "50",
    }
    procs = [
        spawn_herald(argv, env={**env, "HERALD_METRICS_PORT": str(free_port())}, log=logs / f"{name}.log")
        for name, argv in (
            ("classifier", ["classifier"]),
            ("in-app", ["channel", "--channel", "in_app", "--lane", "priority"]),
        )
    ]
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


@pytest_asyncio.fixture(loop_scope="session")
async def api(pipeline: None, pipeline_settings: HeraldSettings) -> AsyncIterator[RunningApi]:
    async with running_api(pipeline_settings) as running:
        yield running


class Emitter:
    def __init__(self, settings: HeraldSettings) -> None:
        self.settings = settings
        self.topic = Topics(settings.topic_prefix).events
        self.producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")

    async def emit(self, event_type: str = "comment_reply", **data: str) -> str:
        payload = {"author": "Bruno", "post_title": "Roadmap", "excerpt": "Agreed!", **data}
        event = build_event(event_type, user_id=USER, data=payload)
        await self.producer.send_and_wait(self.topic, CODEC.encode(event), key=USER.encode())
        return str(event.event_id)


@pytest_asyncio.fixture(loop_scope="session")
async def emitter(api: RunningApi) -> AsyncIterator[Emitter]:
    e = Emitter(api.settings)
    await e.producer.start()
    try:
        await _warm_up(e, api)
        yield e
    finally:
        await e.producer.stop()


async def _warm_up(e: Emitter, api: RunningApi) -> None:
    """One event through the pipeline first: the processes' consumer groups take seconds to settle."""
    event = build_event("comment_reply", user_id=WARM, data={"author": "W", "post_title": "W", "excerpt": ""})
    await e.producer.send_and_wait(e.topic, CODEC.encode(event), key=WARM.encode())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await api.ctx.pool.fetchval("SELECT count(*) FROM herald_inbox WHERE user_id = $1", WARM):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the pipeline did not deliver a warm-up event within 60 s")


async def _demo(browser: Any, api: RunningApi, locale: str = "en-GB", zone: str = "UTC") -> tuple[Any, Any]:
    context = await browser.new_context(
        locale=locale, timezone_id=zone, viewport={"width": 1000, "height": 700}
    )
    page = await context.new_page()
    await page.goto(f"{api.url}/demo")
    return context, page


def _streaming(api: RunningApi) -> Callable[[], Awaitable[bool]]:
    async def subscribed() -> bool:
        return api.ctx.hub.open_streams(USER) > 0

    return subscribed


async def _badge(page: Any) -> str:
    text: str = await page.locator("herald-inbox .badge").text_content()
    return text


async def _wait_attr(page: Any, value: str, timeout_ms: int = 5000) -> None:
    await page.wait_for_function(
        "v => document.querySelector('herald-inbox').getAttribute('data-unread') === v",
        arg=value,
        timeout=timeout_ms,
    )


async def test_count_live_item_and_read_in_a_second_tab(
    browser: Any, api: RunningApi, emitter: Emitter
) -> None:
    await api.add_rows(USER, 3)
    context, page = await _demo(browser, api)
    await _wait_attr(page, "3")
    assert await _badge(page) == "3"
    await page.screenshot(path=OUT / "1-unread-count.png")
    bell = page.locator("herald-inbox .bell")
    box_before = await bell.bounding_box()

    # A live event: emitted on Kafka, classified, stored by the in-app channel, pushed over SSE.
    await page.evaluate(
        "window.arrived = []; document.addEventListener('herald-notification', e => window.arrived.push([e.detail.title, Date.now()]))"
    )
    sent = time.time()
    await emitter.emit(author="Dora", post_title="Launch")
    await page.wait_for_function("window.arrived.length > 0", timeout=10_000)
    title, at_ms = (await page.evaluate("window.arrived"))[0]
    assert title == "Dora replied to Launch"
    await _wait_attr(page, "4")
    assert await bell.bounding_box() == box_before  # no layout shift when the count changes
    await bell.click()
    item = page.locator("herald-inbox li[data-id]").first
    await item.wait_for()
    assert "Dora replied to Launch" in (await item.text_content() or "")
    await page.screenshot(path=OUT / "2-panel-live-item.png")
    # Emitted on Kafka -> visible in the page. One sample, so a loose bound (a loaded machine can
    # stall one event for a second); test_live_latency_over_100_events holds the p50 < 1 s bar.
    assert at_ms - sent * 1000 < 5000

    # A second tab of the same app sees the count drop when the first marks an item read.
    second = await context.new_page()
    await second.goto(f"{api.url}/demo")
    await _wait_attr(second, "4")
    await page.locator("herald-inbox li[data-unread] [data-action=read]").first.click()
    await _wait_attr(page, "3")
    await _wait_attr(second, "3", timeout_ms=3000)
    await second.screenshot(path=OUT / "3-second-tab-after-read.png")
    # Archive removes the item; mark all read empties the count everywhere.
    before = await page.locator("herald-inbox li[data-id]").count()
    await page.locator("herald-inbox [data-action=archive]").first.click()
    await page.wait_for_function(
        "n => document.querySelector('herald-inbox').shadowRoot.querySelectorAll('li[data-id]').length === n",
        arg=before - 1,
    )
    await page.locator("herald-inbox [data-action=all]").click()
    await _wait_attr(page, "0")
    await _wait_attr(second, "0", timeout_ms=3000)
    assert await page.locator("herald-inbox .badge").is_hidden()
    await page.screenshot(path=OUT / "4-all-read.png")
    await context.close()


async def test_live_latency_over_100_events(browser: Any, api: RunningApi, emitter: Emitter) -> None:
    context, page = await _demo(browser, api)
    await page.wait_for_function("document.querySelector('herald-inbox').hasAttribute('data-unread')")
    await page.evaluate(
        "window.arrived = {}; document.addEventListener('herald-notification', e => window.arrived[e.detail.title] = Date.now())"
    )
    # A notification reaches only streams already open: wait for the page's, not a guessed time.
    await until(_streaming(api), what="the page's live stream subscribed", timeout=15)
    latencies = []
    for i in range(100):
        sent_ms = time.time() * 1000
        await emitter.emit(author=f"L{i}", post_title="Latency")
        title = f"L{i} replied to Latency"
        await page.wait_for_function("t => t in window.arrived", arg=title, timeout=10_000)
        latencies.append(await page.evaluate("t => window.arrived[t]", title) - sent_ms)
    latencies.sort()
    p50, p99 = statistics.median(latencies), latencies[98]
    (OUT / "latency.txt").write_text(f"emit -> visible over 100 events: p50 {p50:.0f} ms, p99 {p99:.0f} ms\n")
    print(f"emit -> visible over 100 events: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {latencies[-1]:.0f} ms")
    assert p50 < 1000, latencies  # the bar: an event arrives live within a second
    await context.close()


async def test_preference_change_suppresses_the_next_event(
    browser: Any, api: RunningApi, emitter: Emitter
) -> None:
    context, page = await _demo(browser, api, locale="pt-PT", zone="Europe/Lisbon")
    # The time-zone picker starts on the browser's zone (quiet hours never set).
    await page.locator("herald-preferences select").wait_for()
    assert await page.locator("herald-preferences select").input_value() == "Europe/Lisbon"
    switch = page.locator("herald-preferences input[data-category=activity][data-channel=in_app]")
    await switch.wait_for()
    assert await switch.is_checked()
    locked = page.locator("herald-preferences input[data-category=security]").first
    assert await locked.is_disabled()
    assert "críticas" in (await page.locator("herald-preferences #lock-security").text_content() or "")
    await page.evaluate("window.saved = 0; document.addEventListener('herald-saved', () => window.saved++)")
    await switch.click()
    await page.wait_for_function("window.saved === 1")
    assert not await switch.is_checked()
    await page.screenshot(path=OUT / "5-preferences-pt.png", full_page=True)
    event_id = await emitter.emit(author="Eve", post_title="Muted")
    outcome = await _outcome_of(api.settings, event_id)
    assert outcome.status.value == "suppressed", outcome
    rows = await api.ctx.pool.fetchval(
        "SELECT count(*) FROM herald_inbox WHERE user_id = $1 AND title LIKE 'Eve%'", USER
    )
    assert rows == 0
    # A failed save rolls the switch back and says why.
    await page.route(
        "**/v1/preferences",
        lambda route: (
            route.fulfill(status=503, body="{}") if route.request.method == "PUT" else route.continue_()
        ),
    )
    await switch.click()
    error = page.locator("herald-preferences .error")
    await error.wait_for()
    assert "guardar" in (await error.text_content() or "")
    assert not await switch.is_checked()
    await page.unroute("**/v1/preferences")
    await switch.click()  # back on, for the other tests
    await page.wait_for_function("window.saved === 2")
    await context.close()


async def test_digest_switch_is_saved_and_survives_a_reload(browser: Any, api: RunningApi) -> None:
    context, page = await _demo(browser, api)
    digest = page.locator("herald-preferences input[name=digest]")
    await digest.wait_for()
    assert await digest.is_checked()  # on by default
    assert await digest.get_attribute("role") == "switch"
    assert "digest" in (await page.locator("herald-preferences .digest").text_content() or "")
    await page.evaluate("window.saved = 0; document.addEventListener('herald-saved', () => window.saved++)")
    await digest.click()
    await page.wait_for_function("window.saved === 1")
    assert (
        await api.ctx.pool.fetchval("SELECT digest FROM herald_recipients WHERE user_id = $1", USER) is False
    )
    await page.screenshot(path=OUT / "6-digest-off.png", full_page=True)
    await page.reload()
    digest = page.locator("herald-preferences input[name=digest]")
    await digest.wait_for()
    await page.wait_for_function(
        "() => { const el = document.querySelector('herald-preferences');"
        " return el.shadowRoot.querySelector('input[name=digest]') !== null; }"
    )
    assert not await digest.is_checked()  # persisted server-side, not in the page
    await page.evaluate("window.saved = 0; document.addEventListener('herald-saved', () => window.saved++)")
    await digest.click()  # back on, for the other tests
    await page.wait_for_function("window.saved === 1")
    await page.reload()
    await page.locator("herald-preferences input[name=digest]").wait_for()
    assert await page.locator("herald-preferences input[name=digest]").is_checked()
    await context.close()


async def _outcome_of(settings: HeraldSettings, event_id: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for rec in await read_all(settings, Topics(settings.topic_prefix).outcomes):
            outcome = CODEC.decode(rec.value, DeliveryOutcome)
            if getattr(outcome, "event_id", None) == event_id:
                return outcome
        await asyncio.sleep(0.3)
    raise AssertionError(f"no outcome for {event_id}")


async def test_keyboard_only(browser: Any, api: RunningApi) -> None:
    await api.add_rows(USER, 2)
    context = await browser.new_context(locale="en-GB", viewport={"width": 1000, "height": 700})
    page = await context.new_page()
    # The first page of the inbox is held until the panel is open, so the
    # slow-network order is the one tested every time, not by chance.
    first_page: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def hold(route: Any) -> None:  # Playwright wants a Python function, not a bound builtin
        first_page.set_result(route)

    await page.route("**/v1/inbox?*", hold)
    await page.goto(f"{api.url}/demo")
    await page.wait_for_function("document.querySelector('herald-inbox').hasAttribute('data-unread')")
    await page.keyboard.press("Tab")
    active = "() => document.activeElement?.shadowRoot?.activeElement?.className ?? document.activeElement?.tagName"
    assert await page.evaluate(active) == "bell"
    assert "unread" in (await page.locator("herald-inbox .bell").get_attribute("aria-label") or "")
    await page.keyboard.press("Enter")
    assert await page.locator("herald-inbox .bell").get_attribute("aria-expanded") == "true"
    focused_action = "() => document.activeElement.shadowRoot.activeElement?.dataset.action"
    # Nothing to focus yet: focus waits on "Mark all read" ...
    assert await page.evaluate(focused_action) == "all"
    await (await asyncio.wait_for(first_page, 10)).continue_()
    await page.unroute("**/v1/inbox?*")
    # ... and moves to the first item when the page renders.
    await page.locator("herald-inbox li[data-id]").first.wait_for()
    await page.wait_for_function(f"({focused_action})() !== 'all'")
    assert await page.evaluate(focused_action) in ("read", "archive", "open")
    unread = int(await page.locator("herald-inbox").get_attribute("data-unread") or "0")
    # Tab to the first "Mark read" and press Enter.
    for _ in range(6):
        if (
            await page.evaluate("() => document.activeElement.shadowRoot.activeElement.dataset.action")
            == "read"
        ):
            break
        await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await _wait_attr(page, str(unread - 1))
    await page.screenshot(path=OUT / "6-keyboard-panel.png")
    await page.keyboard.press("Escape")
    assert await page.locator("herald-inbox .panel").is_hidden()
    assert await page.evaluate(active) == "bell"
    assert await page.locator("herald-inbox [role=dialog]").count() == 1
    assert await page.locator("herald-inbox [aria-live=polite]").count() == 1
    await context.close()
