"""The archiver's settings reach its consumer: the group session (how soon a dead archiver's
partitions move on) and the heartbeat derived from it; the default is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafstash import environment
from kafstash.config import ConfigError, Settings
from kafstash.roles import archiver_config
from kafstash.sinks.iceberg.archiver import (
    DEFAULT_SESSION_TIMEOUT_S,
    Archiver,
    ArchiverConfig,
)


async def _session_and_heartbeat_ms(cfg: ArchiverConfig) -> tuple[int, int]:
    consumer = Archiver(cfg)._consumer  # built, never started: no broker needed
    try:
        return consumer._session_timeout_ms, consumer._heartbeat_interval_ms
    finally:
        await consumer.stop()


def _settings(home: Path) -> Settings:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "KAFSTASH_HOME": str(home)}
    return Settings.from_env(env, dev=True)


async def test_default_session_is_30_s_with_a_3_s_heartbeat(tmp_path: Path) -> None:
    cfg = archiver_config(_settings(tmp_path), {}, create_dirs=False)
    assert cfg.session_timeout_s == DEFAULT_SESSION_TIMEOUT_S == 30.0
    assert environment.ARCHIVE_SESSION_TIMEOUT.default == DEFAULT_SESSION_TIMEOUT_S
    assert await _session_and_heartbeat_ms(cfg) == (30_000, 3_000)


async def test_a_short_session_gets_a_heartbeat_of_a_third_of_it(tmp_path: Path) -> None:
    env = {"KAFSTASH_ARCHIVE_SESSION_TIMEOUT": "6"}
    cfg = archiver_config(_settings(tmp_path), env, create_dirs=False)
    assert cfg.session_timeout_s == 6.0
    assert await _session_and_heartbeat_ms(cfg) == (6_000, 2_000)


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_session_that_is_no_positive_number_is_refused(tmp_path: Path, value: str) -> None:
    env = {"KAFSTASH_ARCHIVE_SESSION_TIMEOUT": value}
    with pytest.raises(ConfigError, match="SESSION_TIMEOUT"):
        archiver_config(_settings(tmp_path), env, create_dirs=False)
