"""Kafka's default key → partition rule (murmur2, as the Java client), with the hash remembered.

Our records travel in threes under one key (a message's CREATED event, its view record and its
delivery; an attempt's events and its tombstone), and aiokafka computes murmur2 in pure Python
for every one of them: it was 9% of a stream worker's CPU (py-spy, benchmarks/run.py). The
partition chosen is exactly aiokafka's and the Java client's, so keys written by us, by
Kafka-native producers and by the API still meet on one partition.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from functools import lru_cache

# Enough for every key of a few thousand records in flight; a miss costs one murmur2.
_CACHED_KEYS = 16_384


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = [struct.Struct(f"<{n}I") for n in range(65)]  # keys up to 256 bytes: every id of ours


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as aiokafka's.

    Reads the input four bytes at a time (``struct``) where aiokafka's reads a byte at a time:
    the API hashes a fresh message id per publish, a cache miss every time, and aiokafka's
    version was 4% of its samples (benchmarks/run.py --only publish --py-spy).
    """
    length = len(data)
    h = 0x9747B28C ^ length
    words = length // 4
    unpack = (
        _WORDS[words].unpack_from
        if words < len(_WORDS)
        else struct.Struct(f"<{words}I").unpack_from
    )
    for word in unpack(data):
        k = (word * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = length & 3
    if tail:
        rest = words * 4
        if tail >= 3:
            h ^= data[rest + 2] << 16
        if tail >= 2:
            h ^= data[rest + 1] << 8
        h ^= data[rest]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@lru_cache(maxsize=_CACHED_KEYS)
def _positive_hash(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF


def partition_of(key: bytes, partitions: int) -> int:
    """The partition index Kafka's default partitioner gives ``key`` among ``partitions``."""
    return _positive_hash(key) % partitions


class CachedPartitioner:
    """A drop-in for aiokafka's ``DefaultPartitioner`` (the ``partitioner=`` argument)."""

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        if key is None:
            return random.choice(available or all_partitions)  # noqa: S311 - load spreading
        return all_partitions[partition_of(key, len(all_partitions))]
