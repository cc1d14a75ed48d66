"""The sender: a consumer-group member that delivers due messages over HTTP.

For each DeliveryDue it signs a fresh JWT, sends the request, classifies the outcome and appends
the records that follow (events, a retry into the delay table, the end of the message). The
source offset is committed only after those appends are acknowledged, so a crash at any point
re-delivers rather than loses (at-least-once; receivers dedupe on Upstash-Message-Id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import msgspec
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import KafkaError

from kafstash.schemas import codec
from kafstash.schemas import headers as h
from kafstash.schemas.addresses import Allowlist
from kafstash.schemas.commands import DeliveryDue
from kafstash.schemas.defaults import (
    DEFAULT_MAX_METRIC_HOSTS,
    DEFAULT_TIMEOUT_MS,
    MAX_TOPIC_MESSAGE_BYTES,
)
from kafstash.schemas.partitioner import CachedPartitioner
from kafstash.schemas.retry_delay import parse_retry_delay
from kafstash.schemas.topics import Topics
from kafstash.schemas.users import User
from kafstash.sinks.http.guard import (
    DestinationRefused,
    GuardedResolver,
    refusal_for_url,
    refusal_of,
)
from kafstash.sinks.http.keys import SigningKeyBook, keys_view
from kafstash.sinks.http.metrics import SenderMetrics
from kafstash.sinks.http.offsets import OffsetTracker
from kafstash.sinks.http.outcome import DeadLetter, Outcome, classify
from kafstash.sinks.http.report import RESPONSE_BODY_LIMIT, Record, after_attempt, header_lists
from kafstash.sinks.http.signing import sign
from kafstash.views.appender import BatchAppender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SenderConfig:
    bootstrap: str
    topics: Topics
    group_id: str
    users: tuple[User, ...]
    concurrency: int = 256
    # Workflow ``context.call`` requests (third-party APIs such as LLMs, often slow) take slots of
    # their own, so a burst of long calls never holds the slots ordinary deliveries need.
    call_concurrency: int = 1024
    commit_interval_s: float = 0.2
    # The SSRF guard (schemas/addresses.py), applied to every address of every attempt.
    allow_private_destinations: bool = False
    destination_allowlist: Allowlist = field(default_factory=Allowlist)
    on_ready: Callable[[], None] | None = None  # called once the consumer is in its group
    max_metric_hosts: int = DEFAULT_MAX_METRIC_HOSTS


_SESSION_TIMEOUT_S = 10.0
_HEARTBEAT_S = 2.0
# How long a revocation waits for the revoked partitions' in-flight deliveries; the group's
# rebalance waits meanwhile. What is still running after it is re-delivered by the next owner.
_DRAIN_S = 30.0
# How long an outcome's append may wait for its acknowledgement before it is tried again.
_APPEND_TIMEOUT_S = 30.0


def _decode(tp: TopicPartition, rec: ConsumerRecord[bytes, bytes]) -> DeliveryDue | None:
    try:
        return codec.decode(rec.value or b"", DeliveryDue)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("dropping unreadable delivery %s@%d: %s", tp, rec.offset, exc)
        return None


def _is_call(due: DeliveryDue) -> bool:
    tag = due.message.workflow
    return tag is not None and tag.call_type == "toCallback"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sender: Sender) -> None:
        self._sender = sender

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._sender.drain(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("sender assigned %d partitions", len(assigned))


class Sender:
    def __init__(self, cfg: SenderConfig, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        # Signing keys: the configured ones until a rotation on the keys topic replaces them.
        self._keys = SigningKeyBook(cfg.users, keys_view(cfg.bootstrap, cfg.topics.keys))
        self.metrics = SenderMetrics(cfg.max_metric_hosts)
        self._resources = contextlib.AsyncExitStack()
        # One tracker per owned partition; a revocation removes it before it drains, which is
        # how the poll loop learns to start nothing more of that partition.
        self._trackers: dict[TopicPartition, OffsetTracker] = {}
        self._tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self._commit_lock = asyncio.Lock()  # commits leave in the order their offsets were read
        self._slots = asyncio.Semaphore(cfg.concurrency)
        self._call_slots = asyncio.Semaphore(cfg.call_concurrency)
        self._topic_of = {
            "events": cfg.topics.events,
            "timers": cfg.topics.timers,
            "messages": cfg.topics.messages,
            "requests": cfg.topics.requests,  # callback messages
            "dlq": cfg.topics.dlq,
            "gates": cfg.topics.gates,
        }
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap,
            group_id=cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=cfg.concurrency,
            session_timeout_ms=int(_SESSION_TIMEOUT_S * 1000),
            heartbeat_interval_ms=int(_HEARTBEAT_S * 1000),
            fetch_max_wait_ms=20,
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=cfg.bootstrap,
            client_id=f"{cfg.group_id}-producer",
            enable_idempotence=True,
            linger_ms=2,
            # aiokafka's 16 KiB default filled with a few attempts' records, and the next
            # append waited for that batch to be sent (MessageBatch.wait_drain: 4% of the
            # sender's samples in benchmarks/run.py --py-spy).
            max_batch_size=256 * 1024,
            max_request_size=MAX_TOPIC_MESSAGE_BYTES,
            partitioner=CachedPartitioner(),
        )
        # An attempt's outcome records (events, retry, end of the message) leave with every
        # other attempt's of the same turn of the loop: one batch per partition.
        self._appender = BatchAppender(self._producer, timeout_s=_APPEND_TIMEOUT_S)
        self._http: aiohttp.ClientSession | None = None
        self._stalled = False  # set by _watch_stalls, cleared once records were held back
        self._last_tick = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self._producer.start()
        await self._resources.enter_async_context(self._appender)
        await self._resources.enter_async_context(self._keys)
        resolver = GuardedResolver(
            allow_private=self.cfg.allow_private_destinations,
            allowlist=self.cfg.destination_allowlist,
        )
        # The DNS cache holds only addresses the resolver checked; redirects are never followed.
        connector = aiohttp.TCPConnector(
            limit=self.cfg.concurrency + self.cfg.call_concurrency,
            ttl_dns_cache=30,
            resolver=resolver,
        )
        self._http = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            # One client serves every user's deliveries: a jar would send the cookie one
            # destination set with the next delivery to that host, whoever published it.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._consumer.subscribe([self.cfg.topics.deliveries], listener=_Rebalance(self))
        await self._consumer.start()
        log.info("sender ready (group %s)", self.cfg.group_id)
        if self.cfg.on_ready is not None:
            self.cfg.on_ready()
        helpers = [
            asyncio.create_task(self._commit_loop(stop)),
            asyncio.create_task(self._watch_stalls(stop)),
        ]
        try:
            while not stop.is_set():
                await self._poll_once()
        finally:
            for task in helpers:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.drain(list(self._trackers))
            await self._consumer.stop()
            await self._http.close()
            # The appender (in resources) stops its lanes before the producer they hand over to.
            await self._resources.aclose()
            await self._producer.stop()

    async def _poll_once(self) -> None:
        batch = await self._consumer.getmany(timeout_ms=200, max_records=self.cfg.concurrency)
        owned = self._consumer.assignment()
        # Every tracker of the batch is taken before the first await: a revocation during a
        # later wait pops it, and the identity check below sees that. Taking one per partition
        # inside the loop made a fresh tracker for a partition drain had just given up, and
        # its records were delivered here and again by the next owner.
        trackers = {
            tp: self._trackers.setdefault(tp, OffsetTracker()) for tp in batch if tp in owned
        }
        for tp, records in batch.items():
            tracker = trackers.get(tp)
            if tracker is None:
                continue
            for rec in records:
                due = _decode(tp, rec)
                slots = self._call_slots if due is not None and _is_call(due) else self._slots
                await slots.acquire()
                if self._trackers.get(tp) is not tracker:
                    # Revoked while this loop waited for a slot: the rest of these records
                    # belong to the next owner, which reads on from the offset drain committed.
                    slots.release()
                    break
                if self._stalled_past_session():
                    slots.release()
                    await self._hold_back(batch, tp, rec.offset)
                    return
                tracker.start(rec.offset)
                task = asyncio.create_task(self._handle(tracker, tp, rec.offset, due, slots))
                self._tasks[task] = tp
                task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    def _stalled_past_session(self) -> bool:
        # The watcher ticks every 0.5 s; a tick older than the session means this process was
        # frozen (SIGSTOP, a VM pause) and sent no heartbeat: the group has probably given its
        # partitions to another member, which is delivering them now.
        return self._stalled or time.monotonic() - self._last_tick > _SESSION_TIMEOUT_S

    async def _hold_back(
        self,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        tp: TopicPartition,
        offset: int,
    ) -> None:
        """Put fetched, unstarted records back and let the heartbeat learn of the rebalance."""
        self._stalled = False
        seen = False
        for part, records in batch.items():
            if part == tp:
                seen = True
                self._consumer.seek(part, offset)
            elif seen and records:  # partitions after tp in this batch were not started at all
                self._consumer.seek(part, records[0].offset)
        log.warning("sender was stalled past its session timeout; waiting for a rebalance")
        await asyncio.sleep(_HEARTBEAT_S * 2)

    async def _watch_stalls(self, stop: asyncio.Event) -> None:
        # A gap between two ticks of this loop longer than the session means the whole process
        # was frozen: no heartbeat went out meanwhile, whatever the poll loop was doing.
        while not stop.is_set():
            await asyncio.sleep(0.5)
            now = time.monotonic()
            if now - self._last_tick > _SESSION_TIMEOUT_S:
                self._stalled = True
            self._last_tick = now

    async def drain(self, partitions: list[TopicPartition]) -> None:
        """Give up ``partitions`` (revoked, or at stop): start nothing more of them, wait for
        their in-flight deliveries (bounded), then commit what finished.

        aiokafka awaits this before the group rebalances, so the next owner starts from an
        offset past every delivery this process made.
        """
        trackers = {tp: tr for tp in partitions if (tr := self._trackers.pop(tp, None)) is not None}
        pending = [task for task, tp in self._tasks.items() if tp in trackers]
        log.info(
            "sender gives up %d partitions, %d deliveries in flight", len(trackers), len(pending)
        )
        if pending:
            _done, late = await asyncio.wait(pending, timeout=_DRAIN_S)
            if late:
                log.warning(
                    "%d deliveries still running after %gs; re-delivered", len(late), _DRAIN_S
                )
        offsets = {tp: off for tp, tr in trackers.items() if (off := tr.committable()) is not None}
        if not offsets:
            return
        try:
            async with self._commit_lock:
                await self._consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("commit of given-up partitions failed; they are re-delivered: %r", exc)

    async def _commit_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.cfg.commit_interval_s)
            try:
                await self._commit()
            except Exception as exc:  # a failed commit is retried next round; never fatal
                log.warning("offset commit failed: %r", exc)

    async def _commit(self) -> None:
        async with self._commit_lock:
            assignment = self._consumer.assignment()
            offsets = {
                tp: off
                for tp, tr in self._trackers.items()
                if tp in assignment and (off := tr.committable()) is not None
            }
            if offsets:
                await self._consumer.commit(offsets)

    # -- one delivery ------------------------------------------------------------------------

    async def _handle(
        self,
        tracker: OffsetTracker,
        tp: TopicPartition,
        offset: int,
        due: DeliveryDue | None,
        slots: asyncio.Semaphore,
    ) -> None:
        if due is not None:
            records = await self._deliver(due)
            await self._append(records)
        # The tracker this offset started in, even if its partition is being given up: drain
        # commits from it.
        tracker.done(offset)
        slots.release()

    async def _append(self, records: list[Record]) -> None:
        # Until the outcome is acknowledged the offset stays uncommitted; keep trying rather
        # than drop it (a restart would redeliver, which is also safe, only slower).
        delay = 0.1
        while True:
            try:
                await self._appender.append(
                    [
                        (
                            self._topic_of[role],
                            key.encode(),
                            None if record is None else codec.encode(record),  # type: ignore[arg-type]
                        )
                        for role, key, record in records
                    ]
                )
                return
            except KafkaError as exc:
                log.warning("appending a delivery outcome failed, retrying: %r", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _out_headers(self, due: DeliveryDue) -> dict[str, str]:
        m = due.message
        signing_key = self._keys.current(m.user_id)
        out_headers: dict[str, str] = {}
        for name, values in m.header.items():
            out_headers[name] = ", ".join(values)
        # Set last so that no forwarded header can override what kafstash vouches for.
        out_headers["User-Agent"] = h.USER_AGENT
        out_headers[h.OUT_MESSAGE_ID] = m.message_id
        out_headers[h.OUT_RETRIED] = str(due.retried)
        if m.topic_name:
            out_headers[h.OUT_TOPIC_NAME] = m.topic_name
        if m.schedule_id:
            out_headers[h.OUT_SCHEDULE_ID] = m.schedule_id
        if m.caller_ip:
            out_headers[h.OUT_CALLER_IP] = m.caller_ip
        if signing_key is not None:
            out_headers[h.OUT_SIGNATURE] = sign(
                signing_key=signing_key,
                url=m.url,
                body=m.body,
                now_s=int(self.clock()),
            )
        return out_headers

    async def _deliver(self, due: DeliveryDue) -> list[Record]:
        assert self._http is not None
        m = due.message
        out_headers = self._out_headers(due)
        timeout_s = (m.timeout_ms or DEFAULT_TIMEOUT_MS) / 1000
        started = time.monotonic()
        started_ms = int(self.clock() * 1000)
        status: int | None = None
        first_byte_ms: int | None = None
        timed_out = False
        resp_headers: list[tuple[str, str]] = []  # as received: a name may repeat
        resp_body: bytes | None = None
        error: str | None = None
        refused: str | None = None
        try:
            # IP literals never reach the resolver: check them here, names in GuardedResolver.
            literal = refusal_for_url(
                m.url,
                allow_private=self.cfg.allow_private_destinations,
                allowlist=self.cfg.destination_allowlist,
            )
            if literal is not None:
                raise DestinationRefused(literal)
            async with self._http.request(
                m.method,
                m.url,
                data=m.body or None,
                headers=out_headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as resp:
                status = resp.status
                first_byte_ms = int(self.clock() * 1000)
                resp_headers = list(resp.headers.items())
                resp_body = await resp.content.read(RESPONSE_BODY_LIMIT)
        except DestinationRefused as exc:
            refused = exc.reason
        except TimeoutError:
            timed_out = True
            error = f"timeout after {timeout_s:g}s"
        except aiohttp.ClientError as exc:
            refused = refusal_of(exc)
            if refused is None:
                error = f"{type(exc).__name__}: {exc}"
        if refused is not None:
            error = f"destination refused: {refused}"
            # Operators need to see this: it usually means a missing allowlist entry.
            log.warning(
                "message %s: %s (failed, not retried)",
                m.message_id,
                error,
                extra={"message_id": m.message_id, "schedule_id": m.schedule_id},
            )
        duration_ms = int((time.monotonic() - started) * 1000)
        now_ms = int(self.clock() * 1000)
        retry_delay = (
            parse_retry_delay(m.retry_delay_expression) if m.retry_delay_expression else None
        )
        # A refused destination will be refused again: straight to the DLQ, no retries.
        outcome: Outcome = (
            DeadLetter(reason=f"destination refused: {refused}")
            if refused is not None
            else classify(
                status=status,
                headers=dict(resp_headers),
                error=error,
                retried=due.retried,
                max_retries=m.max_retries,
                retry_delay=retry_delay,
                now_ms=now_ms,
            )
        )
        self.metrics.attempt(
            m.url,
            outcome,
            status=status,
            timed_out=timed_out,
            due_ms=due.due,
            first_byte_ms=first_byte_ms,
            created_ms=m.created_at,
            now_ms=now_ms,
        )
        if isinstance(outcome, DeadLetter):
            log.info(
                "message %s moved to the DLQ: %s",
                m.message_id,
                outcome.reason,
                extra={"message_id": m.message_id, "schedule_id": m.schedule_id},
            )
        if error is None and status is not None and not 200 <= status < 300:
            error = f"HTTP {status}"
        return after_attempt(
            due,
            outcome,
            status=status,
            response_body=resp_body,
            error=error,
            duration_ms=duration_ms,
            started_ms=started_ms,
            now_ms=now_ms,
            response_headers=header_lists(resp_headers),
        )
