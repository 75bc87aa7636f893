"""The revocation callback's bound stays below the rebalance timeout aiokafka sends (the session)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumers.infra.settings import RuntimeSettings
from consumers.runtime.rebalance import revoke_bound


def test_the_default_bound_is_the_setting() -> None:
    assert revoke_bound(RuntimeSettings()) == 6.0


@given(st.floats(0.1, 120), st.integers(1000, 120_000))
def test_the_bound_never_reaches_the_session_timeout(settle_s: float, session_ms: int) -> None:
    bound = revoke_bound(RuntimeSettings(revoke_settle_s=settle_s, session_timeout_ms=session_ms))
    assert 0 < bound <= settle_s
    assert bound < session_ms / 1000
