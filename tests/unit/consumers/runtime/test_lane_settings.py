"""Bulk-lane processes fetch with their own wait; everything else of the runtime stays as set."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from consumers.runtime.lane_settings import for_lane
from consumers.runtime.settings import MAX_FETCH_WAIT_MS, RuntimeSettings

WAIT = st.integers(min_value=1, max_value=5_000)


@given(wait=WAIT, bulk_wait=WAIT, bulk=st.booleans())
def test_only_the_bulk_lane_takes_the_bulk_wait(wait: int, bulk_wait: int, bulk: bool) -> None:
    runtime = RuntimeSettings(fetch_max_wait_ms=wait, bulk_fetch_max_wait_ms=bulk_wait, max_batch=77)
    lane = for_lane(runtime, bulk)
    # The bulk lane never asks more often than the priority lane, whichever wait the operator raised.
    assert lane.fetch_max_wait_ms == (max(wait, bulk_wait) if bulk else wait)
    # Nothing else moves: the rest of the runtime is the operator's, whatever the lane.
    assert lane.model_dump(exclude={"fetch_max_wait_ms"}) == runtime.model_dump(exclude={"fetch_max_wait_ms"})


def test_defaults_keep_the_priority_wait_short_and_lengthen_the_bulk_one() -> None:
    runtime = RuntimeSettings()
    assert for_lane(runtime, bulk=False).fetch_max_wait_ms == 20
    assert for_lane(runtime, bulk=True).fetch_max_wait_ms == 250


@pytest.mark.parametrize("field", ["fetch_max_wait_ms", "bulk_fetch_max_wait_ms"])
@pytest.mark.parametrize("wait", [0, MAX_FETCH_WAIT_MS + 1])
def test_a_zero_or_too_long_wait_is_refused(field: str, wait: int) -> None:
    # Tansu answers a fetch with a 0 ms wait before reading any partition: no record would ever come;
    # one the broker may hold past the client's request timeout would time out every time.
    with pytest.raises(ValidationError):
        RuntimeSettings.model_validate({field: wait})
    RuntimeSettings.model_validate({field: 1 if wait == 0 else MAX_FETCH_WAIT_MS})
