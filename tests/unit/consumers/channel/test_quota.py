"""Which buckets each lane's SES send draws from: bulk can never reach the priority reserve."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumers.channel.quota import lane_rates
from schemas.models import Lane


@given(rate=st.floats(0.1, 10_000), share=st.floats(0.0, 1.0))
def test_priority_draws_on_the_account_only_and_bulk_is_capped_below_the_reserve(
    rate: float, share: float
) -> None:
    assert lane_rates(rate, Lane.PRIORITY, share) == [rate]
    account, own = lane_rates(rate, Lane.BULK, share)
    assert account == rate
    assert (
        abs(own - rate * (1 - share)) < 1e-9
    )  # bulk at most (1 - share) of the rate, whatever priority does
    assert rate - own >= rate * share - 1e-9  # what bulk can never take is the priority reserve
