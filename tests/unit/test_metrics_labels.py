"""Metric labels stay bounded: hosts capped with "other", routes by template, fixed outcomes."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kafstash.config import ConfigError
from kafstash.monitoring import metrics_address
from kafstash.producers.api import metrics as api_metrics
from kafstash.sinks.http import metrics as sender_metrics
from kafstash.sinks.http.metrics import OUTCOMES, HostLabels, SenderMetrics, outcome_label
from kafstash.sinks.http.outcome import DeadLetter, Delivered, RetryAt


def test_hosts_past_the_cap_share_other() -> None:
    hosts = HostLabels(limit=2)
    assert hosts("https://a.example/x?id=1") == "a.example"
    assert hosts("https://B.example:8443/y") == "b.example"
    assert hosts("https://c.example/") == "other"
    # Hosts already named keep their label once the cap is reached.
    assert hosts("http://a.example/other/path") == "a.example"
    assert {hosts(f"https://h{i}.example/") for i in range(100)} == {"other"}


def test_unparseable_or_hostless_urls_are_other() -> None:
    hosts = HostLabels(limit=10)
    assert hosts("http://[::1") == "other"
    assert hosts("not a url") == "other"


def test_a_cap_of_zero_names_no_host() -> None:
    assert HostLabels(limit=0)("https://a.example/") == "other"


@pytest.mark.parametrize(
    ("outcome", "status", "timed_out", "label"),
    [
        (Delivered(), 200, False, "delivered"),
        (RetryAt(at_ms=1, reason="HTTP 500"), 500, False, "retry"),
        (DeadLetter(reason="HTTP 500"), 500, False, "failed"),
        (DeadLetter(reason="non-retryable"), 489, False, "489"),
        (RetryAt(at_ms=1, reason="HTTP 489"), 489, False, "489"),
        (RetryAt(at_ms=1, reason="timeout"), None, True, "timeout"),
        (DeadLetter(reason="timeout"), None, True, "timeout"),
        (RetryAt(at_ms=1, reason="connection refused"), None, False, "retry"),
    ],
)
def test_outcome_labels(outcome: object, status: int | None, timed_out: bool, label: str) -> None:
    assert outcome_label(outcome, status=status, timed_out=timed_out) == label  # type: ignore[arg-type]
    assert label in OUTCOMES


def _sample(registry: object, name: str, labels: dict[str, str] | None = None) -> float:
    value = registry.get_sample_value(name, labels or {})  # type: ignore[attr-defined]
    return 0.0 if value is None else float(value)


def test_sender_metrics_count_by_outcome_and_host_and_time_the_delivery() -> None:
    m = SenderMetrics(max_hosts=1)
    reg = sender_metrics.REGISTRY
    before = _sample(reg, "kafstash_deliveries_total", {"outcome": "delivered", "host": "one.test"})
    other = _sample(reg, "kafstash_deliveries_total", {"outcome": "failed", "host": "other"})
    e2e = _sample(reg, "kafstash_delivery_end_to_end_seconds_sum")
    count = _sample(reg, "kafstash_delivery_first_byte_seconds_count")
    m.attempt(
        "https://one.test/a",
        Delivered(),
        status=200,
        timed_out=False,
        due_ms=1_000,
        first_byte_ms=1_250,
        created_ms=500,
        now_ms=1_300,
    )
    m.attempt(
        "https://two.test/b",
        DeadLetter(reason="x"),
        status=None,
        timed_out=False,
        due_ms=1_000,
        first_byte_ms=None,
        created_ms=500,
        now_ms=1_300,
    )
    assert _sample(
        reg, "kafstash_deliveries_total", {"outcome": "delivered", "host": "one.test"}
    ) == (before + 1)
    assert _sample(reg, "kafstash_deliveries_total", {"outcome": "failed", "host": "other"}) == (
        other + 1
    )
    assert _sample(reg, "kafstash_delivery_end_to_end_seconds_sum") == pytest.approx(e2e + 0.8)
    # No first byte arrived for the second attempt: only the first is timed.
    assert _sample(reg, "kafstash_delivery_first_byte_seconds_count") == count + 1


async def test_api_requests_are_labelled_by_route_template_never_the_raw_path() -> None:
    async def echo(request: Request) -> Response:
        return JSONResponse({"id": request.path_params["message_id"]})

    app = Starlette(
        routes=[Route("/v2/messages/{message_id}", echo, methods=["GET"])],
        middleware=[Middleware(api_metrics.RequestMetrics)],
    )
    reg = api_metrics.REGISTRY
    ok = {"route": "/v2/messages/{message_id}", "method": "GET", "status": "200"}
    missing = {"route": "unmatched", "method": "GET", "status": "404"}
    before_ok, before_missing = (
        _sample(reg, "kafstash_api_requests_total", ok),
        _sample(reg, "kafstash_api_requests_total", missing),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        assert (await client.get("/v2/messages/msg_secret1")).status_code == 200
        assert (await client.get("/v2/messages/msg_secret2")).status_code == 200
        assert (await client.get("/nowhere/https://example.com/x")).status_code == 404
        assert (await client.request("BREW", "/v2/messages/x")).status_code == 405
    assert _sample(reg, "kafstash_api_requests_total", ok) == before_ok + 2
    assert _sample(reg, "kafstash_api_requests_total", missing) == before_missing + 1
    assert _sample(reg, "kafstash_api_request_duration_seconds_count", ok) >= 2
    exposed = " ".join(
        f"{s.labels}" for metric in reg.collect() for s in metric.samples if s.labels
    )
    assert "msg_secret" not in exposed
    assert "example.com" not in exposed
    assert "BREW" not in exposed


def test_metrics_ports_come_from_one_variable_per_role() -> None:
    assert metrics_address("api", {}) is None
    assert metrics_address("api", {"KAFSTASH_METRICS_PORT_API": "0"}) is None
    addr = metrics_address("sender", {"KAFSTASH_METRICS_PORT_SENDER": "9403"})
    assert addr is not None
    assert addr.url == "http://127.0.0.1:9403/metrics"
    addr = metrics_address(
        "archiver", {"KAFSTASH_METRICS_PORT_ARCHIVER": "9404", "KAFSTASH_METRICS_HOST": "0.0.0.0"}
    )
    assert addr is not None
    assert (addr.host, addr.port) == ("0.0.0.0", 9404)
    for bad in ("x", "70000", "-1"):
        with pytest.raises(ConfigError, match="KAFSTASH_METRICS_PORT_API"):
            metrics_address("api", {"KAFSTASH_METRICS_PORT_API": bad})
