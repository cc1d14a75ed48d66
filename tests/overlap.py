"""How many deliveries a sink had in flight at once (queue and flow-control parallelism)."""

from __future__ import annotations

from tests.sink import Receipt


def max_overlap(receipts: list[Receipt], slow_ms: int) -> int:
    """Most deliveries in flight at once; a ``/slow/{ms}`` answer started ``ms`` before ``at``.

    The sink stamps ``at`` when it answers, after its sleep; 30 ms of slack keeps back-to-back
    deliveries (the next one starts only after the previous answer) from counting as overlap.
    """
    spans = [(r.at - slow_ms / 1000, r.at) for r in receipts]
    best = 0
    for start, _ in spans:
        probe = start + 0.03
        best = max(best, sum(1 for s, e in spans if s <= probe < e))
    return best
