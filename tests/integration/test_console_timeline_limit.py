"""A notification's timeline reads a bounded number of receipts (anyone with a user token can post
them for any notification id) and says when more were recorded. Real PostgreSQL, a running console."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest_asyncio

from consumers.infra.keys import notification_id
from consumers.infra.settings import HeraldSettings
from consumers.ledger.queries import TIMELINE_RECEIPTS, ActivityReader
from consumers.ledger.rows import partition_day, row_from_receipt
from consumers.ledger.store import ActivityWriter
from schemas.models import Channel, Receipt, ReceiptStatus
from tests.console_helpers import RunningConsole, console_settings, login, running_console

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest_asyncio.fixture(loop_scope="session")
async def console(settings: HeraldSettings) -> AsyncIterator[RunningConsole]:
    async with running_console(console_settings(settings)) as running:
        yield running


async def _receipts(pool: asyncpg.Pool, nid: str, n: int) -> None:
    rows = [
        row_from_receipt(
            Receipt(
                nid, "mallory", ReceiptStatus.DELIVERED, at=T0 + timedelta(seconds=i), channel=Channel.PUSH
            )
        )
        for i in range(n)
    ]
    await ActivityWriter(pool, 30).insert(rows, partition_day(T0))


async def test_a_flood_of_receipts_is_cut_and_said(console: RunningConsole, pg_pool: asyncpg.Pool) -> None:
    flooded, few = (notification_id(str(uuid.uuid4()), "u1") for _ in range(2))
    await _receipts(pg_pool, flooded, TIMELINE_RECEIPTS + 1)
    await _receipts(pg_pool, few, 3)
    rows, more = await ActivityReader(pg_pool).timeline(flooded)
    assert (len(rows), more) == (TIMELINE_RECEIPTS, True)
    assert rows[-1]["recorded_at"] == T0 + timedelta(seconds=TIMELINE_RECEIPTS - 1)  # the earliest kept
    rows, more = await ActivityReader(pg_pool).timeline(few)
    assert (len(rows), more) == (3, False)
    async with httpx.AsyncClient(base_url=console.url, timeout=10) as c:
        await login(c, await console.link())
        page = await c.get(f"/console/n/{flooded}")
        assert page.status_code == 200 and 'class="notice more"' in page.text
        assert page.text.count('data-stage="receipt"') == TIMELINE_RECEIPTS
        page = await c.get(f"/console/n/{few}")
        assert page.status_code == 200 and 'class="notice more"' not in page.text
