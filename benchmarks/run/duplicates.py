"""Duplicates per phase, by nonce: with no fault injected, every count here should be 0.

Every published body starts with a nonce of its own, ``<phase>.<unique part>`` (wrk's Lua
script and the open-loop generator both make them). After the last delivering phase, two
ledgers are read: the sink's receipts per nonce (``GET /_receipts``), and the stream workers'
output, the deliveries topic, read back from the beginning (first attempts only: a
``DeliveryDue`` with ``retried > 0`` is a retry the sender asked for, not a duplicate). A
duplicate at the sink with none in the topic was made by the sender.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import ConsumerRecord

from benchmarks.run.context import Bench
from benchmarks.run.figures import Figures, tally_by_phase
from benchmarks.run.kafka import read_to_end
from benchmarks.run.report import Row
from kafstash.schemas import codec
from kafstash.schemas.commands import DeliveryDue

# nonce prefix (= the sink path's first segment) -> (JSON key stem, label)
PHASES = {"bl": ("backlog", "backlog drains"), "pipe": ("pipeline", "pipeline"),
          "e2e": ("e2e", "end-to-end")}  # fmt: skip
SECTION = "5. Duplicates by nonce (no fault injected: each should be 0)"


@dataclass(frozen=True)
class PhaseCount:
    appended: int  # publishes the API appended (end-to-end: acknowledged) in the phase
    due: int  # DeliveryDue records, first attempts, for the phase's nonces
    due_distinct: int
    receipts: int  # at the sink
    distinct: int

    @property
    def streams_duplicates(self) -> int:
        return self.due - self.due_distinct

    @property
    def duplicates(self) -> int:
        return self.receipts - self.distinct

    @property
    def not_received(self) -> int:
        return max(0, self.appended - self.distinct)


async def count(bench: Bench, appended: dict[str, int]) -> dict[str, PhaseCount]:
    """``appended``: nonce prefix -> publishes appended in that phase."""
    assert bench.sink
    async with bench.session.get(f"{bench.sink.base}/_receipts") as resp:
        receipts: dict[str, list[int]] = await resp.json()
    due = tally_by_phase(await _first_attempt_nonces(bench))
    return {
        phase: PhaseCount(appended[phase], *due.get(phase, (0, 0)), *receipts.get(phase, [0, 0]))
        for phase in PHASES
        if phase in appended
    }


async def _first_attempt_nonces(bench: Bench) -> list[str]:
    out: list[str] = []

    def first_attempt(rec: ConsumerRecord) -> None:
        due = codec.decode(rec.value, DeliveryDue)
        if due.retried == 0:
            out.append(due.message.body[:64].split(b" ", 1)[0].decode())

    await read_to_end(bench.bootstrap, bench.topics.deliveries, first_attempt, deadline_s=30)
    return out


def rows(counts: dict[str, PhaseCount]) -> list[Row]:
    out = []
    for phase, c in counts.items():
        label = PHASES[phase][1]
        out += [
            Row(SECTION, f"{label}: sink receipts beyond the first", str(c.duplicates),
                "messages received (distinct)", str(c.distinct)),
            Row(SECTION, "  stream workers: DeliveryDue beyond the first",
                str(c.streams_duplicates), "DeliveryDue records (first attempts)", str(c.due)),
        ]  # fmt: skip
    return out


def note(counts: dict[str, PhaseCount]) -> str:
    return "duplicates: " + "; ".join(
        f"{PHASES[phase][1]}: {c.appended} published, {c.due} DeliveryDue "
        f"({c.streams_duplicates} beyond the first), {c.receipts} received "
        f"({c.duplicates} beyond the first), {c.not_received} not received"
        for phase, c in counts.items()
    )


def figures(counts: dict[str, PhaseCount]) -> Figures:
    out: Figures = {}
    for phase, c in counts.items():
        stem = PHASES[phase][0]
        out[f"{stem}_duplicates"] = c.duplicates
        out[f"{stem}_streams_duplicates"] = c.streams_duplicates
        out[f"{stem}_not_received"] = c.not_received
    return out
