"""`kafstash logs` and `kafstash archive` read the archiver's table: without one they say so,
exit non-zero and leave the folder as they found it (issue 13 item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafstash.cli import main
from kafstash.sinks.iceberg.table import CatalogConfig, load, open_table

COMMANDS = [
    pytest.param(["logs", "query", "SELECT count(*) FROM delivery_log"], id="logs query"),
    pytest.param(["logs", "report", "success-rate"], id="logs report"),
    pytest.param(["archive", "maintain"], id="archive maintain"),
]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (
        "KAFSTASH_HOME",
        "KAFSTASH_ICEBERG_CATALOG_URI",
        "KAFSTASH_ICEBERG_WAREHOUSE",
        "KAFSTASH_ICEBERG_CATALOG_TYPE",
        "KAFSTASH_ICEBERG_NAMESPACE",
        "KAFSTASH_TOPIC_PREFIX",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("argv", COMMANDS)
def test_in_an_empty_folder_it_fails_and_creates_nothing(
    argv: list[str], folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "no delivery log catalog" in err
    assert str(folder / ".kafstash" / "iceberg" / "catalog.db") in err
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("argv", COMMANDS)
def test_a_catalog_without_the_table_is_an_error_too(
    argv: list[str], folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = CatalogConfig.from_env({}, home=folder / ".kafstash", namespace="kafstash")
    load(cfg).create_namespace("kafstash")
    before = sorted(folder.rglob("*"))
    assert main(argv) == 1
    assert "no table kafstash.delivery_log" in capsys.readouterr().err
    assert sorted(folder.rglob("*")) == before


def test_with_the_table_it_answers(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    open_table(CatalogConfig.from_env({}, home=folder / ".kafstash", namespace="kafstash"))
    assert main(["logs", "query", "SELECT count(*) AS n FROM delivery_log", "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["n", "0"]
