"""The gate table's decisions: queues and flow-control keys in front of a message's first attempt.

One main row per gate (``q/<user>/<queue>`` or ``f/<user>/<key>``) holds the limits and the ids
of active and waiting messages in FIFO order; each waiting message's body sits in its own row
``<gate>#<message id>`` on the same partition, so the main row stays small. A message passes at
most ``parallelism`` at a time (and at most ``rate`` per ``period``), not while paused, and goes
on to its next gate or, from the last one, to delivery.

Every decision is idempotent under replay: an Admit of a message already waiting, active or
recently finished is ignored; a Release or Withdraw of a message not active frees nothing.
"""

from collections.abc import Callable
from dataclasses import dataclass

from msgspec import Struct, structs

from kafstash.schemas.commands import DeliveryDue
from kafstash.schemas.defaults import GATE_RECENT_IDS
from kafstash.schemas.gates import (
    Admit,
    DeleteQueue,
    FlowControlAdmin,
    FlowControlState,
    GateCommand,
    GateKind,
    GateState,
    GateTick,
    QueueState,
    Release,
    UpsertQueue,
    Withdraw,
    gates_of,
    split_gate,
    state_key,
)
from kafstash.schemas.message import Message
from kafstash.streams.effects import Emit


class GateRow(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """The main row of a gate. ``parallelism``/``rate``/``period_s`` are the configured limits
    (a queue's own, or the latest message's flow-control value); ``pin_*`` override them."""

    kind: GateKind
    created_at: int
    updated_at: int
    parallelism: int | None = None
    rate: int | None = None
    period_s: int = 1
    paused: bool = False
    pin_parallelism: int | None = None
    pin_rate: int | None = None
    pin_period_s: int | None = None
    rate_count: int = 0  # messages let through since period_start
    period_start: int = 0  # ms
    active: list[str] = []
    waiting: list[str] = []
    # Ids that finished lately: a replayed Admit of one of them must not let it through again.
    recent: list[str] = []
    listed: bool = True  # False once a queue was deleted while messages were still in it
    admin_at: int = 0  # request time of the last admin command (see QueueState.admin_at)


@dataclass(frozen=True, slots=True)
class GateStep:
    """What the runtime does for one gate command (several rows change, unlike ``Step``)."""

    emits: tuple[Emit, ...] = ()
    row: GateRow | None = None  # the main row's new value; None = unchanged
    delete_row: bool = False
    put_bodies: tuple[tuple[str, Message], ...] = ()  # rows ``<gate>#<id>`` to write
    drop_bodies: tuple[str, ...] = ()  # rows ``<gate>#<id>`` to delete
    wake_at: int | None = None  # a GateTick is due then (rate period end)


def body_key(gate: str, message_id: str) -> str:
    return f"{gate}#{message_id}"


def first_attempt(message: Message, now_ms: int) -> Emit:
    """Where a message's first attempt goes: its first gate, or straight to delivery."""
    gates = gates_of(message)
    if gates:
        return Emit("gates", gates[0], Admit(message=message))
    return Emit(
        "deliveries", message.message_id, DeliveryDue(message=message, retried=0, due=now_ms)
    )


def _onward(gate: str, message: Message, now_ms: int) -> Emit:
    gates = gates_of(message)
    nxt = gates.index(gate) + 1 if gate in gates else len(gates)
    if nxt < len(gates):
        return Emit("gates", gates[nxt], Admit(message=message))
    return Emit(
        "deliveries", message.message_id, DeliveryDue(message=message, retried=0, due=now_ms)
    )


def limits(row: GateRow) -> tuple[int | None, int | None, int]:
    """(parallelism, rate, period in s) in force; ``None`` = no limit. Queues default to 1."""
    par = row.pin_parallelism if row.pin_parallelism is not None else row.parallelism
    if row.kind == "q" and par is None:
        par = 1
    rate = row.pin_rate if row.pin_rate is not None else row.rate
    period = row.pin_period_s if row.pin_period_s is not None else row.period_s
    return par, rate, max(1, period)


def _new_row(gate: str, now_ms: int) -> GateRow:
    kind, _, _ = split_gate(gate)
    return GateRow(
        kind=kind,
        created_at=now_ms,
        updated_at=now_ms,
        parallelism=1 if kind == "q" else None,
        period_start=now_ms,
    )


def _remember(recent: list[str], mid: str) -> list[str]:
    return [*recent, mid][-GATE_RECENT_IDS:]


def wake_time(row: GateRow) -> int | None:
    """When a rate-limited wait list can move again (None when time alone frees nothing)."""
    par, rate, period = limits(row)
    if not row.waiting or row.paused or rate is None or row.rate_count < rate:
        return None
    if par is not None and len(row.active) >= par:
        return None  # a Release frees it, not the clock
    return row.period_start + period * 1000


def state_of(gate: str, row: GateRow) -> GateState:
    _, _, name = split_gate(gate)
    par, rate, period = limits(row)
    if row.kind == "q":
        return QueueState(
            name=name,
            parallelism=par or 1,
            created_at=row.created_at,
            updated_at=row.updated_at,
            lag=len(row.waiting) + len(row.active),
            paused=row.paused,
            admin_at=row.admin_at,
        )
    return FlowControlState(
        flow_control_key=name,
        wait_list_size=len(row.waiting),
        parallelism_max=par or 0,
        parallelism_count=len(row.active),
        rate_max=rate or 0,
        rate_count=row.rate_count,
        rate_period=period,
        rate_period_start=row.period_start // 1000,
        is_paused=row.paused,
        is_pinned_parallelism=row.pin_parallelism is not None,
        is_pinned_rate=row.pin_rate is not None,
        admin_at=row.admin_at,
    )


def _pump(
    gate: str,
    row: GateRow,
    load: Callable[[str], Message | None],
    now_ms: int,
    *,
    fresh: dict[str, Message] | None = None,
    emits: tuple[Emit, ...] = (),
    drops: tuple[str, ...] = (),
) -> GateStep:
    """Let waiting messages through while the limits allow, then publish the gate's state.

    ``fresh`` holds bodies that arrived with this command and are not stored yet: a message let
    through at once never gets a body row.
    """
    fresh = dict(fresh or {})
    par, rate, period = limits(row)
    if now_ms >= row.period_start + period * 1000:
        row = structs.replace(row, period_start=now_ms, rate_count=0)
    active, waiting, count = list(row.active), list(row.waiting), row.rate_count
    out, dropped = list(emits), list(drops)
    while (
        waiting
        and not row.paused
        and (par is None or len(active) < par)
        and (rate is None or count < rate)
    ):
        mid = waiting.pop(0)
        key = body_key(gate, mid)
        message = fresh.pop(key, None)
        if message is None:
            message = load(key)
            dropped.append(key)
        if message is None:
            continue  # no body to send (cannot happen unless the table was tampered with)
        active.append(mid)
        count += 1
        out.append(_onward(gate, message, now_ms))
    row = structs.replace(row, active=active, waiting=waiting, rate_count=count)
    state: GateState | None = state_of(gate, row) if row.listed else None
    out.append(Emit("state", state_key(gate), state))
    return GateStep(
        emits=tuple(out),
        row=row,
        put_bodies=tuple(fresh.items()),
        drop_bodies=tuple(dropped),
        wake_at=wake_time(row),
    )


def decide(
    gate: str,
    cmd: GateCommand,
    row: GateRow | None,
    *,
    load: Callable[[str], Message | None],
    now_ms: int,
) -> GateStep:
    """The step for ``cmd`` on ``gate`` whose main row is ``row``; ``load`` reads a body row."""
    match cmd:
        case Admit(message=message):
            return _admit(gate, message, row, load, now_ms)
        case Release(message_id=mid) | Withdraw(message_id=mid):
            return _finish(gate, mid, row, load, now_ms)
        case UpsertQueue():
            cur = row or _new_row(gate, now_ms)
            cur = structs.replace(
                cur,
                parallelism=cur.parallelism if cmd.parallelism is None else cmd.parallelism,
                paused=cur.paused if cmd.paused is None else cmd.paused,
                updated_at=now_ms,
                listed=True,
                admin_at=max(cur.admin_at, cmd.at),
            )
            return _pump(gate, cur, load, now_ms)
        case DeleteQueue():
            if row is not None:
                row = structs.replace(row, admin_at=max(row.admin_at, cmd.at))
            return _delete_queue(gate, row, load, now_ms)
        case FlowControlAdmin():
            cur = _flow_admin(cmd, row or _new_row(gate, now_ms), now_ms)
            cur = structs.replace(cur, admin_at=max(cur.admin_at, cmd.at))
            return _pump(gate, cur, load, now_ms)
        case GateTick():
            return GateStep() if row is None else _pump(gate, row, load, now_ms)


def _admit(
    gate: str,
    message: Message,
    row: GateRow | None,
    load: Callable[[str], Message | None],
    now_ms: int,
) -> GateStep:
    mid = message.message_id
    if row is not None and (mid in row.active or mid in row.waiting or mid in row.recent):
        return GateStep()  # a replay: the message already entered this gate
    cur = row or _new_row(gate, now_ms)
    fc = message.flow_control
    if cur.kind == "f" and fc is not None:
        # Unpinned limits follow the latest message's Upstash-Flow-Control-Value.
        cur = structs.replace(cur, parallelism=fc.parallelism, rate=fc.rate, period_s=fc.period)
    cur = structs.replace(cur, waiting=[*cur.waiting, mid], updated_at=now_ms, listed=True)
    return _pump(gate, cur, load, now_ms, fresh={body_key(gate, mid): message})


def _finish(
    gate: str, mid: str, row: GateRow | None, load: Callable[[str], Message | None], now_ms: int
) -> GateStep:
    if row is None:
        return GateStep()
    if mid in row.waiting:  # withdrawn before it got through
        cur = structs.replace(
            row,
            waiting=[w for w in row.waiting if w != mid],
            recent=_remember(row.recent, mid),
            updated_at=now_ms,
        )
        return _pump(gate, cur, load, now_ms, drops=(body_key(gate, mid),))
    if mid in row.active:
        cur = structs.replace(
            row,
            active=[a for a in row.active if a != mid],
            recent=_remember(row.recent, mid),
            updated_at=now_ms,
        )
        return _pump(gate, cur, load, now_ms)
    if mid in row.recent:
        return GateStep()  # a replayed Release: the slot was freed already
    # Withdrawn before its Admit arrived (cancel raced the publish): keep it out for good.
    return GateStep(row=structs.replace(row, recent=_remember(row.recent, mid)))


def _delete_queue(
    gate: str, row: GateRow | None, load: Callable[[str], Message | None], now_ms: int
) -> GateStep:
    if row is None:
        return GateStep(emits=(Emit("state", state_key(gate), None),))
    if not row.active and not row.waiting:
        return GateStep(emits=(Emit("state", state_key(gate), None),), delete_row=True)
    # Messages already in the queue are still delivered, in order, with the default limits; the
    # queue just disappears from listings (until a new enqueue creates it again).
    cur = structs.replace(
        row, parallelism=1, paused=False, listed=False, updated_at=now_ms, created_at=now_ms
    )
    return _pump(gate, cur, load, now_ms)


def _flow_admin(cmd: FlowControlAdmin, row: GateRow, now_ms: int) -> GateRow:
    match cmd.action:
        case "pause":
            return structs.replace(row, paused=True, updated_at=now_ms)
        case "resume":
            return structs.replace(row, paused=False, updated_at=now_ms)
        case "pin":
            # Pinning replaces the messages' limits and starts a fresh rate period.
            return structs.replace(
                row,
                pin_parallelism=row.pin_parallelism if cmd.parallelism is None else cmd.parallelism,
                pin_rate=row.pin_rate if cmd.rate is None else cmd.rate,
                pin_period_s=row.pin_period_s if cmd.period is None else cmd.period,
                rate_count=0,
                period_start=now_ms,
                updated_at=now_ms,
            )
        case "unpin":
            return structs.replace(
                row,
                pin_parallelism=None if cmd.unpin_parallelism else row.pin_parallelism,
                pin_rate=None if cmd.unpin_rate else row.pin_rate,
                pin_period_s=None if cmd.unpin_rate else row.pin_period_s,
                updated_at=now_ms,
            )
        case "resetRate":
            return structs.replace(row, rate_count=0, period_start=now_ms, updated_at=now_ms)
