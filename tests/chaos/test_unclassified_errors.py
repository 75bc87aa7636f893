"""After every chaos test of the package (this file sorts last): across all their outcomes —
kills, outages, storms, failover, hostile input — no delivery failed as ``internal_error``, the
retryable catch-all for an error nobody classified. Each one would be a bug: a bad record
retried for hours, or an outage reported as something else.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.chaos.ledger import Ledger

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


async def test_no_outcome_of_the_whole_chaos_run_is_an_internal_error(
    ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    await ledger.refresh()
    outcomes = [o for outs in ledger.outcomes.values() for o in outs]
    if not outcomes:
        pytest.skip("no chaos test ran before this one: nothing to count")
    reasons = Counter(o.reason or o.status.value for o in outcomes)
    internal = [(o.channel, o.event_id, o.detail) for o in outcomes if o.reason == "internal_error"]
    with capsys.disabled():
        print(
            f"\nchaos run: {len(outcomes)} outcomes, {len(internal)} internal_error; by reason: {dict(reasons)}"
        )
    assert not internal, internal[:20]
