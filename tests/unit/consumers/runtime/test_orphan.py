"""The orphan check's decisions: when a member holding nothing rejoins its group."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from consumers.runtime.orphan import OrphanWatch, Stalls, should_rejoin

TP = TopicPartition("t", 0)


def test_a_partition_unread_past_the_bound_makes_an_empty_member_rejoin() -> None:
    assert should_rejoin(assigned=False, stalled_s=61, since_last_rejoin_s=120, after_s=60)
    assert not should_rejoin(assigned=False, stalled_s=59, since_last_rejoin_s=120, after_s=60)


@given(
    assigned=st.booleans(),
    stalled=st.floats(0, 1e6),
    since=st.floats(0, 1e6),
    after=st.floats(0, 1e4),
)
def test_never_with_partitions_never_when_off_and_never_twice_within_the_bound(
    assigned: bool, stalled: float, since: float, after: float
) -> None:
    decided = should_rejoin(assigned=assigned, stalled_s=stalled, since_last_rejoin_s=since, after_s=after)
    assert decided == (not assigned and after > 0 and stalled >= after and since >= after)


def test_a_partition_stands_still_only_while_its_commit_does_not_move_and_records_wait() -> None:
    s = Stalls()
    s.observe(0.0, {TP: 5}, {TP: 10})
    s.observe(30.0, {TP: 5}, {TP: 12})
    assert s.longest(30.0) == 30.0  # records past the commit, the commit still
    s.observe(40.0, {TP: 8}, {TP: 12})
    assert s.longest(40.0) == 0.0  # the commit moved: someone reads it
    s.observe(50.0, {TP: 12}, {TP: 12})
    assert s.longest(90.0) == 0.0  # caught up: nothing unread


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=30))
def test_the_stall_never_outlasts_the_last_move_of_the_commit(steps: list[tuple[int, int]]) -> None:
    s = Stalls()
    last_move = 0.0
    previous: int | None = None
    for i, (committed, extra) in enumerate(steps):
        now = float(i * 10)
        if committed != previous:
            last_move = now
        previous = committed
        s.observe(now, {TP: committed}, {TP: committed + extra})
        assert s.longest(now) <= now - last_move
        if extra == 0:
            assert s.longest(now) == 0.0


async def test_a_failing_check_is_logged_and_the_watch_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    def clock() -> float:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first check's reading of the clock
            raise RuntimeError("clock broke")
        return float(calls)

    consumer = AIOKafkaConsumer()  # never started: holds nothing, knows no partitions
    rejoins: list[None] = []
    watch = OrphanWatch(consumer, "t", ["t"], after_s=1.0, rejoin=lambda: rejoins.append(None), clock=clock)
    stopping = asyncio.Event()
    task = asyncio.create_task(watch.run(stopping))
    for _ in range(100):  # the checks come a second apart
        if calls >= 3 or task.done():
            break
        await asyncio.sleep(0.05)
    assert calls >= 3 and not task.done(), "the first check's failure ended the watch"
    stopping.set()
    await asyncio.wait_for(task, 5)
    assert "orphan check failed" in caplog.text and "clock broke" in caplog.text
