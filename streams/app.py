"""faust wiring of the stream processors. Decisions live in dedup.py and delay.py; this only
decodes records, reads and writes table rows, and sends what a Step says.

Processing is at-least-once: outputs go to the producer without waiting for their
acknowledgements, and faust flushes the producer (outputs and changelogs) before it commits a
source offset, so one flush covers everything processed since the last commit. Every decision
is idempotent on the message id when replayed. docs/architecture.md ("The stream workers' hot
path") has the profiles behind the producer settings.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import msgspec

from kafstash.schemas import codec
from kafstash.schemas.commands import (
    Cancel,
    ExpireDedup,
    Fire,
    FireMany,
    PublishRequest,
    Schedule,
)
from kafstash.schemas.defaults import REPLAY_MARGIN_MS
from kafstash.schemas.partitioner import CachedPartitioner
from kafstash.schemas.routing import request_key
from kafstash.schemas.schedules import ScheduleSpec, ScheduleState, Tick
from kafstash.schemas.topics import Topics
from kafstash.schemas.waiters import (
    WAITER_KEY_PREFIX,
    DropWaiters,
    NotifyEvent,
    WaiterRow,
    WaitFor,
    WaitTimeout,
    waiter_key,
)
from kafstash.schemas.workflow import (
    EndRun,
    FailRun,
    FailureCallbackDone,
    ReviveRun,
    RunState,
    run_key,
)
from kafstash.streams import (
    dedup,
    delay,
    gate_runtime,
    metrics,
    refetch,
    replay,
    schedule,
    waiters,
    workflow,
)
from kafstash.streams.acked_table import AckedTable
from kafstash.streams.disk_timer_index import DiskTimerIndex
from kafstash.streams.effects import Emit, Step
from kafstash.streams.groups_view import GroupsView
from kafstash.streams.handled import until_handled
from kafstash.streams.intake_runtime import Intake, IntakeConfig
from kafstash.streams.timer_index import DueIndex, TimerIndex, run_due, run_due_batches
from kafstash.views.recent import RecentRecords

log = logging.getLogger(__name__)

# The tables' names; their changelogs are ``<app id>-<name>-changelog`` (provisioned up front).
TABLES = ("dedup", "delay", "cron", gate_runtime.TABLE, "workflow", "waiters")

_dedup_row = msgspec.json.Decoder(dedup.DedupEntry)
_delay_row = msgspec.json.Decoder(delay.Row)
_cron_row = msgspec.json.Decoder(ScheduleState)
_run_row = msgspec.json.Decoder(RunState)
_waiter_row = msgspec.json.Decoder(WaiterRow)
_spec = msgspec.json.Decoder(ScheduleSpec)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class StreamsConfig:
    bootstrap: str
    topics: Topics
    app_id: str
    data_dir: Path
    partitions: int
    replication: int = 1
    dedup_window_ms: int = 3_600_000
    store: str = "rocksdb://"


def create_app(  # noqa: PLR0915 - faust wiring is declarative: one closure per agent
    cfg: StreamsConfig, clock: Callable[[], float] = time.time
) -> faust.App:
    app = refetch.App(
        cfg.app_id,
        broker=f"kafka://{cfg.bootstrap}",
        store=cfg.store,
        datadir=str(cfg.data_dir),
        topic_partitions=cfg.partitions,
        topic_replication_factor=cfg.replication,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Measured (benchmarks/run.py --quick, stream workers alone): at 1 ms every produce
        # request carried one or two requests' records, and the broker's per-request work and
        # the socket writes were half the CPU; 5 ms and 256 KiB batches make requests large.
        producer_linger_ms=5,
        producer_max_batch_size=262_144,
        producer_partitioner=CachedPartitioner(),
        broker_commit_interval=0.5,
        # faust's default session (60 s) keeps a worker restarted after kill -9 waiting for its
        # dead predecessor's session to expire: delayed messages were ~60 s late. Same as senders.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        table_standby_replicas=0,
        web_enabled=False,
        Table=AckedTable,  # every table: a claim waits for its own changelog record
        stream_wait_empty=False,
        key_serializer="raw",
        value_serializer="raw",
    )

    def topic(name: str) -> Any:
        return app.topic(name, key_serializer="raw", value_serializer="raw", internal=False)

    t = cfg.topics
    # ``requests`` is read by the intake (below); the agent with the tables reads what it forwards.
    requests, timers = topic(t.table_requests), topic(t.timers)
    outputs = {
        "events": topic(t.events),
        "deliveries": topic(t.deliveries),
        "timers": timers,
        "messages": topic(t.messages),
        "decisions": topic(t.decisions),
        "requests": topic(t.requests),
        "gates": topic(t.gates),
        "state": topic(t.state),
    }
    # Rows are our own msgspec JSON: faust only moves bytes (app-wide raw serializers).
    dedup_table = app.Table("dedup", partitions=cfg.partitions, key_type=bytes, value_type=bytes)
    # Workflow runs: one row per run key, on the partition every record of the run goes to.
    run_table = app.Table("workflow", partitions=cfg.partitions, key_type=bytes, value_type=bytes)
    # waitForEvent: one row per (user, event id), with a timer index over the deadlines.
    waiter_table = app.Table("waiters", partitions=cfg.partitions, key_type=bytes, value_type=bytes)
    wait_index = TimerIndex()
    delay_table = app.Table("delay", partitions=cfg.partitions, key_type=bytes, value_type=bytes)
    # Delayed messages and retries can be millions: their due times are indexed on disk.
    index = DiskTimerIndex(cfg.data_dir / "delay-index")
    metrics.watch(index, clock)
    # Schedules: one row per schedule key, written by the spec agent and the Tick case of
    # ``hold``; both run on the partition the key hashes to (same key, same partition count).
    cron_table = app.Table("cron", partitions=cfg.partitions, key_type=bytes, value_type=bytes)
    ticks = TimerIndex()
    cron_lock = asyncio.Lock()  # the two agents interleave at awaits; one decision at a time
    sweep_interval_s = min(600.0, max(10.0, cfg.dedup_window_ms / 2000))

    def now_ms() -> int:
        return int(clock() * 1000)

    names = {name: tp.get_topic_name() for name, tp in outputs.items()}

    async def send(emits: tuple[Emit, ...]) -> list[Any]:
        # Straight to faust's producer: the same aiokafka producer that faust flushes before it
        # commits a source offset, without faust's per-record channel and sensor layer (the
        # profile's top cost after the produce requests themselves). Nothing here waits for an
        # acknowledgement; faust's commit does, for everything handed over before it.
        acks: list[Any] = []
        for emit in emits:
            value = None if emit.value is None else codec.encode(emit.value)
            key = emit.key.encode()
            acks.append(await app.producer.send(names[emit.topic], key, value, None, None, None))
        return acks

    async def apply(step: Step, table: Any, key: bytes, timer: DueIndex = index) -> None:
        emits = step.emits
        if step.claim and step.put is not None:
            table[key] = _encoder.encode(step.put)
            # Sent now rather than after the producer's linger (the flush's wait), and this
            # row's own changelog record acknowledged: the flush does not raise if it failed.
            await app.producer.flush()
            await table.last_write
        elif step.unless_since is not None:
            emits = await not_yet_out(emits, step.unless_since)
        acks = await send(emits)
        if step.put_after_acks or step.then:
            await asyncio.gather(*acks)
        if step.delete:
            table.pop(key, None)
        if step.put is not None and not step.claim:
            table[key] = _encoder.encode(step.put)
            if step.then:
                await app.producer.flush()  # the row's changelog record is acknowledged
        if step.then:
            await send(step.then)
        if step.wake_at is not None:
            timer.add(step.wake_at, key.decode())

    # Reads back, on a replay only, what a claimed run already produced (Step.unless_since).
    recent = RecentRecords(cfg.bootstrap)
    recent_open = asyncio.Event()

    @app.task  # type: ignore[untyped-decorator]
    async def read_back() -> None:
        while True:  # until the broker answers: a replay waits for it rather than guess
            try:
                async with recent:
                    recent_open.set()
                    await asyncio.Event().wait()  # open until this task is cancelled
            except asyncio.CancelledError:
                raise
            except Exception:
                recent_open.clear()
                log.exception("read-back consumer failed, retrying")
                await asyncio.sleep(1.0)

    async def not_yet_out(emits: tuple[Emit, ...], since_ms: int) -> tuple[Emit, ...]:
        await recent_open.wait()
        # Record times come from the producer's clock; the claim's from ``clock``: a margin
        # covers the two disagreeing (reading more costs only time, on a replay).
        found = await recent.since(replay.wanted(emits, names), since_ms - REPLAY_MARGIN_MS)
        left = replay.missing(emits, found, names)
        log.info(
            "replayed a claimed request: %d of %d records were out already",
            len(emits) - len(left),
            len(emits),
        )
        return left

    def dedup_row(key: bytes) -> dedup.DedupEntry | None:
        raw = dedup_table.get(key)
        return _dedup_row.decode(raw) if raw else None

    gate_runtime.wire_gates(
        app, gates_topic=outputs["gates"], partitions=cfg.partitions, send=send, now_ms=now_ms
    )

    def run_row(key: bytes) -> RunState | None:
        raw = run_table.get(key)
        return _run_row.decode(raw) if raw else None

    async def apply_run(decision: workflow.Decision, key: bytes) -> None:
        if decision.note:
            log.debug("workflow %s: %s", key.decode(), decision.note)
        if decision.run is not None:
            run_table[key] = _encoder.encode(decision.run)
        await send(decision.emits)

    async def on_waiters(cmd: WaitFor | NotifyEvent | WaitTimeout | DropWaiters) -> None:
        key = waiter_key(cmd.user_id, cmd.event_id).encode()
        raw = waiter_table.get(key)
        row = _waiter_row.decode(raw) if raw else None
        match cmd:
            case WaitFor():
                decision = waiters.on_wait(cmd, row)
            case NotifyEvent():
                decision = waiters.on_notify(cmd, row, now_ms=now_ms())
            case WaitTimeout():
                decision = waiters.on_timeout(cmd, row, now_ms=now_ms())
            case DropWaiters():
                decision = waiters.on_drop(cmd, row)
        if decision.delete:
            waiter_table.pop(key, None)
        elif decision.row is not None:
            waiter_table[key] = _encoder.encode(decision.row)
        await send(decision.emits)
        if decision.wake_at is not None:
            wait_index.add(decision.wake_at, key.decode())

    @waiter_table.on_recover
    async def rebuild_waits() -> None:
        pairs = [
            (due, key.decode())
            for key, raw in waiter_table.items()
            for due in waiters.wake_times(_waiter_row.decode(raw))
        ]
        wait_index.replace_all(pairs)

    @app.task  # type: ignore[untyped-decorator]
    async def wait_due() -> None:
        async def send_timeout(due: int, key: str) -> object:
            user_id, _, event_id = key[len(WAITER_KEY_PREFIX) :].partition("/")
            cmd = WaitTimeout(user_id=user_id, event_id=event_id, due=due)
            return await requests.send(key=key.encode(), value=codec.encode(cmd))

        await run_due(wait_index, now_ms, send_timeout)

    intake_config = IntakeConfig(
        bootstrap=cfg.bootstrap,
        topics=t,
        group_id=f"{cfg.app_id}-intake",
        previous_group=cfg.app_id,
        dedup_window_ms=cfg.dedup_window_ms,
    )

    @app.task  # type: ignore[untyped-decorator]
    async def take_in() -> None:
        # Built here: aiokafka clients belong to the loop faust's worker runs.
        try:
            await Intake(intake_config, clock).run()
        except Exception:
            log.exception("intake stopped")
            raise

    @app.agent(requests)
    async def accept(stream: Any) -> None:
        async for event in stream.events():
            await until_handled(
                functools.partial(accept_one, event.value), what="request", at=event.message
            )

    async def accept_one(raw: bytes) -> None:
        try:
            cmd = codec.decode_request(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            # A malformed record from a Kafka-native producer must not stall its partition.
            log.warning("dropping unreadable publish request: %s", exc)
            return
        match cmd:
            case PublishRequest():
                if cmd.message.workflow is not None:
                    rkey = request_key(cmd).encode()
                    decision = workflow.on_message(cmd, run_row(rkey), now_ms=now_ms())
                    await apply_run(decision, rkey)
                    if decision.forward is None:
                        return
                    cmd = decision.forward
                key = (cmd.dedup_key or cmd.message.message_id).encode()
                # Without a dedup key there is no row to read.
                existing = dedup_row(key) if cmd.dedup_key else None
                step = dedup.accept(cmd, existing, now_ms=now_ms(), window_ms=cfg.dedup_window_ms)
            case ExpireDedup():
                key = cmd.key.encode()
                step = dedup.expire(cmd, dedup_row(key), now_ms=now_ms())
            case EndRun() | FailRun() | FailureCallbackDone():
                rkey = run_key(cmd.user_id, cmd.run_id).encode()
                await apply_run(workflow.on_run_end(cmd, run_row(rkey), now_ms=now_ms()), rkey)
                return
            case ReviveRun():
                rkey = run_key(cmd.user_id, cmd.run_id).encode()
                decision = workflow.on_revive(cmd, run_row(rkey), now_ms=now_ms())
                await apply_run(decision, rkey)
                if decision.forward is None:
                    return
                cmd = decision.forward
                key = cmd.message.message_id.encode()
                step = dedup.accept(cmd, None, now_ms=now_ms(), window_ms=cfg.dedup_window_ms)
            case WaitFor(run_seen=False):
                rkey = run_key(cmd.user_id, cmd.waiter.run_id).encode()
                await apply_run(workflow.on_wait(cmd, run_row(rkey), now_ms=now_ms()), rkey)
                return
            case WaitFor() | NotifyEvent() | WaitTimeout() | DropWaiters():
                await on_waiters(cmd)
                return
        await apply(step, dedup_table, key)

    @app.agent(timers)
    async def hold(stream: Any) -> None:
        async for event in stream.events():
            await until_handled(
                functools.partial(hold_one, event.value, event.message.partition),
                what="timer",
                at=event.message,
            )

    async def hold_one(raw: bytes, partition: int) -> None:
        try:
            cmd = codec.decode_timer(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("dropping unreadable timer command: %s", exc)
            return
        if isinstance(cmd, Tick):
            await on_tick(cmd)
            return
        if isinstance(cmd, FireMany):
            await fire_many(cmd, partition)
            return
        mid = cmd.message.message_id if isinstance(cmd, Schedule) else cmd.message_id
        key = mid.encode()
        raw_row = delay_table.get(key)
        row = _delay_row.decode(raw_row) if raw_row else None
        match cmd:
            case Schedule():
                step = delay.on_schedule(cmd, row, now_ms=now_ms())
            case Fire():
                step = delay.on_fire(cmd, row, now_ms=now_ms())
            case Cancel():
                step = delay.on_cancel(cmd, row, now_ms=now_ms())
        await apply(step, delay_table, key)

    async def fire_many(cmd: FireMany, partition: int) -> None:
        # Every row written here must live on ``partition``: faust writes a table change to the
        # changelog partition of the current event.
        cmd, away = delay.misrouted(cmd, partition, cfg.partitions)
        for fire in away:
            log.warning("re-routing a fire for %s sent to partition %d", fire.message_id, partition)
            await timers.send(key=fire.message_id.encode(), value=codec.encode(fire))
        now = now_ms()
        for item in cmd.fires:
            key = item.message_id.encode()
            raw_row = delay_table.get(key)
            if not raw_row:
                continue  # no row: fired already (a replay, a stale pair); on_fire ignores it
            step = delay.on_fire(item, _delay_row.decode(raw_row), now_ms=now)
            await apply(step, delay_table, key)

    @delay_table.on_recover
    async def rebuild_index() -> None:
        # Streamed from the table into the index: no list of every waiting message, and only
        # each row's due time decoded, not its message.
        index.replace_all(
            (delay.wake_time_of(raw), key.decode()) for key, raw in delay_table.items()
        )
        log.info("streams ready: delay table recovered, %d messages pending", len(index))

    def cron_row(key: bytes) -> ScheduleState | None:
        raw = cron_table.get(key)
        return _cron_row.decode(raw) if raw else None

    # URL groups, for schedules whose destination is one: resolved at every tick.
    groups_view = GroupsView(cfg.bootstrap, t.state)

    @app.task  # type: ignore[untyped-decorator]
    async def follow_groups() -> None:
        await groups_view.run()

    async def on_tick(cmd: Tick) -> None:
        key = cmd.schedule_key.encode()
        async with cron_lock:
            row = cron_row(key)
            group = None
            if row is not None and row.spec.url_group is not None:
                if not groups_view.ready.is_set():
                    # Not caught up yet: waiting here would stall every timer of the partition.
                    # The row is unchanged, so the same Tick counts when it comes again.
                    asyncio.get_running_loop().call_later(1.0, ticks.add, cmd.due, cmd.schedule_key)
                    return
                group = groups_view.lookup(row.spec.user_id, row.spec.url_group)
            step = schedule.on_tick(cmd, row, now_ms=now_ms(), group=group)
            await apply(step, cron_table, key, ticks)

    @app.agent(topic(t.schedules))
    async def schedules(stream: Any) -> None:
        async for event in stream.events():
            key, value = event.key, event.value
            if key:
                await until_handled(
                    functools.partial(schedule_one, key, value), what="schedule", at=event.message
                )

    async def schedule_one(key: bytes, value: bytes | None) -> None:
        async with cron_lock:
            row = cron_row(key)
            if value is None:
                user_id, _, schedule_id = key.decode().partition("/")
                step = schedule.on_delete(user_id, schedule_id, row)
            else:
                try:
                    spec = _spec.decode(value)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    log.warning("dropping unreadable schedule: %s", exc)
                    return
                step = schedule.on_spec(spec, row, now_ms=now_ms())
            await apply(step, cron_table, key, ticks)

    @cron_table.on_recover
    async def rebuild_ticks() -> None:
        pairs: list[tuple[int, str]] = []
        for key, raw in cron_table.items():
            due = schedule.wake_time(_cron_row.decode(raw))
            if due is not None:
                pairs.append((due, key.decode()))
        ticks.replace_all(pairs)
        log.info("streams ready: cron table recovered, %d schedules", len(pairs))

    @app.task  # type: ignore[untyped-decorator]
    async def tick_due() -> None:
        async def send(due: int, key: str) -> object:
            metrics.SCHEDULE_TICKS.inc()
            return await timers.send(
                key=key.encode(), value=codec.encode(Tick(schedule_key=key, due=due))
            )

        await run_due(ticks, now_ms, send)

    @app.timer(sweep_interval_s)  # type: ignore[untyped-decorator]
    async def sweep_dedup() -> None:
        # Rows are only ignored once expired; this makes them go, through the partition owner.
        rows = ((k.decode(), _dedup_row.decode(v)) for k, v in dedup_table.items())
        for cmd in dedup.expired_keys(rows, now_ms=now_ms()):
            await requests.send(key=cmd.key.encode(), value=codec.encode(cmd))

    @app.task  # type: ignore[untyped-decorator]
    async def fire_due() -> None:
        async def send_fires(pairs: list[tuple[int, str]]) -> None:
            # One record per partition and pop (bounded, delay.fire_records), not one per
            # message: each fire was a produce, a consume and a faust event of its own (about
            # 3,000 fires/s). The partition is explicit: the agent handling the record writes
            # every row's change to the record's partition, so it must be theirs.
            now = now_ms()
            for due, _ in pairs:
                metrics.fired(due, now)
            for partition, cmd in delay.fire_records(pairs, cfg.partitions):
                key = cmd.fires[0].message_id.encode()
                await app.producer.send(
                    names["timers"], key, codec.encode(cmd), partition, None, None
                )

        await run_due_batches(index, now_ms, send_fires, delay.FIRE_GATHER_S)

    return app
