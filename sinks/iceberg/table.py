"""The catalog and the delivery_log table: where they are, and creating them on first use.

Only the archiver creates them (:func:`open_table`); readers (``kafstash logs``, ``kafstash
archive``) open them with :func:`open_existing_table`, which fails with :class:`NoDeliveryLog`
rather than leave an empty catalog behind in whatever folder it was run from.

Catalogs, by environment (read once by :meth:`CatalogConfig.from_env`):

- default: pyiceberg's SQL catalog on SQLite, ``$KAFSTASH_HOME/iceberg/catalog.db``, with a
  local warehouse ``$KAFSTASH_HOME/iceberg/warehouse`` (one machine; SQLite is for development).
- ``KAFSTASH_ICEBERG_CATALOG_URI=postgresql+psycopg2://user:pw@host/db``: the same SQL catalog
  on PostgreSQL, for shared deployments (install the ``postgres`` extra).
- ``KAFSTASH_ICEBERG_CATALOG_TYPE=rest`` with ``KAFSTASH_ICEBERG_CATALOG_URI=http://...``: a REST
  catalog (Polaris, Lakekeeper, Nessie, the Iceberg REST fixture, ...).
- ``KAFSTASH_ICEBERG_WAREHOUSE``: ``file:///...`` or ``s3://bucket/path``; S3 credentials and
  endpoint go in pyiceberg's own variables, e.g. ``PYICEBERG_CATALOG__KAFSTASH__S3__ENDPOINT``.
  They are read from the same environment mapping as ours (:func:`pyiceberg_properties`), not
  only from the process environment pyiceberg saw at import, so a caller that passes an
  environment (tests, ``kafstash`` commands with ``env=``) configures S3 the same way.
- ``KAFSTASH_ICEBERG_NAMESPACE``: defaults to the topic prefix, so deployments sharing one
  catalog keep apart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchNamespaceError, NoSuchTableError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of
from pyiceberg.transforms import DayTransform
from pyiceberg.types import (
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from kafstash.schemas.delivery_log import COLUMNS, PARTITION_SPEC, TABLE_NAME, Column

log = logging.getLogger(__name__)

CATALOG_NAME = "kafstash"
PYICEBERG_ENV_PREFIX = f"PYICEBERG_CATALOG__{CATALOG_NAME.upper()}__"

TABLE_PROPERTIES = {
    # Every commit writes a metadata.json; keep the last 50 and delete older ones on commit.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
    "format-version": "2",
}


class CatalogConfigError(ValueError):
    """An Iceberg setting is missing or malformed; the message names the variable."""


class NoDeliveryLog(LookupError):
    """A read found no catalog or no delivery_log table; the message says where it looked."""


@dataclass(frozen=True)
class CatalogConfig:
    namespace: str
    properties: dict[str, str] = field(default_factory=dict)
    table: str = TABLE_NAME

    @property
    def identifier(self) -> tuple[str, str]:
        return (self.namespace, self.table)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, home: Path, namespace: str, create_dirs: bool = True
    ) -> CatalogConfig:
        """``create_dirs=False`` for readers: the default SQLite catalog's folders are not made."""
        kind = (env.get("KAFSTASH_ICEBERG_CATALOG_TYPE") or "sql").strip().lower()
        uri = env.get("KAFSTASH_ICEBERG_CATALOG_URI") or ""
        warehouse = env.get("KAFSTASH_ICEBERG_WAREHOUSE") or ""
        base = home / "iceberg"
        if kind == "sql":
            if not uri:
                if create_dirs:
                    base.mkdir(parents=True, exist_ok=True)
                uri = f"sqlite:///{base / 'catalog.db'}"
            if not warehouse:
                if create_dirs:
                    (base / "warehouse").mkdir(parents=True, exist_ok=True)
                warehouse = (base / "warehouse").as_uri()
        elif kind == "rest":
            if not uri:
                raise CatalogConfigError("KAFSTASH_ICEBERG_CATALOG_URI is required for rest")
        else:
            raise CatalogConfigError(
                f"KAFSTASH_ICEBERG_CATALOG_TYPE must be sql or rest, got {kind!r}"
            )
        props = {**pyiceberg_properties(env), "type": kind, "uri": uri}
        if warehouse:
            props["warehouse"] = warehouse
        ns = env.get("KAFSTASH_ICEBERG_NAMESPACE") or namespace
        return cls(namespace=ns, properties=props)


def pyiceberg_properties(env: Mapping[str, str]) -> dict[str, str]:
    """Catalog properties from ``PYICEBERG_CATALOG__KAFSTASH__*``, mapped as pyiceberg maps them.

    ``__`` separates levels (``S3__ENDPOINT`` → ``s3.endpoint``) and ``_`` becomes ``-``
    (``S3__ACCESS_KEY_ID`` → ``s3.access-key-id``); names are case-insensitive.
    """
    out: dict[str, str] = {}
    for name, value in env.items():
        if name.upper().startswith(PYICEBERG_ENV_PREFIX):
            key = name[len(PYICEBERG_ENV_PREFIX) :].lower()
            out[key.replace("__", ".").replace("_", "-")] = value
    return out


def _iceberg_type(column: Column) -> IcebergType:
    match column.type:
        case "string":
            return StringType()
        case "int":
            return IntegerType()
        case "long":
            return LongType()
        case "timestamptz":
            return TimestamptzType()
        case "list<string>":
            assert column.element_id is not None
            return ListType(column.element_id, StringType(), element_required=True)


def iceberg_schema() -> Schema:
    fields = [
        NestedField(c.field_id, c.name, _iceberg_type(c), required=c.required, doc=c.doc)
        for c in COLUMNS
    ]
    return Schema(*fields, identifier_field_ids=[COLUMNS[0].field_id])


def partition_spec(schema: Schema) -> PartitionSpec:
    fields = [
        PartitionField(
            source_id=schema.find_field(p.source).field_id,
            field_id=p.field_id,
            transform=DayTransform(),
            name=p.name,
        )
        for p in PARTITION_SPEC
    ]
    return PartitionSpec(*fields)


def load(cfg: CatalogConfig) -> Catalog:
    return load_catalog(CATALOG_NAME, **cfg.properties)


def open_table(cfg: CatalogConfig, catalog: Catalog | None = None) -> Table:
    """The delivery_log table, creating the namespace and the table if missing, and adding the
    columns an older table lacks (:func:`evolve`)."""
    catalog = catalog or load(cfg)
    _ensure_namespace(catalog, cfg.namespace)
    schema = iceberg_schema()
    table = catalog.create_table_if_not_exists(
        cfg.identifier,
        schema=schema,
        partition_spec=partition_spec(schema),
        properties=TABLE_PROPERTIES,
    )
    evolve(table)
    return table


def _ensure_namespace(catalog: Catalog, namespace: str) -> None:
    try:
        catalog.create_namespace_if_not_exists(namespace)
    except Exception:
        # Another process created it between the catalog's existence check and its insert: the
        # SQL catalog then fails on the unique key (not NamespaceAlreadyExistsError). Seen with
        # an archiver starting while a reader opened the table (tests/unit/test_open_table_race.py).
        if not catalog.namespace_exists(namespace):
            raise


def missing_columns(table: Table) -> list[str]:
    """Described columns the table does not have yet (it was made by an older kafstash)."""
    have = {f.name for f in table.schema().fields}
    return [c.name for c in COLUMNS if c.name not in have]


def evolve(table: Table, *, attempts: int = 5) -> list[str]:
    """Add the described columns the table lacks; returns their names (empty: none missing).

    The evolution rule (schemas/delivery_log.py) allows only optional columns added at the end,
    so ``union_by_name`` adds exactly those, in order, and rows written before read them as null.
    Another archiver evolving the same table at the same moment makes the commit fail: reload
    and look again.
    """
    for _ in range(attempts):
        missing = missing_columns(table)
        if not missing:
            return []
        try:
            with table.update_schema() as update:
                update.union_by_name(iceberg_schema())
        except CommitFailedException:
            table.refresh()
            continue
        log.info("delivery_log: added columns %s", ", ".join(missing))
        return missing
    raise CommitFailedException(f"delivery_log: could not add columns after {attempts} attempts")


def open_existing_table(cfg: CatalogConfig) -> Table:
    """The delivery_log table for reading; :class:`NoDeliveryLog` if there is none. Creates nothing.

    A SQLite catalog is checked for its file first: connecting would create an empty one.
    """
    uri = cfg.properties.get("uri", "")
    if uri.startswith(_SQLITE) and not Path(uri.removeprefix(_SQLITE)).is_file():
        raise NoDeliveryLog(
            f"no delivery log catalog at {uri.removeprefix(_SQLITE)} (KAFSTASH_HOME or "
            "KAFSTASH_ICEBERG_CATALOG_URI): run the archiver (kafstash dev or kafstash archiver) "
            "first, or run this from the folder kafstash dev ran in"
        )
    try:
        return load(cfg).load_table(cfg.identifier)
    except (NoSuchTableError, NoSuchNamespaceError) as exc:
        raise NoDeliveryLog(
            f"no table {'.'.join(cfg.identifier)} in the catalog at {uri}: the archiver has not "
            "written it yet (or KAFSTASH_TOPIC_PREFIX / KAFSTASH_ICEBERG_NAMESPACE differ)"
        ) from exc


_SQLITE = "sqlite:///"


def last_commit_ms(cfg: CatalogConfig) -> int | None:
    """When the table's current snapshot was committed; None if it has none (or there is no
    table yet). Creates nothing, like :func:`open_existing_table`."""
    try:
        table = open_existing_table(cfg)
    except NoDeliveryLog:
        return None
    snapshot = table.current_snapshot()
    return None if snapshot is None else int(snapshot.timestamp_ms)


def summaries(table: Table) -> Iterator[Mapping[str, str]]:
    """Summary properties of the current snapshot and its ancestors, newest first."""
    current = table.current_snapshot()
    if current is None:
        return
    for snapshot in ancestors_of(current, table.metadata):
        if snapshot.summary is not None:
            yield snapshot.summary.additional_properties
