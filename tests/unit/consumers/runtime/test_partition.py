"""The partitioner agrees with aiokafka's DefaultPartitioner on every key and partition count."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from consumers.runtime.partition import Partitioner, murmur2

_default = DefaultPartitioner()


@given(st.binary(max_size=200))
def test_murmur2_is_aiokafkas(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


@given(st.lists(st.tuples(st.binary(max_size=64), st.integers(1, 256)), max_size=50), st.integers(1, 8))
def test_partition_is_the_default_partitioners(calls: list[tuple[bytes, int]], size: int) -> None:
    # A small cache, so the answers also cross its emptying.
    partitioner = Partitioner(size=size)
    for key, count in [*calls, *calls]:  # the second time round, from the cache
        parts = list(range(count))
        assert parts[partitioner.index(key, count)] == _default(key, parts, parts)


def test_the_cache_is_bounded() -> None:
    partitioner = Partitioner(size=4)
    for i in range(100):
        partitioner.index(str(i).encode(), 12)
    assert len(partitioner._known) <= 4


def test_known_vectors() -> None:
    # The Java client's Utils.murmur2 test vectors (kafka clients/.../UtilsTest.java), unsigned.
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert murmur2(b"foobar") == -790332482 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-long-string") == -985981536 & 0xFFFFFFFF
    assert murmur2(b"a-little-bit-longer-string") == -1486304829 & 0xFFFFFFFF
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971 & 0xFFFFFFFF
    assert murmur2(b"abc") == 479470107
