"""A PostgreSQL that stalls (connections open, nothing answers, as a black-holed route does), then
heals: every call on the product's pool (:func:`connect_pool`) gives up within its timeouts, a
new pool cannot hang its caller either, and once the server answers the same pool serves again
by itself. A real PostgreSQL sits behind :class:`~tests.fakes.latency_proxy.LatencyProxy`.

Before, the pool's connect timeout was asyncpg's default: after the first call's statement timed
out (and its cancel), every further call during the stall waited 60 s for a new connection.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from channels.storage_errors import PG_OUTAGES
from consumers.devstack import DevStack
from consumers.infra.db import DatabaseUnavailable, connect_pool
from tests.fakes.latency_proxy import LatencyProxy

pytestmark = pytest.mark.timeout(120)

COMMAND_S = 1.0
CONNECT_S = 1.0
SLACK_S = 1.5  # a loaded machine's scheduling


def _through(dsn: str, proxy: LatencyProxy) -> str:
    parts = urlsplit(dsn)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}{proxy.address}"))


async def test_a_stalled_postgres_fails_calls_within_the_timeouts_then_the_pool_recovers(
    stack: DevStack,
) -> None:
    parts = urlsplit(stack.database_url)
    assert parts.hostname and parts.port
    with LatencyProxy((parts.hostname, parts.port)) as proxy:
        dsn = _through(stack.database_url, proxy)
        pool = await connect_pool(
            dsn, min_size=1, max_size=2, command_timeout_s=COMMAND_S, connect_timeout_s=CONNECT_S
        )
        try:
            assert await pool.fetchval("SELECT 1") == 1
            proxy.set(stall=True)
            took: list[float] = []
            for _ in range(3):  # the open connection's statement, then new connections
                started = time.monotonic()
                with pytest.raises(PG_OUTAGES):
                    await pool.fetchval("SELECT 1")
                took.append(time.monotonic() - started)
            # statement timeout, then as long again for the cancel; then one connect timeout each
            assert took[0] < 2 * COMMAND_S + SLACK_S, took
            assert all(t < CONNECT_S + SLACK_S for t in took[1:]), took
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable):
                await connect_pool(dsn, command_timeout_s=COMMAND_S, connect_timeout_s=CONNECT_S)
            assert time.monotonic() - started < CONNECT_S + SLACK_S
            proxy.set()
            assert await pool.fetchval("SELECT 1") == 1  # the same pool, nobody restarted
        finally:
            proxy.set()
            await pool.close()
