"""Which of the broker's stored batches retention deletes: old ones that every group has read, never a
partition's newest."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumers.devstack.kafka_retention import (
    StoredBatch,
    committed_floor,
    expired,
    is_batch,
    offsets_key_partition,
)

NOW = 10_000.0


def _key(topic: str, partition: int, offset: int) -> str:
    return f"clusters/tansu_cluster/topics/{topic}/partitions/{partition:0>10}/records/{offset:0>20}.batch"


def test_old_batches_go_and_the_newest_of_each_partition_stays() -> None:
    batches = [
        StoredBatch(_key("a", 0, 0), NOW - 900),
        StoredBatch(_key("a", 0, 3), NOW - 800),
        StoredBatch(_key("a", 0, 7), NOW - 10),  # within the retention
        StoredBatch(_key("a", 1, 0), NOW - 900),
        StoredBatch(_key("a", 1, 12), NOW - 700),  # old, but partition 1's newest: its end offset
        StoredBatch(_key("b", 0, 0), NOW - 900),  # a topic's only batch
    ]
    assert expired(batches, NOW, retention_s=300) == [_key("a", 0, 0), _key("a", 0, 3), _key("a", 1, 0)]


def test_batches_of_the_newest_second_all_stay() -> None:
    # The store's clock has one-second resolution: tansu picks the end among equal times by
    # listing order, so every batch of the newest second stays.
    batches = [StoredBatch(_key("a", 0, o), NOW - 600) for o in (0, 1, 2)] + [
        StoredBatch(_key("a", 0, 3), NOW - 900)
    ]
    assert expired(batches, NOW, retention_s=300) == []


def _partition(topic: str, partition: int) -> str:
    return f"clusters/tansu_cluster/topics/{topic}/partitions/{partition:0>10}"


def test_a_batch_a_group_has_not_read_past_stays_however_old() -> None:
    batches = [StoredBatch(_key("a", 0, o), NOW - 900) for o in (0, 4, 8)] + [
        StoredBatch(_key("a", 0, 12), NOW)
    ]
    # Committed 8: batches 0 and 4 (offsets 0-7) were read; batch 8 was not, whatever its age.
    assert expired(batches, NOW, 300, {_partition("a", 0): 8}) == [_key("a", 0, 0), _key("a", 0, 4)]
    assert expired(batches, NOW, 300, {_partition("a", 0): 7}) == [_key("a", 0, 0)]  # batch 4 ends at 7
    assert expired(batches, NOW, 300, {_partition("a", 1): 0}) == [_key("a", 0, o) for o in (0, 4, 8)]


def test_the_slowest_group_sets_the_floor_and_offsets_keys_name_their_partition() -> None:
    key = "clusters/tansu_cluster/groups/consumers/herald-classifier/offsets/chaos.events/partitions/0000000001.json"
    assert offsets_key_partition(key) == _partition("chaos.events", 1)
    assert offsets_key_partition("clusters/tansu_cluster/groups/consumers/herald-classifier.json") is None
    assert offsets_key_partition(_key("a", 0, 5)) is None
    floor = committed_floor([(_partition("a", 0), 40), (_partition("a", 0), 12), (_partition("b", 0), 7)])
    assert floor == {_partition("a", 0): 12, _partition("b", 0): 7}


def test_only_record_batches_are_batches() -> None:
    assert is_batch(_key("a", 0, 5))
    assert not is_batch("clusters/tansu_cluster/topics/a/partitions/0000000000/watermark.json")
    assert not is_batch("clusters/tansu_cluster/groups/consumers/g/offsets/a/partitions/0000000000.json")
    assert not is_batch("clusters/tansu_cluster/meta.json")


BATCHES = st.lists(
    st.builds(
        lambda t, p, o, age: StoredBatch(_key(t, p, o), NOW - age),
        st.sampled_from("abc"),
        st.integers(0, 2),
        st.integers(0, 10**6),
        st.integers(0, 3600),
    ),
    unique_by=lambda b: b.key,
    max_size=60,
)


@given(
    BATCHES,
    st.floats(0, 4000),
    st.dictionaries(st.builds(_partition, st.sampled_from("ab"), st.integers(0, 2)), st.integers(0, 10**6)),
)
def test_properties(batches: list[StoredBatch], retention_s: float, committed: dict[str, int]) -> None:
    old = set(expired(batches, NOW, retention_s, committed))
    for b in batches:
        same = [x for x in batches if x.partition == b.partition]
        newest = b.key == max(x.key for x in same) or b.modified == max(x.modified for x in same)
        after = min((x.offset for x in same if x.offset > b.offset), default=None)
        read = b.partition not in committed or (after is not None and after <= committed[b.partition])
        # Deleted exactly when past the retention, read by every group, and not its partition's newest.
        assert (b.key in old) == (NOW - b.modified > retention_s and read and not newest)
    # Every partition keeps a batch (its end offset).
    assert {b.partition for b in batches} == {b.partition for b in batches if b.key not in old}
