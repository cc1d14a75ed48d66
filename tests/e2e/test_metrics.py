"""Every role's /metrics on a real stack: after a small load the figures move as they must.

One stack (api, streams, sender and the archiver as processes) publishes deliveries that succeed,
fail for good, answer 489, time out and wait for a delay; then each role's listener is scraped
and parsed with prometheus_client's own parser. A schedule fires last, and the API's own (QStash)
port is asked for ``/metrics``: it has none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.security.helpers import wait_until
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(stack: Stack, role: str) -> Samples:
    text = httpx.get(stack.metrics_url(role), timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def has(samples: Samples, name: str) -> bool:
    return any(n == name for n, _ in samples)


@pytest.fixture
def metrics_stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    with Stack(kafka_bootstrap, tmp_path, env={"KAFSTASH_ARCHIVE_INTERVAL": "1"}) as s:
        s.start_role("archiver")
        yield s


def test_each_role_serves_metrics_that_move_with_the_load(metrics_stack: Stack) -> None:
    stack = metrics_stack
    # The delayed message below must reach the delay table before its 5 s are up.
    stack.wait_log("streams", "streams ready: delay table recovered")
    before = scrape(stack, "api")  # the listener is up before any load
    assert value(before, "kafstash_api_publish_acks_total") == 0
    keys = (stack.user.current_signing_key, stack.user.next_signing_key)
    with Sink(*keys) as sink, httpx.Client(base_url=stack.base_url, timeout=30) as http:
        auth = {"Authorization": f"Bearer {stack.token}"}

        def publish(path: str, **headers: str) -> None:
            r = http.post(
                f"/v2/publish/{sink.url(path)}", headers={**auth, **headers}, content=b"x"
            )
            assert r.status_code == 201, r.text

        for i in range(3):
            publish(f"/ok/{i}")
        # Long enough that the streams worker still holds it when it reads the Schedule.
        publish("/ok/delayed", **{"Upstash-Delay": "5s"})
        publish("/status/500", **{"Upstash-Retries": "0"})
        publish("/nonretryable", **{"Upstash-Retries": "3"})
        publish("/slow/5000", **{"Upstash-Timeout": "1s", "Upstash-Retries": "0"})
        assert http.get("/v2/messages/msg_nope", headers=auth).status_code == 404
        # The metrics are on their own listener only: the QStash port has no /metrics, with or
        # without a token.
        for headers in ({}, auth):
            r = http.get("/metrics", headers=headers)
            assert r.status_code == 404, r.text
            assert "kafstash_" not in r.text
        wait_until(
            "the delayed message to wait in the delay table",
            lambda: value(scrape(stack, "streams"), "kafstash_delayed_messages") >= 1,
        )
        sink.wait_count("/ok/", 4)

        sender = wait_until(
            "the sender's deliveries",
            lambda: (
                (s := scrape(stack, "sender"))
                and value(s, "kafstash_deliveries_total", outcome="timeout") >= 1
                and value(s, "kafstash_deliveries_total", outcome="489") >= 1
                and value(s, "kafstash_deliveries_total", outcome="failed") >= 1
                and s
            ),
        )
    assert isinstance(sender, dict)
    assert value(sender, "kafstash_deliveries_total", outcome="delivered", host="127.0.0.1") == 4
    assert value(sender, "kafstash_deliveries_total", outcome="retry") == 0
    # Labels are bounded: hosts only, never a path or a message id.
    assert not any("/" in v or "msg_" in v for _, ls in sender for _, v in ls if _ != "topic")
    assert value(sender, "kafstash_delivery_first_byte_seconds_count") >= 6  # all but the timeout
    assert value(sender, "kafstash_delivery_end_to_end_seconds_count") == 4
    # The delayed message waited at least its second between publish and delivery.
    assert value(sender, "kafstash_delivery_end_to_end_seconds_sum") >= 5.0
    assert value(sender, "kafstash_dlq_entries_added_total") == 3

    api = scrape(stack, "api")
    publish_route = {"route": "/v2/publish/{destination:path}", "method": "POST"}
    assert value(api, "kafstash_api_requests_total", status="201", **publish_route) == 7
    assert value(api, "kafstash_api_request_duration_seconds_count", **publish_route) == 7
    assert (
        value(api, "kafstash_api_requests_total", route="/v2/messages/{message_id}", status="404")
        == 1
    )
    assert value(api, "kafstash_api_publish_acks_total") == 7
    assert value(api, "kafstash_api_unavailable_total") == 0
    # Both /metrics requests reached the API (and found nothing there).
    assert value(api, "kafstash_api_requests_total", route="unmatched", status="404") == 2
    wait_until(
        "the API's DLQ gauge",
        lambda: value(scrape(stack, "api"), "kafstash_dlq_messages") == 3,
    )

    streams = scrape(stack, "streams")
    assert value(streams, "kafstash_timer_lateness_seconds_count") >= 1
    assert has(streams, "kafstash_delayed_messages")
    assert value(streams, "kafstash_schedule_ticks_total") == 0  # no schedule yet

    # Lag comes from Kafka's committed offsets: it settles to zero once the stages caught up.
    # The streams role reports two stages: the intake (requests) and the tables' agent.
    for role, topic, stage in (
        ("streams", "requests", "intake"),
        ("streams", "table-requests", "streams"),
        ("sender", "deliveries", "sender"),
        ("archiver", "events", "archiver"),
    ):

        def caught_up(role: str = role, topic: str = topic, stage: str = stage) -> bool:
            s = scrape(stack, role)
            t = f"{stack.prefix}.{topic}"
            parts = [
                ls for n, ls in s if n == "kafstash_consumer_lag_records" and ("topic", t) in ls
            ]
            return (
                len(parts) == 2  # the stack's two partitions
                and value(s, "kafstash_consumer_lag_records", topic=t) == 0
                and value(s, "kafstash_consumer_lag_seconds", topic=t) == 0
                and value(s, "kafstash_consumer_group_members", stage=stage) == 1
            )

        wait_until(f"{stage}'s lag to settle", caught_up, timeout=60)

    def archived() -> Samples | None:
        s = scrape(stack, "archiver")
        # 7 messages: 4 x (CREATED, ACTIVE, DELIVERED) at least, plus the failures' events.
        return s if value(s, "kafstash_archiver_rows_flushed_total") >= 20 else None

    archiver = wait_until("the archiver's rows", archived)
    assert isinstance(archiver, dict)
    since = value(archiver, "kafstash_archiver_seconds_since_last_commit")
    assert 0 <= since < 30
    last = value(archiver, "kafstash_archiver_last_commit_timestamp_seconds")
    assert not math.isnan(last)
    assert abs(last - time.time()) < 60
    assert value(archiver, "kafstash_archiver_commits_total") >= 1
    assert has(archiver, "process_cpu_seconds_total")

    # A schedule (every two seconds) fires: the streams' tick counter rises with its ticks.
    with Sink(*keys) as sink, httpx.Client(base_url=stack.base_url, timeout=30) as http:
        r = http.post(
            f"/v2/schedules/{sink.url('/ok/tick')}",
            headers={**auth, "Upstash-Cron": "*/2 * * * * *"},
            content=b"tick",
        )
        assert r.status_code in (200, 201), r.text
        schedule_id = r.json()["scheduleId"]
        fired = sink.wait_count("/ok/tick", 2, timeout=60)
        assert {f.headers["Upstash-Schedule-Id"] for f in fired} == {schedule_id}
        ticks = wait_until(
            "the schedule's ticks to be counted",
            lambda: (
                (n := value(scrape(stack, "streams"), "kafstash_schedule_ticks_total")) >= 2 and n
            ),
        )
        assert http.delete(f"/v2/schedules/{schedule_id}", headers=auth).status_code == 200
    # One tick per delivery at most, give or take the ticks in flight when we looked.
    assert isinstance(ticks, float)
    assert ticks <= len(sink.received("/ok/tick")) + 2
