"""The classifier phase reports its median run, not its best or its last."""

from __future__ import annotations

import statistics

from hypothesis import given
from hypothesis import strategies as st

from bench.classifier import median_run
from bench.common import Timing


def _run(cpu_s: float, records: int) -> Timing:
    return Timing(seconds=1.0, records=records, cpu_s=cpu_s)


def test_the_middle_run_by_cpu_per_event_not_by_total_cpu() -> None:
    # by total CPU the middle run would be the 2.0 s one; per event it is the 1.0 s one (10 µs)
    runs = [_run(2.0, 100_000), _run(1.0, 100_000), _run(3.0, 200_000)]  # 20, 10, 15 µs/event
    assert median_run(runs) is runs[2]


@given(st.lists(st.floats(min_value=0.01, max_value=100.0), min_size=1, max_size=7))
def test_an_odd_count_gives_the_median_and_an_even_count_the_lower_middle(cpus: list[float]) -> None:
    runs = [_run(cpu, 1000) for cpu in cpus]
    chosen = median_run(runs).cpu_s
    assert chosen in cpus
    if len(cpus) % 2:
        assert chosen == statistics.median(cpus)
    else:
        assert chosen == statistics.median_low(cpus)
