"""The revocation callback's bound stays below the rebalance timeout aiokafka sends (the session),
and the member's assigned-partitions gauge follows its callbacks."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from consumers.infra.settings import RuntimeSettings
from consumers.runtime.rebalance import RevocationListener, revoke_bound


def test_the_default_bound_is_the_setting() -> None:
    assert revoke_bound(RuntimeSettings()) == 6.0


@given(st.floats(0.1, 120), st.integers(1000, 120_000))
def test_the_bound_never_reaches_the_session_timeout(settle_s: float, session_ms: int) -> None:
    bound = revoke_bound(RuntimeSettings(revoke_settle_s=settle_s, session_timeout_ms=session_ms))
    assert 0 < bound <= settle_s
    assert bound < session_ms / 1000


async def test_the_assigned_partitions_gauge_follows_the_callbacks() -> None:
    """The gauge the scaling storm reads to time a rebalance: what the member holds, 0 once revoked."""

    async def settle() -> None:
        return None

    listener = RevocationListener(asyncio.Lock(), "g-test-assigned", settle)
    tps = {TopicPartition("t", p) for p in range(3)}

    def gauge() -> float | None:
        return REGISTRY.get_sample_value("herald_assigned_partitions", {"group": "g-test-assigned"})

    await listener.on_partitions_assigned(tps)
    assert gauge() == 3
    await listener.on_partitions_revoked({TopicPartition("t", 0)})
    assert gauge() == 2
    await listener.on_partitions_revoked(tps)
    assert gauge() == 0
