"""faust wiring of the gate table (queues and flow control). Decisions live in gate.py; this
decodes commands, reads and writes rows, sends what a GateStep says and ticks rate periods.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import msgspec

from kafstash.schemas import codec
from kafstash.schemas.gates import GateCommand, GateTick
from kafstash.schemas.message import Message
from kafstash.streams import gate
from kafstash.streams.effects import Emit
from kafstash.streams.handled import until_handled
from kafstash.streams.timer_index import TimerIndex, run_due

log = logging.getLogger(__name__)

TABLE = "gates"

_command = msgspec.json.Decoder(GateCommand)
_row = msgspec.json.Decoder(gate.GateRow)
_encoder = msgspec.json.Encoder()


def wire_gates(
    app: faust.App,
    *,
    gates_topic: Any,
    partitions: int,
    send: Callable[[tuple[Emit, ...]], Awaitable[list[Any]]],
    now_ms: Callable[[], int],
) -> None:
    """Register the ``gates`` table, its agent and the rate-period ticker on ``app``."""
    table = app.Table(TABLE, partitions=partitions, key_type=bytes, value_type=bytes)
    index = TimerIndex()  # (period end, gate key): when a rate-limited wait list may move

    def load(key: str) -> Message | None:
        raw = table.get(key.encode())
        return codec.decode(raw, Message) if raw else None

    @app.agent(gates_topic)
    async def gate_agent(stream: Any) -> None:
        async for event in stream.events():
            key, value = event.key, event.value
            if key is not None:
                await until_handled(
                    functools.partial(gate_one, key, value), what="gate command", at=event.message
                )

    async def gate_one(key: bytes, value: bytes) -> None:
        try:
            cmd = _command.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("dropping unreadable gate command: %s", exc)
            return
        raw = table.get(key)
        row = _row.decode(raw) if raw else None
        step = gate.decide(key.decode(), cmd, row, load=load, now_ms=now_ms())
        # Bodies first, then the emits, then the row: a crash in between replays the command,
        # which the row (not yet updated) lets through again; the receivers dedupe.
        for body_key, message in step.put_bodies:
            table[body_key.encode()] = codec.encode(message)
        await send(step.emits)
        for body_key in step.drop_bodies:
            table.pop(body_key.encode(), None)
        if step.delete_row:
            table.pop(key, None)
        elif step.row is not None:
            table[key] = _encoder.encode(step.row)
        if step.wake_at is not None:
            index.add(step.wake_at, key.decode())

    @table.on_recover
    async def rebuild_gate_index() -> None:
        pairs: list[tuple[int, str]] = []
        for key, raw in table.items():
            if b"#" in key:
                continue  # a waiting message's body
            due = gate.wake_time(_row.decode(raw))
            if due is not None:
                pairs.append((due, key.decode()))
        index.replace_all(pairs)
        log.info("gates recovered: %d rate-limited gates waiting", len(pairs))

    @app.task  # type: ignore[untyped-decorator]
    async def tick_gates() -> None:
        async def send(due: int, key: str) -> object:
            return await gates_topic.send(key=key.encode(), value=codec.encode(GateTick(due=due)))

        await run_due(index, now_ms, send)
