"""The CLI explains itself: clean help, each role's environment variables, --version."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kafstash import environment
from kafstash.cli import main
from kafstash.config import Settings, archive_maintenance
from kafstash.sinks.iceberg.archiver import DEFAULT_INTERVAL_S, DEFAULT_MAX_ROWS
from kafstash.sinks.iceberg.schedule import DEFAULT_EXPIRE_AFTER_S, DEFAULT_MIN_FILES

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [
    ROOT / "kafstash",
    *(ROOT / room for room in ("schemas", "producers", "streams", "sinks", "infra")),
]


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help([], capsys)
    assert "``" not in out
    assert "QStash-compatible" in out
    for command in ("dev", "api", "streams", "sender", "archiver", "logs"):
        assert command in out


def test_streams_help_names_every_table(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(["streams"], capsys)
    for table in ("dedup", "delay", "cron", "gates"):
        assert table in out


# A few each role must list whatever the table says, so an emptied table fails too.
MUST_LIST = {
    "api": {
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFSTASH_API_PORT",
        "KAFSTASH_RATE_LIMIT",
        "KAFSTASH_USERS_FILE",
    },
    "streams": {"KAFKA_BOOTSTRAP_SERVERS", "KAFSTASH_HOME", "KAFSTASH_DEDUP_WINDOW"},
    "sender": {
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFSTASH_SENDER_CONCURRENCY",
        "KAFSTASH_DESTINATION_ALLOWLIST",
    },
    "archiver": {
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFSTASH_ARCHIVE_INTERVAL",
        "KAFSTASH_ICEBERG_CATALOG_URI",
    },
}


@pytest.mark.parametrize("role", environment.ROLES)
def test_role_help_says_what_it_does_and_lists_its_variables(
    role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _help([role], capsys)
    description = out.split("options:")[0].split("\n", 2)[2]
    assert len(description.split()) >= 10, description
    variables = environment.read_by(role)
    assert MUST_LIST[role] <= {v.name for v in variables}
    for var in variables:
        assert f"{var.name} [{var.default_text}]" in out


def test_every_variable_the_code_names_is_in_the_table() -> None:
    named: set[str] = set()
    for room in SHIPPED:
        for path in room.rglob("*.py"):
            named |= set(
                re.findall(
                    r"\b(KAFSTASH_[A-Z][A-Z_]*[A-Z]|KAFKA_BOOTSTRAP_SERVERS)\b", path.read_text()
                )
            )
    assert named - {v.name for v in environment.VARIABLES} == set()


def test_settings_take_their_defaults_from_the_table() -> None:
    s = Settings.from_env({}, dev=True)
    assert s.api_port == environment.API_PORT.default
    assert s.api_host == environment.API_HOST.default
    assert s.partitions == environment.PARTITIONS.default
    assert s.replication == environment.REPLICATION.default
    assert s.topics.prefix == environment.TOPIC_PREFIX.default
    assert s.sender_concurrency == environment.SENDER_CONCURRENCY.default
    assert s.produce_timeout_s == environment.PRODUCE_TIMEOUT.default
    assert s.dedup_window_ms == environment.DEDUP_WINDOW.default * 1000
    assert s.home == Path(environment.HOME.default).resolve()
    schedule = archive_maintenance({})
    assert schedule.every_s == environment.ARCHIVE_MAINTAIN_EVERY.default
    # The archiver's own constants (used when it is built without the CLI) agree with the help.
    assert environment.ARCHIVE_INTERVAL.default == DEFAULT_INTERVAL_S
    assert environment.ARCHIVE_MAX_ROWS.default == DEFAULT_MAX_ROWS
    assert (
        environment.ARCHIVE_EXPIRE_AFTER.default
        == DEFAULT_EXPIRE_AFTER_S
        == schedule.expire_after_s
    )
    assert environment.ARCHIVE_MAINTAIN_MIN_FILES.default == DEFAULT_MIN_FILES == schedule.min_files


def test_version_prints_the_installed_version() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "kafstash", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"kafstash {importlib.metadata.version('kafstash')}"
