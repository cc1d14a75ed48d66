"""Shared pytest fixtures for the whole suite.

Add fixtures under the section they belong to (or a new section); keep each section's imports
and helpers next to it so sections can be read and changed independently.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.kafka import LocalBroker, ensure_jars

# ====================================================================================== Kafka
# One broker per test session: starting one costs seconds. Set KAFKA_BOOTSTRAP_SERVERS to run
# against an existing cluster instead; then `local_broker` is None and fault tests should skip.


@pytest.fixture(scope="session")
def local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The session's LocalBroker, for tests that kill/restart it; None with an external Kafka."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    ensure_jars()
    broker = LocalBroker(Path(tmp_path_factory.mktemp("kafka")))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_broker: LocalBroker | None) -> str:
    """``host:port[,host:port]`` for aiokafka's ``bootstrap_servers``."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        return external
    assert local_broker is not None
    return local_broker.bootstrap
