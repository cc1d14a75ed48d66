"""Kafka's default key → partition rule (murmur2, as the Java client), with the hash remembered.

Our records travel in threes under one key (a message's CREATED event, its view record and its
delivery; an attempt's events and its tombstone), and aiokafka computes murmur2 in pure Python
for every one of them: it was 9% of a stream worker's CPU (py-spy, benchmarks/run.py). The
partition chosen is exactly aiokafka's and the Java client's, so keys written by us, by
Kafka-native producers and by the API still meet on one partition.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache

from aiokafka.partitioner import murmur2

# Enough for every key of a few thousand records in flight; a miss costs one murmur2.
_CACHED_KEYS = 16_384


@lru_cache(maxsize=_CACHED_KEYS)
def _positive_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


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
