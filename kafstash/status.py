"""``kafstash status``: every stage's group, members and lag, the DLQ's size and the archive's
last commit, read from Kafka (and the Iceberg catalog), not from the roles' metrics.

Exit status 1 when a stage has no member: nothing is consuming its topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from rich.console import Console, ConsoleRenderable, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kafstash.config import Settings
from kafstash.lag import KafkaProbe, StageLag, read_stages, stages


@dataclass(frozen=True, slots=True)
class Status:
    at_s: float
    stages: tuple[StageLag, ...]
    dlq_size: int
    last_commit_ms: int | None  # the archive's current snapshot; None before the first
    archive_error: str | None = None  # why the catalog could not be read, if it could not

    @property
    def idle_stages(self) -> tuple[str, ...]:
        return tuple(s.stage.name for s in self.stages if not s.members)


def exit_code(status: Status) -> int:
    return 1 if status.idle_stages else 0


def _age(seconds: float) -> str:
    if seconds < 1:
        return "0s" if seconds <= 0 else "<1s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def render(status: Status) -> Group:
    table = Table(title="kafstash status", title_justify="left")
    for col in ("stage", "group", "topic"):
        table.add_column(col)
    for col in ("members", "lag (records)", "oldest waiting"):
        table.add_column(col, justify="right")
    for s in status.stages:
        members = Text(str(len(s.members)), style="bold red" if not s.members else "")
        first = True
        for topic in s.stage.topics:
            table.add_row(
                s.stage.name if first else "",
                s.stage.group if first else "",
                topic,
                members if first else "",
                str(s.records(topic)),
                _age(s.seconds(topic)),
            )
            first = False
        if s.members:
            table.add_row("", Text(", ".join(s.members), style="dim"), "", "", "", "")
        table.add_section()
    if status.last_commit_ms is not None:
        archive = f"last commit {_age(status.at_s - status.last_commit_ms / 1000)} ago"
    else:
        archive = status.archive_error or "no commit yet"
    lines: list[ConsoleRenderable] = [
        table,
        Text(f"DLQ: {status.dlq_size} messages"),
        Text(f"archive: {archive}"),
    ]
    if status.idle_stages:
        lines.append(Text(f"no members: {', '.join(status.idle_stages)}", style="bold red"))
    return Group(*lines)


def _last_commit(settings: Settings) -> tuple[int | None, str | None]:
    from kafstash.roles import archiver_config  # noqa: PLC0415 - pyiceberg loads only here
    from kafstash.sinks.iceberg.table import last_commit_ms  # noqa: PLC0415

    try:
        return last_commit_ms(archiver_config(settings, create_dirs=False).catalog), None
    except Exception as exc:  # the catalog may be unreachable: report it, keep the rest
        return None, f"catalog unreadable: {type(exc).__name__}"


async def read(probe: KafkaProbe, settings: Settings, clock: Callable[[], float]) -> Status:
    readings = await read_stages(probe, stages(settings))
    dlq = await probe.live_keys(settings.topics.dlq)
    last, error = await asyncio.to_thread(_last_commit, settings)
    return Status(
        at_s=clock(), stages=tuple(readings), dlq_size=dlq, last_commit_ms=last, archive_error=error
    )


def run_status(
    settings: Settings,
    *,
    watch: bool = False,
    interval_s: float = 2.0,
    console: Console | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    console = console or Console()

    async def main() -> int:
        async with KafkaProbe(settings.require_bootstrap) as probe:
            if not watch:
                status = await read(probe, settings, clock)
                console.print(render(status))
                return exit_code(status)
            last: Status | None = None
            # Ctrl-C cancels this task (asyncio.run); the last reading decides the exit status.
            with (
                contextlib.suppress(asyncio.CancelledError),
                Live(console=console, auto_refresh=False) as live,
            ):
                while True:
                    last = await read(probe, settings, clock)
                    live.update(render(last), refresh=True)
                    await asyncio.sleep(interval_s)
            return 130 if last is None else exit_code(last)

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 130
    except KafkaError as exc:
        print(
            f"kafstash status: Kafka at {settings.bootstrap} did not answer: {exc!r}",
            file=sys.stderr,
        )
        return 2
