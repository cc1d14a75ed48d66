"""The API process's cyclic garbage collector: what its views cost it, and how to keep it cheap.

The API holds its views (pending messages, 24 h of events, groups, DLQ, schedules, ...) in
memory. Every object the collector tracks is scanned by each full (generation 2) collection, and
CPython runs one whenever the long-lived objects grew by a quarter: with the views loaded, a full
collection stalled the event loop for 100 ms to over a second, and every request in flight
waited for it (docs/architecture.md, "Publish path").

:func:`settle` runs once the views caught up: it collects, then freezes what survived (the
loaded views), so later collections no longer scan it. The young thresholds stay CPython's: a
raised generation-0 threshold (10,000) made each young collection scan more in-flight request
objects, 6-17 ms of CPU per collection in the benchmark, and a short pause is what the tail
needs. :class:`PauseWatch` times every collection and logs the long ones (wall and CPU time), so
a stall is named in the log instead of guessed at.
"""

from __future__ import annotations

import gc
import logging
import time
from types import TracebackType
from typing import Any, Self

log = logging.getLogger(__name__)

LONG_PAUSE_S = 0.05  # a collection this long is logged (the publish p99.9 budget)


def settle() -> int:
    """Collect, then freeze every survivor out of later collections; returns how many froze.

    Frozen objects are still freed when their reference count drops (a view forgetting an entry);
    only a reference cycle among them would stay, and the loaded views hold none.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class PauseWatch:
    """Times every collection while entered (``gc.callbacks``); logs those over ``long_s``."""

    def __init__(self, long_s: float = LONG_PAUSE_S) -> None:
        self.long_s = long_s
        self.collections = 0
        self.longest_s = 0.0
        self.total_s = 0.0
        self._started = 0.0
        self._started_cpu = 0.0

    def __enter__(self) -> Self:
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        gc.callbacks.remove(self._on_gc)
        log.info(
            "gc: %d collections, %.0f ms in all, longest %.1f ms",
            self.collections,
            self.total_s * 1000,
            self.longest_s * 1000,
        )

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            self._started_cpu = time.thread_time()
            return
        took = time.perf_counter() - self._started
        self.collections += 1
        self.total_s += took
        self.longest_s = max(self.longest_s, took)
        if took >= self.long_s:
            # CPU time apart: on a busy machine the wall time includes waiting to be scheduled.
            cpu = time.thread_time() - self._started_cpu
            log.warning(
                "gc: generation %d collection paused the event loop %.0f ms (%.0f ms CPU, %d "
                "collected)",
                info["generation"],
                took * 1000,
                cpu * 1000,
                info["collected"],
            )
