"""``kafstash status``: every stage's group, members and lag, the delayed messages waiting, the
DLQ's size and the archive's last commit, read from Kafka (and the Iceberg catalog), not from the
roles' metrics.

Exit status 1 when a stage has no member: nothing is consuming its topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgspec
from aiokafka.errors import KafkaError
from rich.console import Console, ConsoleRenderable, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kafstash.config import Settings
from kafstash.lag import KafkaProbe, StageLag, read_stages, stages


class _Times(msgspec.Struct, kw_only=True, rename="camel"):
    """The two fields of a pending message (schemas/message.py's ``Message``, as the
    ``messages`` topic holds it) that say whether it is waiting for its delay."""

    created_at: int
    not_before: int


_times = msgspec.json.Decoder(_Times)


@dataclass(frozen=True, slots=True)
class Delayed:
    """Pending messages whose delay has not run out yet (``not_before`` still ahead)."""

    count: int = 0
    oldest_created_ms: int | None = None  # when the one waiting longest was published
    next_due_ms: int | None = None  # the earliest ``not_before`` among them
    complete: bool = True  # False: the messages topic was not read to its end in time


def waiting_delays(
    times: Iterable[tuple[int, int]], *, now_ms: int, complete: bool = True
) -> Delayed:
    """From the pending messages' ``(created_at, not_before)``: those still waiting for it."""
    waiting = [(created, due) for created, due in times if due > now_ms]
    if not waiting:
        return Delayed(complete=complete)
    return Delayed(
        count=len(waiting),
        oldest_created_ms=min(created for created, _ in waiting),
        next_due_ms=min(due for _, due in waiting),
        complete=complete,
    )


@dataclass(frozen=True, slots=True)
class Status:
    at_s: float
    stages: tuple[StageLag, ...]
    dlq_size: int
    last_commit_ms: int | None  # the archive's current snapshot; None before the first
    archive_error: str | None = None  # why the catalog could not be read, if it could not
    delayed: Delayed = Delayed()

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
    d = status.delayed
    delayed = f"delayed: {d.count if d.complete else f'at least {d.count}'} messages waiting"
    if d.oldest_created_ms is not None and d.next_due_ms is not None:
        delayed += (
            f", the oldest published {_age(status.at_s - d.oldest_created_ms / 1000)} ago,"
            f" the next due in {_age(d.next_due_ms / 1000 - status.at_s)}"
        )
    if not d.complete:
        delayed += " (not all pending messages read in time)"
    lines: list[ConsoleRenderable] = [
        table,
        Text(delayed),
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


async def _pending_times(probe: KafkaProbe, topic: str) -> tuple[list[tuple[int, int]], bool]:
    """Every pending message's ``(created_at, not_before)``, from the compacted ``messages``
    topic (a message's record is written once, at publish; a tombstone ends it), and whether
    the topic was read to its end."""
    pending: dict[bytes, tuple[int, int]] = {}

    def keep(key: bytes, value: bytes | None) -> None:
        pending.pop(key, None)
        if value is not None:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                t = _times.decode(value)
                pending[key] = (t.created_at, t.not_before)

    complete = await probe.read_compacted(topic, keep)
    return list(pending.values()), complete


async def read(probe: KafkaProbe, settings: Settings, clock: Callable[[], float]) -> Status:
    readings = await read_stages(probe, stages(settings))
    dlq = await probe.live_keys(settings.topics.dlq)
    pending, complete = await _pending_times(probe, settings.topics.messages)
    last, error = await asyncio.to_thread(_last_commit, settings)
    at_s = clock()
    return Status(
        at_s=at_s,
        stages=tuple(readings),
        dlq_size=dlq,
        last_commit_ms=last,
        archive_error=error,
        delayed=waiting_delays(pending, now_ms=int(at_s * 1000), complete=complete),
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
