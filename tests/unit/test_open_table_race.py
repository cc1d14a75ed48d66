"""Two processes opening the delivery log at once: the namespace's creation races, and the one
that loses must go on (a real SQLite catalog; the loser's insert hits the unique key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyiceberg.catalog.sql import SqlCatalog

from kafstash.sinks.iceberg.table import CatalogConfig, open_table


class _Overtaken(SqlCatalog):
    """A catalog that another process overtakes between its existence check and its insert."""

    def __init__(self, name: str, rival: SqlCatalog, **props: Any) -> None:
        super().__init__(name, **props)
        self._rival = rival
        self._overtaken = False

    def namespace_exists(self, namespace: Any) -> bool:
        exists = super().namespace_exists(namespace)
        if not exists and not self._overtaken:
            self._overtaken = True
            self._rival.create_namespace(namespace)  # the other process's insert lands first
        return exists


def test_the_process_that_loses_the_namespace_race_still_opens_the_table(tmp_path: Path) -> None:
    cfg = CatalogConfig.from_env({}, home=tmp_path, namespace="kafstash")
    rival = SqlCatalog("kafstash", **cfg.properties)
    overtaken = _Overtaken("kafstash", rival, **cfg.properties)

    table = open_table(cfg, overtaken)

    assert table.name() == ("kafstash", "delivery_log")
    assert rival.load_table(("kafstash", "delivery_log")).metadata.table_uuid == (
        table.metadata.table_uuid
    )
