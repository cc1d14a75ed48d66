"""A stream worker alone on the session broker, for the real-broker tests of this folder."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafstash.config import Settings
from kafstash.provision import ensure_topics
from tests.stack import Stack

PARTITIONS = 2
READY = "streams ready: delay table recovered"


@pytest.fixture
def streams_only(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Stack, Settings]]:
    """A stream worker alone (no API, no sender): deliveries stay on their topic to be counted."""
    stack = Stack(kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    settings = Settings.from_env(stack.env)
    asyncio.run(ensure_topics(settings))
    stack.start_role("streams")
    try:
        stack.wait_log("streams", READY)
        yield stack, settings
    finally:
        stack.stop(graceful=False)
