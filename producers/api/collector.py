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
needs. The views keep growing while the API runs (the events view: about 16 tracked objects per
message, so 30k messages already cost 220 ms of CPU per full collection), so :class:`Refreeze`
freezes again every minute what survived a young collection. :class:`PauseWatch` times every
collection and logs the long ones (wall and CPU time), so a stall is named in the log instead of
guessed at.
"""

from __future__ import annotations

import asyncio
import contextlib
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


REFREEZE_EVERY_S = 60.0


class Refreeze:
    """Every ``every_s``, collects the young generations and freezes what survived; an async
    context manager that owns its task.

    A young collection first frees the cyclic garbage of the moment, so what is frozen is what is
    alive: mostly view entries. Objects of requests in flight are frozen too; they are freed by
    reference counting like the rest, and the publish path makes no cyclic garbage (every young
    collection in the benchmark collected 0), so the collector has little left to miss.
    """

    def __init__(self, every_s: float = REFREEZE_EVERY_S) -> None:
        self.every_s = every_s
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="gc-refreeze")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            gc.collect(1)
            gc.freeze()


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
