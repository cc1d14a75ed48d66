"""Which offset of a partition may be committed while deliveries finish out of order."""

import heapq


class OffsetTracker:
    """Tracks in-flight offsets of one partition; the committable offset is the lowest unfinished.

    Deliveries run concurrently and finish in any order, but Kafka commits a single position:
    everything below it must be done (its outcome appended), or a crash would lose it.
    """

    def __init__(self) -> None:
        self._in_flight: set[int] = set()
        self._heap: list[int] = []
        self._highest_seen: int | None = None

    def start(self, offset: int) -> None:
        self._in_flight.add(offset)
        heapq.heappush(self._heap, offset)
        if self._highest_seen is None or offset > self._highest_seen:
            self._highest_seen = offset

    def done(self, offset: int) -> None:
        self._in_flight.discard(offset)
        while self._heap and self._heap[0] not in self._in_flight:
            heapq.heappop(self._heap)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def committable(self) -> int | None:
        """The offset to commit (the next one to read after a restart), or None if nothing yet."""
        if self._heap:
            return self._heap[0]
        if self._highest_seen is None:
            return None
        return self._highest_seen + 1
