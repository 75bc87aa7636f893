"""Coalesced commits: which offsets a commit carries and when one is due."""

from __future__ import annotations

from aiokafka import ConsumerRecord, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from consumers.runtime.inflight import commit_due, commit_offsets, merge_offsets

_TPS = st.builds(TopicPartition, st.sampled_from(["a", "b"]), st.integers(0, 3))
_OFFSETS = st.dictionaries(_TPS, st.integers(0, 10**9), max_size=8)


def _record(topic: str, partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic, partition, offset, 0, 0, None, b"v", None, 0, 1, [])


@given(st.lists(_OFFSETS, max_size=6))
def test_merged_offsets_are_the_furthest_per_partition(batches: list[dict[TopicPartition, int]]) -> None:
    pending: dict[TopicPartition, int] = {}
    for offsets in batches:
        merge_offsets(pending, offsets)
    assert set(pending) == {tp for offsets in batches for tp in offsets}
    for tp, offset in pending.items():
        assert offset == max(o[tp] for o in batches if tp in o)


@given(_OFFSETS, _OFFSETS)
def test_a_merge_never_moves_an_offset_back(
    pending: dict[TopicPartition, int], new: dict[TopicPartition, int]
) -> None:
    before = dict(pending)
    merge_offsets(pending, new)
    assert all(pending[tp] >= offset for tp, offset in before.items())


def test_a_batch_commits_one_past_its_last_record_on_owned_partitions_only() -> None:
    batch = [_record("a", 0, 5), _record("a", 0, 7), _record("a", 1, 2)]
    assert commit_offsets(batch, {TopicPartition("a", 0)}) == {TopicPartition("a", 0): 8}


@given(st.integers(0, 10**6), st.integers(0, 10**4), st.integers(0, 10**4))
def test_a_commit_is_due_once_the_interval_has_passed(
    last_ms: int, elapsed_ms: int, interval_ms: int
) -> None:
    # Whole milliseconds: the comparison is exact, as it is for a monotonic clock's readings.
    due = commit_due(float(last_ms + elapsed_ms), float(last_ms), float(interval_ms))
    assert due == (elapsed_ms >= interval_ms)


@given(st.floats(0, 1e6), st.floats(0, 10))
def test_the_first_commit_and_an_interval_of_zero_are_always_due(now: float, interval: float) -> None:
    assert commit_due(now, None, interval)
    assert commit_due(now, now, 0.0)
