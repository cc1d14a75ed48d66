"""The cached partitioner chooses exactly what aiokafka's (and the Java client's) default does."""

import os

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from kafstash.schemas.partitioner import CachedPartitioner, murmur2, partition_of


def test_same_partition_as_the_default_partitioner_for_every_key() -> None:
    ours, theirs = CachedPartitioner(), DefaultPartitioner()
    keys = [os.urandom(n) for n in range(1, 40)] + [f"msg_{i}".encode() for i in range(2000)]
    for count in (1, 2, 3, 7, 12, 64):
        parts = list(range(count))
        for key in keys:
            # twice: the second answer comes from the cache
            assert ours(key, parts, parts) == theirs(key, parts, parts)
            assert ours(key, parts, parts) == theirs(key, parts, parts)


def test_the_java_clients_partitions() -> None:
    # Utils.murmur2 values pinned by Kafka's own UtilsTest; the Java client's partition is
    # toPositive(murmur2(key)) % partitions.
    java = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536}
    for key, signed in java.items():
        for count in (3, 12, 1000):
            assert partition_of(key.encode(), count) == (signed & 0x7FFFFFFF) % count


def test_a_record_without_key_goes_to_an_available_partition() -> None:
    ours = CachedPartitioner()
    assert {ours(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
    assert {ours(None, [0, 1], []) for _ in range(50)} <= {0, 1}


def test_murmur2_is_aiokafkas_for_every_length() -> None:
    # Every tail length (0-3 bytes past the last word) and keys past the precompiled word counts.
    for n in [*range(70), 255, 256, 257, 300, 1024]:
        for _ in range(30):
            key = os.urandom(n)
            assert murmur2(key) == aiokafka_murmur2(key)
