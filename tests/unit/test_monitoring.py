"""A role's metrics listener: serves its own registry; a port in use costs the metrics only."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from kafstash.config import Settings
from kafstash.monitoring import serve

SETTINGS = Settings.from_env({"KAFSTASH_DEV": "true"})


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_role_serves_its_own_registry_on_its_port() -> None:
    registry = CollectorRegistry()
    Counter("kafstash_probe_things", "things", registry=registry).inc(3)
    port = _port()
    address = serve("sender", registry, SETTINGS, {"KAFSTASH_METRICS_PORT_SENDER": str(port)})
    assert address is not None
    assert address.url == f"http://127.0.0.1:{port}/metrics"
    text = httpx.get(address.url, timeout=5).text
    assert "kafstash_probe_things_total 3.0" in text
    assert "process_cpu_seconds_total" in text


def test_a_port_in_use_leaves_the_role_running_without_metrics(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="kafstash.monitoring"):
            address = serve(
                "sender", CollectorRegistry(), SETTINGS, {"KAFSTASH_METRICS_PORT_SENDER": str(port)}
            )
    assert address is None
    assert "cannot listen" in caplog.text
