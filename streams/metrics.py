"""The stream workers' Prometheus metrics: requests through the intake, delayed messages
waiting, timer lateness, ticks.

The gauges are read at scrape time from the timer indexes (``watch``), so the processors pay
nothing for them; a fired timer costs one ``observe``, a schedule tick one ``inc``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kafstash.streams.timer_index import DueIndex

REGISTRY = CollectorRegistry()

DELAYED_WAITING = Gauge(
    "kafstash_delayed_messages",
    "Delayed messages (and retries) waiting in this worker's delay table.",
    registry=REGISTRY,
)
TIMER_OVERDUE = Gauge(
    "kafstash_timer_overdue_seconds",
    "How far past its due time the earliest waiting timer is (0 when none is overdue).",
    registry=REGISTRY,
)
TIMER_LATENESS = Histogram(
    "kafstash_timer_lateness_seconds",
    "How late a delayed message's (or retry's) timer fired, after its due time.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
SCHEDULE_TICKS = Counter(
    "kafstash_schedule_ticks",
    "Schedule (cron) ticks fired by this worker.",
    registry=REGISTRY,
)

INTAKE_REQUESTS = Counter(
    "kafstash_intake_requests",
    "Requests read by the intake: accepted there, forwarded to the tables' agent, or unreadable.",
    ["path"],
    registry=REGISTRY,
)
_ACCEPTED, _FORWARDED, _UNREADABLE = (
    INTAKE_REQUESTS.labels(path) for path in ("accepted", "forwarded", "unreadable")
)


def intake(*, accepted: int, forwarded: int, unreadable: int) -> None:
    """One batch's counts (one ``inc`` per path and batch, not per request)."""
    for child, n in ((_ACCEPTED, accepted), (_FORWARDED, forwarded), (_UNREADABLE, unreadable)):
        if n:
            child.inc(n)


def fired(due_ms: int, now_ms: int) -> None:
    TIMER_LATENESS.observe(max(0, now_ms - due_ms) / 1000)


def watch(index: DueIndex, clock: Callable[[], float] = time.time) -> None:
    """Read the delay table's timer index at each scrape (the scrape runs in another thread:
    ``len`` and ``next_due`` only read)."""

    def overdue() -> float:
        try:
            due = index.next_due()
        except IndexError:  # emptied between the check and the read, in the worker's thread
            return 0.0
        return 0.0 if due is None else max(0.0, clock() - due / 1000)

    DELAYED_WAITING.set_function(lambda: len(index))
    TIMER_OVERDUE.set_function(overdue)
