"""``kafstash status``'s table and exit status, from readings (no broker)."""

from __future__ import annotations

from rich.console import Console

from kafstash.lag import PartitionLag, Stage, StageLag
from kafstash.schemas import codec
from kafstash.schemas.message import Message
from kafstash.status import Delayed, Status, _times, exit_code, render, waiting_delays


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


def test_delayed_messages_are_those_whose_time_is_still_ahead() -> None:
    now = 1_000_000
    pending = [
        (now - 90_000, now + 30_000),  # published 90 s ago, due in 30 s
        (now - 5_000, now + 10_000),  # the next due
        (now - 200_000, now - 1),  # due already (in flight, or its timer is late): not waiting
        (now - 1_000, now - 1_000),  # never delayed
    ]
    d = waiting_delays(pending, now_ms=now)
    assert d == Delayed(count=2, oldest_created_ms=now - 90_000, next_due_ms=now + 10_000)
    assert waiting_delays(pending[2:], now_ms=now) == Delayed()

    text = _text(Status(at_s=now / 1000, stages=(STREAMS,), dlq_size=0, last_commit_ms=None))
    assert "delayed: 0 messages waiting\n" in text
    status = Status(at_s=now / 1000, stages=(STREAMS,), dlq_size=0, last_commit_ms=None, delayed=d)
    assert (
        "delayed: 2 messages waiting, the oldest published 90s ago, the next due in 10s"
        in _text(status)
    )
    # A topic not read to its end in time: the count is a lower bound, and says so.
    partial = Status(
        at_s=now / 1000,
        stages=(STREAMS,),
        dlq_size=0,
        last_commit_ms=None,
        delayed=waiting_delays(pending, now_ms=now, complete=False),
    )
    assert "delayed: at least 2 messages waiting, the oldest" in _text(partial)
    assert "(not all pending messages read in time)" in _text(partial)


def test_the_delay_reading_decodes_the_messages_topics_records() -> None:
    message = Message(
        message_id="msg_1",
        user_id="u",
        url="http://127.0.0.1/x",
        created_at=1_000,
        not_before=61_000,
        body=b"body",
        labels=["a"],
    )
    t = _times.decode(codec.encode(message))
    assert (t.created_at, t.not_before) == (1_000, 61_000)
