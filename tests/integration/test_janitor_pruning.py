"""The inbox janitor's deletes of finished rows: fan-out cursors, timers, workflow runs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from consumers.devstack import DevStack
from consumers.inbox.finished import FAILED_TIMERS_SQL, TIMERS_SQL, WORKFLOW_START, WORKFLOWS_SQL
from consumers.inbox.janitor import (
    FAILED_TIMER_KEEP,
    FINISHED_FANOUT_KEEP,
    FINISHED_KEEP,
    InboxJanitor,
)
from consumers.infra.clock import ManualClock
from consumers.infra.settings import InAppSettings
from tests.inbox_helpers import isolated_inbox


async def test_janitor_deletes_fanout_cursors_finished_past_the_keep(
    pg_pool: asyncpg.Pool, stack: DevStack
) -> None:
    # One row per broadcast, forever, before: only finished ones go (an unfinished one is a
    # broadcast's progress), and only past the documented keep (a replay must still find it).
    async with isolated_inbox(pg_pool, stack.database_url) as pool:
        now = datetime.now(UTC)
        keep = FINISHED_FANOUT_KEEP
        tag = uuid.uuid4().hex
        rows = {
            f"old-{tag}": (now - keep - timedelta(days=2), now - keep - timedelta(minutes=1)),
            f"recent-{tag}": (now - keep - timedelta(days=2), now - keep + timedelta(minutes=1)),
            f"unfinished-{tag}": (now - keep - timedelta(days=60), None),
        }
        for event_id, (started, finished) in rows.items():
            await pool.execute(
                "INSERT INTO herald_fanout_cursors (event_id, tenant, topic, started_at, finished_at) "
                "VALUES ($1, 'acme', 'news', $2, $3)",
                event_id,
                started,
                finished,
            )
        await InboxJanitor(pool, InAppSettings(), ManualClock(now)).sweep(now)  # no keep given: kept
        left = "SELECT event_id FROM herald_fanout_cursors WHERE event_id = ANY($1::text[]) ORDER BY event_id"
        assert len(await pool.fetch(left, list(rows))) == 3
        await InboxJanitor(pool, InAppSettings(), ManualClock(now), fanout_cursor_keep=keep).sweep(now)
        assert [r["event_id"] for r in await pool.fetch(left, list(rows))] == [
            f"recent-{tag}",
            f"unfinished-{tag}",
        ]
        await pool.execute("DELETE FROM herald_fanout_cursors WHERE event_id = ANY($1::text[])", list(rows))


_FINISHED_TABLES = (
    "herald_timers",
    "herald_workflows",
    "herald_workflow_runs",
    "herald_workflow_digest_items",
)


async def test_janitor_deletes_timers_and_workflows_finished_past_the_keep(
    pg_pool: asyncpg.Pool, stack: DevStack
) -> None:
    # Before, nothing deleted them: a row per timer and per workflow run, for ever. Private copies
    # of the tables: the sweep deletes every old finished row, not only this test's.
    async with isolated_inbox(pg_pool, stack.database_url) as pool:
        schema = await pool.fetchval("SELECT current_schema()")
        for table in _FINISHED_TABLES:
            await pool.execute(f"CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)")
        now = datetime.now(UTC)
        keep, failed_keep = FINISHED_KEEP, FAILED_TIMER_KEEP
        old, recent = now - keep - timedelta(minutes=1), now - keep + timedelta(minutes=1)
        very_old = now - failed_keep - timedelta(minutes=1)
        timers = {  # key: (state, due_at, fired_at)
            "fired-old": ("fired", old - timedelta(days=1), old),
            "fired-recent": ("fired", old - timedelta(days=1), recent),
            "cancelled-old": ("cancelled", old, None),  # no fired_at: ended when it was due
            "cancelled-due-later": ("cancelled", recent, None),
            "failed-old": ("failed", old, old),  # an operator's evidence: kept longer
            "failed-very-old": ("failed", very_old, very_old),
            # the step that failed is all that says why that waiting run stopped moving: kept
            "failed-very-old-step": ("failed", very_old, very_old),
            "pending-old": ("pending", very_old, None),  # overdue, never fired: never deleted
        }
        for key, (state, due, fired) in timers.items():
            await pool.execute(
                "INSERT INTO herald_timers (key, kind, due_at, state, fired_at, data) "
                "VALUES ($1, 'publish', $2, $3, $4, $5::jsonb)",
                key,
                due,
                state,
                fired,
                '{"notification_id": "waiting-old"}' if key == "failed-very-old-step" else "{}",
            )
        flows = {  # notification id: (state, updated_at)
            "done-old": ("done", old),
            "cancelled-old": ("cancelled", old),
            "done-recent": ("done", recent),
            "waiting-old": ("waiting", very_old),
            "running-old": ("running", very_old),
            "done-in-digest": ("done", old),  # its item still waits in a route's digest
            # ended before the others: each batch starts after the last key the one before deleted,
            # past this kept row, not from the oldest row again
            "done-in-digest-first": ("done", old - timedelta(days=3)),
        }
        for nid, (state, updated) in flows.items():
            await pool.execute(
                "INSERT INTO herald_workflows (notification_id, event_id, user_id, route, state, event, "
                "created_at, updated_at) VALUES ($1, $1, 'u', 'r', $2, '\\x00', $3, $3)",
                nid,
                state,
                updated,
            )
            await pool.execute(
                "INSERT INTO herald_workflow_runs (notification_id, step, kind, result, ran_at) "
                "SELECT $1, s, 'send', 'sent', $2 FROM generate_series(0, 2) s",
                nid,
                updated,
            )
        for nid in ("done-in-digest", "done-in-digest-first"):
            await pool.execute(
                "INSERT INTO herald_workflow_digest_items (notification_id, digest_id, event, joined_at) "
                "VALUES ($1, 1, '\\x00', $2)",
                nid,
                old,
            )
        await InboxJanitor(pool, InAppSettings(), ManualClock(now)).sweep(now)  # no keep given: kept
        assert await pool.fetchval("SELECT count(*) FROM herald_timers") == len(timers)
        assert await pool.fetchval("SELECT count(*) FROM herald_workflows") == len(flows)

        janitor = InboxJanitor(
            pool,
            InAppSettings(janitor_batch=1),  # several batches
            ManualClock(now),
            finished_keep=keep,
            failed_timer_keep=failed_keep,
        )
        result = await janitor.sweep(now)
        assert (result.timers_deleted, result.workflows_deleted) == (3, 2)
        left = [r["key"] for r in await pool.fetch("SELECT key FROM herald_timers ORDER BY key")]
        assert left == [
            "cancelled-due-later",
            "failed-old",
            "failed-very-old-step",
            "fired-recent",
            "pending-old",
        ]
        left = [
            r["notification_id"] for r in await pool.fetch("SELECT notification_id FROM herald_workflows")
        ]
        assert sorted(left) == [
            "done-in-digest",
            "done-in-digest-first",
            "done-recent",
            "running-old",
            "waiting-old",
        ]
        runs = "SELECT DISTINCT notification_id FROM herald_workflow_runs ORDER BY 1"
        assert [r["notification_id"] for r in await pool.fetch(runs)] == sorted(left)


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        (TIMERS_SQL, "herald_timers_ended"),
        (FAILED_TIMERS_SQL, "herald_timers_failed"),
        (WORKFLOWS_SQL, "herald_workflows_ended"),
    ],
)
async def test_finished_rows_are_found_through_migration_280s_indexes(
    pg_pool: asyncpg.Pool, sql: str, index: str
) -> None:
    # The statements must match the partial indexes' expression and predicate, or each batch reads
    # the whole table. Seq scans off: an empty test table would be read whole whatever the indexes.
    now = datetime.now(UTC)
    async with pg_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        args = (now, 100, *WORKFLOW_START) if sql == WORKFLOWS_SQL else (now, 100)
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
    assert index in plan, plan
