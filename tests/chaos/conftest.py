"""One pipeline (private dev stack, fake providers, every Herald process) for the whole chaos package.

It has its own servers, not the session ``stack``: the outage drills stop Redis and PostgreSQL,
which must not pull the floor from under the other tests of the session.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from tests.chaos.driver import ChaosRun, Knobs, knobs
from tests.chaos.ledger import Ledger
from tests.chaos.pipeline import Pipeline
from tests.chaos.population import make_events, make_users

LOGS = Path(".herald-chaos")

# Every fetch of an S3-backed broker lists and reads objects on moto (about 40x the in-memory
# broker's per-hop latency here): fewer partitions and longer fetch waits keep idle polling
# from saturating moto, so the broker stays responsive for the records that matter.
DURABLE_ENV = {
    "HERALD_PARTITIONS": "2",
    # tansu writes the group's state to S3 on every heartbeat: one in 1.5 s (a quarter of the
    # session, Kafka's default ratio is a third) instead of 0.5 s takes ~20 % of the requests off
    # the store; a rebalance is noticed at most a second later.
    "HERALD_RUNTIME__HEARTBEAT_INTERVAL_MS": "1500",
    "HERALD_RUNTIME__POLL_TIMEOUT_MS": "500",
    "HERALD_RUNTIME__FETCH_MAX_WAIT_MS": "500",
}
# tansu's S3 engine keeps every batch and lists them all on every fetch, and moto's listing walks
# the whole bucket: without retention a fetch costs more with every batch ever stored, and an hour's
# soak falls behind. Batches older than this that every group has committed past are deleted, as
# Kafka's retention would; a reader without a group (the chaos ledger) holds what it has not read.
# A minute, not five: what a fetch lists is every batch kept on its partition, so the store's work
# per fetch grows with the retention (a busy partition keeps ~2 batches a second at 8 events/s);
# a consumer held up by a fault loses nothing to it (uncommitted and unread batches stay).
DURABLE_RETENTION_S = 60.0


@pytest.fixture(scope="package")
def chaos_knobs() -> Knobs:
    return knobs()


@pytest_asyncio.fixture(loop_scope="session", scope="package")
async def pipeline() -> AsyncIterator[Pipeline]:
    async with Pipeline.up(LOGS / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")) as p:
        yield p


@pytest_asyncio.fixture(loop_scope="session", scope="package")
async def durable_pipeline() -> AsyncIterator[Pipeline]:
    """A pipeline whose broker keeps its log in S3: it can be restarted (and scaled around)."""
    root = LOGS / (datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-durable")
    async with Pipeline.up(
        root, kafka_storage="s3", extra_env=DURABLE_ENV, kafka_retention_s=DURABLE_RETENTION_S
    ) as p:
        yield p


@pytest_asyncio.fixture(loop_scope="session")
async def ledger(pipeline: Pipeline) -> AsyncIterator[Ledger]:
    pipeline.ensure_running()
    led = Ledger(pipeline)
    yield led
    await led.close()


def new_run(pipeline: Pipeline, users: int, events: int, seed: int) -> ChaosRun:
    """Fresh users and events under a fresh run id (runs share the pipeline, never their data)."""
    rnd = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    people = make_users(run, users, now_utc=datetime.now(UTC), rnd=rnd)
    return ChaosRun(pipeline, people, make_events(run, events, people, rnd), rnd)
