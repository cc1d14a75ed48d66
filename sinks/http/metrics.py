"""The sender's Prometheus metrics: deliveries by outcome and destination host, their latency.

Labels stay bounded: an outcome is one of five words, and a destination is its host only, the
first ``max_hosts`` distinct hosts by name and every later one as ``other`` (URLs and message
ids never become labels). Label children are cached, so a delivery costs two dict lookups, one
``inc`` and at most two ``observe`` calls.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Histogram

from kafstash.schemas.defaults import DEFAULT_MAX_METRIC_HOSTS
from kafstash.sinks.http.outcome import DeadLetter, Delivered, Outcome, RetryAt

REGISTRY = CollectorRegistry()

OUTCOMES = ("delivered", "retry", "failed", "489", "timeout")
OTHER = "other"

# Deliveries wait from milliseconds (due now) to minutes (a busy destination); both histograms
# share these bounds so their quantiles compare.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

DELIVERIES = Counter(
    "kafstash_deliveries",
    "Delivery attempts by outcome (delivered, retry, failed, 489, timeout) and destination host.",
    ["outcome", "host"],
    registry=REGISTRY,
)
FIRST_BYTE = Histogram(
    "kafstash_delivery_first_byte_seconds",
    "From the time an attempt was due to the first byte of the destination's answer.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
END_TO_END = Histogram(
    "kafstash_delivery_end_to_end_seconds",
    "From publish (the message's creation) to its delivery (2xx), over all its attempts.",
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
DLQ_ADDED = Counter(
    "kafstash_dlq_entries_added",
    "Messages this sender moved to the dead-letter queue.",
    registry=REGISTRY,
)


def outcome_label(outcome: Outcome, *, status: int | None, timed_out: bool) -> str:
    """One word per attempt: a timeout and a 489 are named whatever happens next, the other
    attempts by what happens next."""
    if timed_out:
        return "timeout"
    if status == 489:
        return "489"
    match outcome:
        case Delivered():
            return "delivered"
        case RetryAt():
            return "retry"
        case DeadLetter():
            return "failed"


@functools.lru_cache(maxsize=4096)
def _host_of(url: str) -> str:
    """The URL's host, lowercase; empty when it has none or does not parse (cached: a sender
    labels every attempt, mostly to the same few destinations)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


class HostLabels:
    """Destination host → label, capped: hosts past the first ``limit`` share ``other``."""

    def __init__(self, limit: int = DEFAULT_MAX_METRIC_HOSTS) -> None:
        self.limit = limit
        self._hosts: set[str] = set()

    def __call__(self, url: str) -> str:
        host = _host_of(url)
        if not host:
            return OTHER
        if host in self._hosts:
            return host
        if len(self._hosts) >= self.limit:
            return OTHER
        self._hosts.add(host)
        return host


class SenderMetrics:
    """What the sender records after each attempt."""

    def __init__(self, max_hosts: int = DEFAULT_MAX_METRIC_HOSTS) -> None:
        self.host_of = HostLabels(max_hosts)
        self._children: dict[tuple[str, str], Counter] = {}

    def attempt(
        self,
        url: str,
        outcome: Outcome,
        *,
        status: int | None,
        timed_out: bool,
        due_ms: int,
        first_byte_ms: int | None,
        created_ms: int,
        now_ms: int,
    ) -> None:
        key = (outcome_label(outcome, status=status, timed_out=timed_out), self.host_of(url))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = DELIVERIES.labels(*key)
        child.inc()
        if first_byte_ms is not None:
            FIRST_BYTE.observe(max(0, first_byte_ms - due_ms) / 1000)
        if isinstance(outcome, Delivered):
            END_TO_END.observe(max(0, now_ms - created_ms) / 1000)
        elif isinstance(outcome, DeadLetter):
            DLQ_ADDED.inc()
