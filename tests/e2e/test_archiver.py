"""The archiver against the real broker: the Iceberg table holds exactly the events the topic holds.

Pass rule: the multiset of ``event_id`` in the table equals the set of ``<topic>:<partition>:
<offset>`` read from the events topic: no gap, no duplicate, also across ``kill -9``, and after
``kafstash archive maintain`` (or the archiver's own schedule) rewrote the day's files.

The same contract holds for every catalog and warehouse (``tests/iceberg_backends.py``): the
kill -9 test runs on the default (SQLite catalog, local warehouse) and on the shared-deployment
setup (PostgreSQL catalog, S3 warehouse on moto), a smaller kill -9 test on Apache Iceberg's REST
catalog. Backends whose tools are missing skip with the reason.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform

from kafstash.schemas.delivery_log import COLUMNS, REQUIRED_COLUMNS
from kafstash.sinks.iceberg.checkpoint import latest_offsets
from kafstash.sinks.iceberg.maintain import files_per_day
from kafstash.sinks.iceberg.table import CatalogConfig, open_table, summaries
from tests.iceberg_backends import MotoS3, Postgres, RestCatalog, Unavailable
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker


# -- backends: one server per session, each test in its own namespace (its topic prefix) -----


def _serve(backend: Postgres | RestCatalog | MotoS3) -> Iterator[object]:
    try:
        backend.start()
    except Unavailable as exc:
        backend.stop()
        pytest.skip(str(exc))
    except BaseException:
        backend.stop()
        raise
    try:
        yield backend
    finally:
        backend.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    yield from _serve(Postgres())


@pytest.fixture(scope="session")
def rest_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    yield from _serve(RestCatalog(tmp_path_factory.mktemp("iceberg-rest")))


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    yield from _serve(MotoS3(tmp_path_factory.mktemp("moto")))


def backend_env(request: pytest.FixtureRequest, backends: str) -> dict[str, str]:
    """The environment that points a Stack's archiver at catalog and warehouse ``a-b``."""
    env: dict[str, str] = {}
    for backend in backends.split("-"):
        match backend:
            case "sqlite":
                pass  # the default: catalog and warehouse under $KAFSTASH_HOME/iceberg
            case "postgres":
                pg = request.getfixturevalue("postgres")
                assert isinstance(pg, Postgres)
                env |= pg.env()
            case "rest":
                rest = request.getfixturevalue("rest_catalog")
                assert isinstance(rest, RestCatalog)
                env |= rest.env()
            case "s3":
                s3 = request.getfixturevalue("moto_s3")
                assert isinstance(s3, MotoS3)
                env |= s3.env(s3.create_bucket())
            case _:
                raise AssertionError(backend)
    return env


def _stack(kafka_bootstrap: str, tmp_path: Path, **env: str) -> Iterator[Stack]:
    # A restarted archiver gets partitions once its killed predecessor's session expired: the
    # broker's shortest (6 s) instead of the default 30 s, twice per kill -9 test otherwise.
    env = {"KAFSTASH_ARCHIVE_INTERVAL": "2", "KAFSTASH_ARCHIVE_SESSION_TIMEOUT": "6", **env}
    with Stack(kafka_bootstrap, tmp_path, env=env) as s:
        yield s


@pytest.fixture
def archive_stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    yield from _stack(kafka_bootstrap, tmp_path)


@pytest.fixture(params=["sqlite", "postgres-s3"])
def crash_stack(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    # Small, frequent batches: the kill lands between, during and after commits.
    yield from _stack(
        kafka_bootstrap,
        tmp_path,
        KAFSTASH_ARCHIVE_INTERVAL="0.3",
        KAFSTASH_ARCHIVE_MAX_ROWS="40",
        **backend_env(request, request.param),
    )


@pytest.fixture
def rest_stack(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    yield from _stack(
        kafka_bootstrap,
        tmp_path,
        KAFSTASH_ARCHIVE_INTERVAL="0.3",
        KAFSTASH_ARCHIVE_MAX_ROWS="20",
        **backend_env(request, "rest"),
    )


@pytest.fixture
def maintain_stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    # Many small appends, and maintenance every 2 s that rewrites a day from 3 files on and
    # keeps no snapshot history: every run compacts and expires while rows keep coming.
    yield from _stack(
        kafka_bootstrap,
        tmp_path,
        KAFSTASH_ARCHIVE_INTERVAL="0.3",
        KAFSTASH_ARCHIVE_MAX_ROWS="20",
        KAFSTASH_ARCHIVE_MAINTAIN_EVERY="2",
        KAFSTASH_ARCHIVE_MAINTAIN_MIN_FILES="3",
        KAFSTASH_ARCHIVE_EXPIRE_AFTER="0",
    )


@pytest.fixture
def archive_sink(archive_stack: Stack) -> Iterator[Sink]:
    with Sink(archive_stack.user.current_signing_key, archive_stack.user.next_signing_key) as s:
        yield s


# -- helpers ---------------------------------------------------------------------------------


async def _publish(stack: Stack, jobs: list[tuple[str, dict[str, str]]]) -> list[str]:
    headers = {"Authorization": f"Bearer {stack.token}"}
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=stack.base_url, headers=headers, timeout=30) as client:

        async def one(i: int, url: str, extra: dict[str, str]) -> None:
            r = await client.post(f"/v2/publish/{url}", content=f"m{i}".encode(), headers=extra)
            assert r.status_code == 201, r.text
            ids.append(r.json()["messageId"])

        await asyncio.gather(*(one(i, u, h) for i, (u, h) in enumerate(jobs)))
    return ids


def publish(stack: Stack, jobs: list[tuple[str, dict[str, str]]]) -> list[str]:
    return asyncio.run(_publish(stack, jobs))


async def _topic_ids(bootstrap: str, topic: str, partitions: int) -> list[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        ids: list[str] = []
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                ids.extend(f"{topic}:{tp.partition}:{r.offset}" for r in records)
        return ids
    finally:
        await consumer.stop()


def topic_ids(stack: Stack) -> list[str]:
    partitions = int(stack.env["KAFSTASH_PARTITIONS"])
    return asyncio.run(_topic_ids(stack.bootstrap, f"{stack.prefix}.events", partitions))


def table(stack: Stack) -> Table:
    cfg = CatalogConfig.from_env(stack.env, home=stack.home, namespace=stack.prefix)
    return open_table(cfg)


def table_ids(stack: Stack) -> list[str]:
    t = table(stack)
    if t.current_snapshot() is None:
        return []
    return list(t.scan(selected_fields=("event_id",)).to_arrow().column("event_id").to_pylist())


def wait_archived(stack: Stack, *, quiet_s: float = 3, timeout: float = 180) -> list[str]:
    """Until the topic stops growing and the table holds as many rows as the topic has events."""
    deadline = time.monotonic() + timeout
    last: tuple[int, float] = (-1, time.monotonic())
    while True:
        in_topic = topic_ids(stack)
        if len(in_topic) != last[0]:
            last = (len(in_topic), time.monotonic())
        in_table = table_ids(stack)
        settled = time.monotonic() - last[1] >= quiet_s
        if settled and len(in_table) >= len(in_topic) > 0:
            return in_topic
        if time.monotonic() > deadline:
            raise AssertionError(
                f"table has {len(in_table)} rows, topic {len(in_topic)} events:\n"
                + stack.tail("archiver")
            )
        time.sleep(1)


def assert_exactly_once(stack: Stack) -> list[str]:
    in_topic = wait_archived(stack)
    in_table = table_ids(stack)
    counts = Counter(in_table)
    duplicates = {i: c for i, c in counts.items() if c > 1}
    missing = set(in_topic) - set(counts)
    unknown = set(counts) - set(in_topic)
    print(f"topic={len(in_topic)} table={len(in_table)} duplicates={len(duplicates)}")
    assert duplicates == {}
    assert missing == set()
    assert unknown == set()
    return in_topic


def kafstash(stack: Stack, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "kafstash", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


# -- tests -----------------------------------------------------------------------------------


def test_table_holds_exactly_the_topics_events(
    archive_stack: Stack, archive_sink: Sink, route: Callable[[str], str]
) -> None:
    stack, sink = archive_stack, archive_sink
    ok, flaky, broken = route("ok"), route("fail").replace("/fail/", "/fail/1/"), route("status")
    broken = broken.replace("/status/", "/status/500/")
    retry_fast = {"Upstash-Retries": "3", "Upstash-Retry-Delay": "100"}
    jobs = (
        [(sink.url(f"{ok}-{i}"), {}) for i in range(20)]
        + [(sink.url(f"{flaky}-{i}"), retry_fast) for i in range(5)]
        + [(sink.url(f"{broken}-{i}"), {"Upstash-Retries": "0"}) for i in range(5)]
    )
    ids = publish(stack, jobs)
    assert len(ids) == 30
    sink.wait_count(ok, 20, timeout=60)
    sink.wait_count(flaky.rsplit("/", 1)[0], 10, timeout=60)
    sink.wait_count(broken.rsplit("/", 1)[0], 5, timeout=60)

    stack.start_role("archiver")
    in_topic = assert_exactly_once(stack)
    assert len(in_topic) >= 30 * 3  # CREATED, ACTIVE, an outcome (at least) per message

    # Schema and partitioning, through pyiceberg.
    t = table(stack)
    assert [f.name for f in t.schema().fields] == [c.name for c in COLUMNS]
    assert {f.name for f in t.schema().fields if f.required} == REQUIRED_COLUMNS
    [spec_field] = t.spec().fields
    assert isinstance(spec_field.transform, DayTransform)
    assert t.schema().find_field(spec_field.source_id).name == "event_time"
    today = datetime.now(UTC).date()
    partitions = t.inspect.partitions().column("partition").to_pylist()
    assert {p["event_day"] for p in partitions} <= {today - timedelta(days=1), today}
    assert t.properties["write.metadata.delete-after-commit.enabled"] == "true"
    assert latest_offsets(summaries(t), f"{stack.prefix}.events")

    # The same table through DuckDB.
    con = t.scan().to_duckdb("delivery_log")
    by_state = dict(con.execute("SELECT state, count(*) FROM delivery_log GROUP BY 1").fetchall())
    assert by_state["CREATED"] == 30
    assert by_state["DELIVERED"] == 25
    assert by_state["FAILED"] == 5
    assert by_state["RETRY"] == 5
    [(typ,)] = con.execute(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'delivery_log' AND column_name = 'event_time'"
    ).fetchall()
    assert typ == "TIMESTAMP WITH TIME ZONE"
    [(headers_leak,)] = con.execute(
        "SELECT count(*) FROM delivery_log WHERE response_body LIKE '%Bearer%'"
    ).fetchall()
    assert headers_leak == 0

    # kafstash logs: SQL and the ready reports, on this data.
    out = kafstash(
        stack, "logs", "query", "SELECT count(*) AS n FROM delivery_log", "--format=json"
    )
    assert json.loads(out) == [{"n": len(in_topic)}]
    rates = json.loads(kafstash(stack, "logs", "report", "success-rate", "--format", "json"))
    assert sum(r["delivered"] for r in rates) == 25
    assert sum(r["failed"] for r in rates) == 5
    assert all(r["p50_ms"] is not None and r["p99_ms"] >= r["p50_ms"] for r in rates)
    failures = json.loads(kafstash(stack, "logs", "report", "failures", "--format", "json"))
    assert {f["status"]: f["failed_attempts"] for f in failures} == {"500": 10}
    retries = json.loads(kafstash(stack, "logs", "report", "retries", "--format", "json"))
    assert {r["retries"]: r["messages"] for r in retries} == {0: 25, 1: 5}
    dlq = kafstash(stack, "logs", "report", "dlq")
    assert "failed_messages" in dlq.splitlines()[0]
    assert dlq.splitlines()[2].split()[1] == "5"
    csv_out = kafstash(stack, "logs", "report", "failures", "--format", "csv")
    assert csv_out.splitlines()[0].startswith("status,failed_attempts")

    # More batches, more small files; then maintenance makes each day's files one.
    publish(stack, [(sink.url(f"{ok}-more-{i}"), {}) for i in range(5)])
    sink.wait_count(f"{ok}-more-", 5, timeout=60)
    in_topic = assert_exactly_once(stack)
    stack.kill("archiver")  # maintenance wants a quiet day; the archiver is restarted below
    t = table(stack)
    days = {p["event_day"] for p in t.inspect.partitions().column("partition").to_pylist()}
    files_before = len(t.inspect.files())
    for d in sorted(days):
        print(kafstash(stack, "archive", "maintain", "--day", d.isoformat()))
    print(kafstash(stack, "archive", "maintain", "--expire-older-than-hours", "0"))
    t = table(stack)
    files_after = len(t.inspect.files())
    print(f"data files {files_before} -> {files_after}, snapshots {len(t.metadata.snapshots)}")
    assert files_before > files_after == len(days)
    assert Counter(table_ids(stack)) == Counter(in_topic)
    assert len(t.metadata.snapshots) == 1
    assert latest_offsets(summaries(t), f"{stack.prefix}.events")

    # The archiver resumes from the offsets the maintenance commit carried forward.
    publish(stack, [(sink.url(f"{ok}-after-{i}"), {}) for i in range(5)])
    sink.wait_count(f"{ok}-after-", 5, timeout=60)
    stack.start_role("archiver")
    after = assert_exactly_once(stack)
    assert len(after) > len(in_topic)


def test_kill_9_mid_batch_leaves_every_event_exactly_once(
    crash_stack: Stack, route: Callable[[str], str]
) -> None:
    stack = crash_stack
    sink = Sink(stack.user.current_signing_key, stack.user.next_signing_key)
    sink.start()
    try:
        ok = route("ok")
        stack.start_role("archiver")
        publish(stack, [(sink.url(f"{ok}-a{i}"), {}) for i in range(150)])
        # Kill while rows flow: after some commits, before the topic is fully archived.
        deadline = time.monotonic() + 120
        while len(table_ids(stack)) < 40 and time.monotonic() < deadline:
            time.sleep(0.2)
        publish(stack, [(sink.url(f"{ok}-b{i}"), {}) for i in range(50)])
        stack.kill("archiver")
        archived_at_kill = len(table_ids(stack))
        publish(stack, [(sink.url(f"{ok}-c{i}"), {}) for i in range(50)])
        stack.start_role("archiver")
        time.sleep(1.5)
        stack.kill("archiver")  # and once more, early in its life
        stack.start_role("archiver")
        sink.wait_count(ok, 250, timeout=120)
        in_topic = assert_exactly_once(stack)
        print(f"archived at kill: {archived_at_kill} of {len(in_topic)}")
        assert archived_at_kill < len(in_topic)
        if "KAFSTASH_ICEBERG_WAREHOUSE" in stack.env:  # the S3 warehouse, read back by DuckDB
            t = table(stack)
            assert t.metadata_location.startswith("s3://")
            con = t.scan().to_duckdb("delivery_log")
            [(created, delivered)] = con.execute(
                "SELECT count(*) FILTER (state = 'CREATED'), count(*) FILTER (state = 'DELIVERED')"
                " FROM delivery_log"
            ).fetchall()
            assert (created, delivered) == (250, 250)
    finally:
        sink.stop()


def test_archiver_contract_on_the_rest_catalog(
    rest_stack: Stack, route: Callable[[str], str]
) -> None:
    """Exactly once across kill -9 with Iceberg's REST catalog, read back through DuckDB."""
    stack = rest_stack
    with Sink(stack.user.current_signing_key, stack.user.next_signing_key) as sink:
        ok = route("ok")
        stack.start_role("archiver")
        publish(stack, [(sink.url(f"{ok}-a{i}"), {}) for i in range(30)])
        deadline = time.monotonic() + 120
        while len(table_ids(stack)) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        stack.kill("archiver")
        archived_at_kill = len(table_ids(stack))
        publish(stack, [(sink.url(f"{ok}-b{i}"), {}) for i in range(15)])
        stack.start_role("archiver")
        sink.wait_count(ok, 45, timeout=120)
        in_topic = assert_exactly_once(stack)
        print(f"archived at kill: {archived_at_kill} of {len(in_topic)}")
        assert 0 < archived_at_kill < len(in_topic)

    t = table(stack)
    assert t.metadata_location.startswith("file:")  # where the REST server put it, not us
    assert not (stack.home / "iceberg").exists()  # no local catalog was used
    con = t.scan().to_duckdb("delivery_log")
    by_state = dict(con.execute("SELECT state, count(*) FROM delivery_log GROUP BY 1").fetchall())
    assert by_state["CREATED"] == 45
    assert by_state["DELIVERED"] == 45
    assert latest_offsets(summaries(t), f"{stack.prefix}.events")


def test_scheduled_maintenance_keeps_every_event_exactly_once(
    maintain_stack: Stack, route: Callable[[str], str]
) -> None:
    stack = maintain_stack
    with Sink(stack.user.current_signing_key, stack.user.next_signing_key) as sink:
        ok = route("ok")
        stack.start_role("archiver")
        publish(stack, [(sink.url(f"{ok}-a{i}"), {}) for i in range(60)])
        sink.wait_count(ok, 60, timeout=120)
        assert_exactly_once(stack)

        # Once the topic is quiet, the next scheduled run leaves each day fewer than 3 files
        # and one snapshot, and that snapshot still says where every partition resumes.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            t = table(stack)
            files = files_per_day(t)
            if max(files.values()) < 3 and len(t.metadata.snapshots) == 1:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"not maintained: {files}, {len(t.metadata.snapshots)} snapshots")
        log = stack.logs["archiver"].read_text()
        assert "maintenance: day" in log  # compacted (not only expired)
        ends: dict[int, int] = {}
        for event_id in topic_ids(stack):
            _, partition, offset = event_id.rsplit(":", 2)
            ends[int(partition)] = max(ends.get(int(partition), 0), int(offset) + 1)
        assert latest_offsets(summaries(t), f"{stack.prefix}.events") == ends

        # kill -9 after maintenance, more events, restart: resumes from the carried offsets.
        stack.kill("archiver")
        publish(stack, [(sink.url(f"{ok}-b{i}"), {}) for i in range(30)])
        stack.start_role("archiver")
        sink.wait_count(ok, 90, timeout=120)
        in_topic = assert_exactly_once(stack)
        assert len(in_topic) >= 90 * 3
