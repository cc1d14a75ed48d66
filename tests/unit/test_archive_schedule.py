"""The archiver's maintenance schedule (pure, fake clocks) and the catalog settings it reads.

REST catalogs and S3 warehouses are configuration: these pin how the environment maps onto
pyiceberg's catalog properties (the e2e tests run them against real servers).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from kafstash.config import ConfigError, archive_maintenance
from kafstash.schemas.events import MessageEvent
from kafstash.sinks.iceberg.checkpoint import CommitProperties, latest_offsets
from kafstash.sinks.iceberg.maintain import files_per_day, run_plan
from kafstash.sinks.iceberg.rows import to_arrow, to_row
from kafstash.sinks.iceberg.schedule import (
    DEFAULT_EXPIRE_AFTER_S,
    DEFAULT_MIN_FILES,
    MaintainSchedule,
    due,
    plan,
)
from kafstash.sinks.iceberg.table import (
    CatalogConfig,
    CatalogConfigError,
    open_table,
    pyiceberg_properties,
    summaries,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
D1, D2, D3 = date(2026, 11, 25), date(2026, 11, 26), date(2026, 11, 27)

# -- due -------------------------------------------------------------------------------------


def test_off_by_default_never_due() -> None:
    off = MaintainSchedule(every_s=0)
    assert not off.enabled
    assert not due(off, last_run=0.0, now=1e9)


def test_due_every_period_counted_from_the_last_run() -> None:
    s = MaintainSchedule(every_s=3600)
    assert not due(s, last_run=100.0, now=100.0)  # not at start: a crash loop does no rewrites
    assert not due(s, last_run=100.0, now=3699.9)
    assert due(s, last_run=100.0, now=3700.0)
    assert due(s, last_run=100.0, now=99_999.0)


# -- plan ------------------------------------------------------------------------------------


def test_plan_compacts_days_with_enough_files_oldest_first_today_included() -> None:
    s = MaintainSchedule(every_s=60, min_files=4, expire_after_s=None)
    p = plan(s, {D3: 9, D1: 4, D2: 3}, now=NOW)
    assert p.days == (D1, D3)
    assert p.expire_before is None
    assert not p.empty


def test_plan_never_rewrites_a_single_file_day() -> None:
    s = MaintainSchedule(every_s=60, min_files=1, expire_after_s=None)
    assert plan(s, {D1: 1, D2: 2}, now=NOW).days == (D2,)


def test_plan_expires_snapshots_older_than_the_history_kept() -> None:
    s = MaintainSchedule(every_s=60, expire_after_s=3600)
    p = plan(s, {}, now=NOW)
    assert p.days == ()
    assert p.expire_before == NOW - timedelta(hours=1)
    assert plan(MaintainSchedule(every_s=60, expire_after_s=0), {}, now=NOW).expire_before == NOW


def test_plan_with_nothing_to_do_is_empty() -> None:
    s = MaintainSchedule(every_s=60, min_files=8, expire_after_s=None)
    assert plan(s, {D1: 7}, now=NOW).empty


# -- settings --------------------------------------------------------------------------------


def test_maintenance_settings_defaults_and_values() -> None:
    default = archive_maintenance({})
    assert default == MaintainSchedule(
        every_s=0, expire_after_s=DEFAULT_EXPIRE_AFTER_S, min_files=DEFAULT_MIN_FILES
    )
    assert not default.enabled
    env = {
        "KAFSTASH_ARCHIVE_MAINTAIN_EVERY": "3600",
        "KAFSTASH_ARCHIVE_MAINTAIN_MIN_FILES": "12",
        "KAFSTASH_ARCHIVE_EXPIRE_AFTER": "86400",
    }
    assert archive_maintenance(env) == MaintainSchedule(
        every_s=3600, expire_after_s=86400, min_files=12
    )
    assert archive_maintenance({"KAFSTASH_ARCHIVE_EXPIRE_AFTER": "never"}).expire_after_s is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KAFSTASH_ARCHIVE_MAINTAIN_EVERY", "hourly"),
        ("KAFSTASH_ARCHIVE_MAINTAIN_EVERY", "-1"),
        ("KAFSTASH_ARCHIVE_MAINTAIN_MIN_FILES", "1"),
        ("KAFSTASH_ARCHIVE_MAINTAIN_MIN_FILES", "many"),
        ("KAFSTASH_ARCHIVE_EXPIRE_AFTER", "forever"),
    ],
)
def test_maintenance_settings_reject_bad_values_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        archive_maintenance({name: value})


def test_rest_catalog_from_env(tmp_path: Path) -> None:
    env = {
        "KAFSTASH_ICEBERG_CATALOG_TYPE": "REST",
        "KAFSTASH_ICEBERG_CATALOG_URI": "http://catalog:8181",
        "KAFSTASH_ICEBERG_WAREHOUSE": "s3://lake/warehouse",
        "PYICEBERG_CATALOG__KAFSTASH__TOKEN": "secret-token",
        "PYICEBERG_CATALOG__KAFSTASH__S3__ENDPOINT": "http://minio:9000",
    }
    cfg = CatalogConfig.from_env(env, home=tmp_path, namespace="prod")
    assert cfg.properties == {
        "type": "rest",
        "uri": "http://catalog:8181",
        "warehouse": "s3://lake/warehouse",
        "token": "secret-token",
        "s3.endpoint": "http://minio:9000",
    }
    assert cfg.identifier == ("prod", "delivery_log")
    assert not (tmp_path / "iceberg").exists()  # nothing local for a remote catalog


def test_rest_catalog_needs_a_uri(tmp_path: Path) -> None:
    with pytest.raises(CatalogConfigError, match="KAFSTASH_ICEBERG_CATALOG_URI"):
        CatalogConfig.from_env(
            {"KAFSTASH_ICEBERG_CATALOG_TYPE": "rest"}, home=tmp_path, namespace="x"
        )


def test_postgres_sql_catalog_keeps_the_local_warehouse_default(tmp_path: Path) -> None:
    uri = "postgresql+psycopg2://iceberg:pw@db:5432/iceberg"
    cfg = CatalogConfig.from_env(
        {"KAFSTASH_ICEBERG_CATALOG_URI": uri, "KAFSTASH_ICEBERG_NAMESPACE": "shared"},
        home=tmp_path,
        namespace="t1",
    )
    assert cfg.properties == {
        "type": "sql",
        "uri": uri,
        "warehouse": (tmp_path / "iceberg" / "warehouse").as_uri(),
    }
    assert cfg.namespace == "shared"


def test_pyiceberg_variables_map_like_pyiceberg_and_ours_win(tmp_path: Path) -> None:
    env = {
        "PYICEBERG_CATALOG__KAFSTASH__S3__ACCESS_KEY_ID": "AKIA",
        "pyiceberg_catalog__kafstash__s3__secret_access_key": "shh",
        "PYICEBERG_CATALOG__KAFSTASH__S3__FORCE_VIRTUAL_ADDRESSING": "false",
        "PYICEBERG_CATALOG__OTHER__S3__ENDPOINT": "http://not-ours",
        "PYICEBERG_DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE": "true",
    }
    assert pyiceberg_properties(env) == {
        "s3.access-key-id": "AKIA",
        "s3.secret-access-key": "shh",
        "s3.force-virtual-addressing": "false",
    }
    env["PYICEBERG_CATALOG__KAFSTASH__URI"] = "sqlite:///elsewhere.db"
    cfg = CatalogConfig.from_env(
        {**env, "KAFSTASH_ICEBERG_CATALOG_URI": "sqlite:////data/catalog.db"},
        home=tmp_path,
        namespace="n",
    )
    assert cfg.properties["uri"] == "sqlite:////data/catalog.db"


# -- a scheduled run on a real (local SQLite) table ------------------------------------------


def test_a_scheduled_run_compacts_expires_and_keeps_the_offsets(tmp_path: Path) -> None:
    cfg = CatalogConfig.from_env({}, home=tmp_path, namespace="unit")
    table = open_table(cfg)
    event_ms = int(NOW.timestamp() * 1000)
    for offset in range(4):  # four small appends: four files in one day, four snapshots
        event = MessageEvent(
            time=event_ms, message_id=f"m{offset}", user_id="u", state="DELIVERED", url="u"
        )
        row = to_row(event, topic="t", partition=0, offset=offset)
        props = CommitProperties(
            topic="t",
            history=lambda: summaries(table),
            start={0: offset or None},
            end={0: offset + 1},
        )
        table.append(to_arrow([row]), snapshot_properties=props)  # type: ignore[arg-type]
    assert files_per_day(table) == {D3: 4}

    # Not due yet: nothing changes (min_files 5 > 4, history kept).
    quiet = MaintainSchedule(every_s=1, min_files=5, expire_after_s=3600)
    assert run_plan(table, plan(quiet, files_per_day(table), now=datetime.now(UTC))) == []
    assert len(table.metadata.snapshots) == 4

    s = MaintainSchedule(every_s=1, min_files=3, expire_after_s=0)
    reports = run_plan(table, plan(s, files_per_day(table), now=datetime.now(UTC)))
    assert [r.day for r in reports] == [D3, None]
    table.refresh()
    assert files_per_day(table) == {D3: 1}
    # The rewrite is two snapshots (delete, append) newer than the cut-off; the next run, a
    # second later, expires the first, and has nothing left to compact.
    assert len(table.metadata.snapshots) == 2
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert [r.day for r in run_plan(table, plan(s, files_per_day(table), now=later))] == [None]
    table.refresh()
    assert len(table.metadata.snapshots) == 1
    assert latest_offsets(summaries(table), "t") == {0: 4}  # where the archiver resumes
    ids = table.scan().to_arrow().column("event_id").to_pylist()
    assert sorted(ids) == [f"t:0:{o}" for o in range(4)]
