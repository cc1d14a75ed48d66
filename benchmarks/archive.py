#!/usr/bin/env python
"""Archive throughput (rows/s) next to a raw pyiceberg append of the same Arrow data, same run.

The archive path is everything the archiver does per batch after Kafka hands it the records:
decode the JSON event, build the row, build the Arrow table with the exact schema, append it with
the offsets map in the snapshot summary. The baseline appends the already-built Arrow table to a
second table with a plain ``append``. Kafka consumption is not included (see benchmarks/run/).

Usage: ``python benchmarks/archive.py [--rows 200000] [--batches 4]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from kafstash.schemas import codec
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.message import Message
from kafstash.sinks.iceberg.checkpoint import CommitProperties
from kafstash.sinks.iceberg.rows import to_arrow, to_row
from kafstash.sinks.iceberg.table import CatalogConfig, open_table, summaries


def events(n: int) -> list[bytes]:
    now = int(time.time() * 1000)
    out = []
    states = ("CREATED", "ACTIVE", "DELIVERED")
    for i in range(n):
        state = states[i % 3]
        m = (
            Message(
                message_id=f"msg_{i // 3}",
                user_id="u",
                url=f"https://example.com/{i % 50}",
                created_at=now,
                not_before=0,
                labels=["bench"],
            )
            if state == "CREATED"
            else None
        )
        ev = MessageEvent(
            time=now + i,
            message_id=f"msg_{i // 3}",
            user_id="u",
            state=state,  # type: ignore[arg-type]
            url=f"https://example.com/{i % 50}",
            response_status=200 if state == "DELIVERED" else None,
            response_body=b"ok" if state == "DELIVERED" else None,
            duration_ms=5 if state == "DELIVERED" else None,
            message=m,
        )
        out.append(codec.encode(ev))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batches", type=int, default=4)
    args = ap.parse_args()
    raw = events(args.rows)
    per = args.rows // args.batches
    with tempfile.TemporaryDirectory() as d:
        archive = open_table(CatalogConfig.from_env({}, home=Path(d), namespace="archive"))
        baseline = open_table(CatalogConfig.from_env({}, home=Path(d), namespace="baseline"))
        arrow_batches = []
        started = time.perf_counter()
        for b in range(args.batches):
            chunk = raw[b * per : (b + 1) * per]
            rows = [
                to_row(codec.decode(v, MessageEvent), topic="t", partition=0, offset=b * per + i)
                for i, v in enumerate(chunk)
            ]
            df = to_arrow(rows)
            arrow_batches.append(df)
            props = CommitProperties(
                topic="t",
                history=lambda: summaries(archive),
                start={0: b * per if b else None},
                end={0: (b + 1) * per},
            )
            archive.append(df, snapshot_properties=props)  # type: ignore[arg-type]
        archive_s = time.perf_counter() - started
        started = time.perf_counter()
        for df in arrow_batches:
            baseline.append(df)
        raw_s = time.perf_counter() - started
    n = per * args.batches
    print(f"rows={n} batches={args.batches} ({per} rows per append)")
    print(f"archive path (decode+rows+arrow+append): {n / archive_s:>10,.0f} rows/s")
    print(f"raw pyiceberg append of the same Arrow:   {n / raw_s:>10,.0f} rows/s")
    print(f"ratio archive/raw: {raw_s / archive_s:.2f}")


if __name__ == "__main__":
    main()
