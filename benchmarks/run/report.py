"""The report: one table row per figure next to its same-run baseline, and the details' lines."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.harness import OpenLoopResult
from benchmarks.run.wrk import WrkResult


@dataclass
class Row:
    section: str
    measure: str
    value: str
    baseline: str = ""
    base_value: str = ""
    ratio: str = ""


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:,.0f}/s"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if not a or not b or a != a or b != b:
        return "n/a"
    return f"{a / b:.3f}" if a / b < 0.1 else f"{a / b:.2f}"


def fmt_ms(x: float) -> str:
    return "n/a" if x != x else (f"{x:.1f} ms" if x < 100 else f"{x:.0f} ms")


def render(rows: list[Row]) -> str:
    head = Row("", "measure", "value", "baseline (same run)", "baseline value", "ratio")
    cols = ["measure", "value", "baseline", "base_value", "ratio"]
    widths = {c: max(len(getattr(r, c)) for r in [head, *rows]) for c in cols}
    out = []

    def line(r: Row) -> str:
        return "| " + " | ".join(getattr(r, c).ljust(widths[c]) for c in cols) + " |"

    out.append(line(head))
    out.append("|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|")
    section = None
    for r in rows:
        if r.section != section:
            section = r.section
            out.append(line(Row("", f"**{section}**", "", "", "", "")))
        out.append(line(r))
    return "\n".join(out)


def wrk_note(name: str, w: WrkResult) -> str:
    return (
        f"{name}: {w.requests} responses in {w.seconds:.1f}s, non-2xx {w.non2xx}, "
        f"socket errors {w.socket_errors}" + (f", {w.error}" if w.error else "")
    )


def open_loop_note(name: str, r: OpenLoopResult) -> str:
    return (
        f"{name}: offered {r.rate:.0f}/s, sent {r.sent}, 2xx {r.ok}, "
        f"errors {r.errors or 0}, dropped {r.dropped}, late sends {r.late} "
        f"(max {r.max_late_ms:.0f} ms); from intended send time p50/p90/p99/p99.9/max "
        f"{r.pct(50):.1f}/{r.pct(90):.1f}/{r.pct(99):.1f}/{r.pct(99.9):.1f}/"
        f"{r.answer.get_max_value() / 1000:.1f} ms; from actual send p50/p99 "
        f"{r.pct(50, False):.1f}/{r.pct(99, False):.1f} ms"
    )
