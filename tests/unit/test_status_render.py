"""``kafstash status``'s table and exit status, from readings (no broker)."""

from __future__ import annotations

from rich.console import Console

from kafstash.lag import PartitionLag, Stage, StageLag
from kafstash.status import Status, exit_code, render


def _stage(name: str, members: tuple[str, ...], *parts: PartitionLag) -> StageLag:
    topics = tuple(dict.fromkeys(p.topic for p in parts))
    return StageLag(Stage(name, f"k-{name}", topics), "Stable", members, parts)


def _text(status: Status) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(render(status))
    return console.export_text()


def _cells(lines: list[str], topic: str) -> list[str]:
    line = next(line for line in lines if topic in line)
    return [c.strip() for c in line.split("│")][1:-1]


STREAMS = _stage(
    "streams",
    ("faust@10.0.0.1",),
    PartitionLag(topic="k.requests", partition=0, committed=5, end=5, seconds=0),
    PartitionLag(topic="k.requests", partition=1, committed=2, end=9, seconds=3.2),
    PartitionLag(topic="k.timers", partition=0, committed=4, end=4, seconds=0),
)


def test_lag_is_summed_per_topic_and_the_oldest_wait_is_the_largest() -> None:
    sender = _stage(
        "sender",
        ("aiokafka@10.0.0.2",),
        PartitionLag(topic="k.deliveries", partition=0, committed=0, end=12, seconds=95),
        PartitionLag(topic="k.deliveries", partition=1, committed=3, end=4, seconds=7),
    )
    status = Status(at_s=1_000.0, stages=(STREAMS, sender), dlq_size=3, last_commit_ms=970_000)
    assert exit_code(status) == 0
    lines = _text(status).splitlines()
    assert _cells(lines, "k.requests")[-2:] == ["7", "3s"]
    assert _cells(lines, "k.deliveries")[-2:] == ["13", "95s"]
    text = "\n".join(lines)
    assert "faust@10.0.0.1" in text
    assert "DLQ: 3 messages" in text
    assert "last commit 30s ago" in text


def test_a_stage_without_members_fails_the_command() -> None:
    idle = _stage(
        "archiver", (), PartitionLag(topic="k.events", partition=0, committed=1, end=8, seconds=600)
    )
    status = Status(at_s=1.0, stages=(STREAMS, idle), dlq_size=0, last_commit_ms=None)
    assert status.idle_stages == ("archiver",)
    assert exit_code(status) == 1
    text = _text(status)
    assert "no members: archiver" in text
    assert "no commit yet" in text
    assert "10m" in text  # 600 s behind
