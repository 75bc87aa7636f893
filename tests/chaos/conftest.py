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


@pytest.fixture(scope="package")
def chaos_knobs() -> Knobs:
    return knobs()


@pytest_asyncio.fixture(loop_scope="session", scope="package")
async def pipeline() -> AsyncIterator[Pipeline]:
    async with Pipeline.up(LOGS / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")) as p:
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
