"""Every environment variable kafstash reads: name, default, meaning and the commands that read it.

One table, two readers: ``config.py`` (and ``roles.py``) take each setting's default from its
:class:`Var`, and ``kafstash <role> --help`` lists the variables of that role from the same
table, so the help cannot drift from what is read. The Iceberg catalog variables are read by
``sinks/iceberg/table.py`` (below this layer); ``tests/unit/test_cli.py`` checks that every
variable named in the shipped code is listed here.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Generic, TypeVar

from kafstash.schemas import defaults

T = TypeVar("T")

# Commands that read a variable. "archive" is `kafstash archive` and `kafstash logs`; `kafstash
# dev` reads its own few and hands the rest to the roles it starts.
API, STREAMS, SENDER, ARCHIVER, TOPICS, ARCHIVE, DEV_COMMAND = (
    "api",
    "streams",
    "sender",
    "archiver",
    "topics",
    "archive",
    "dev",
)
ROLES = (API, STREAMS, SENDER, ARCHIVER)
EVERY = frozenset({API, STREAMS, SENDER, ARCHIVER, TOPICS, ARCHIVE})
_CATALOG = frozenset({API, ARCHIVER, ARCHIVE})


@dataclass(frozen=True)
class Var(Generic[T]):
    name: str
    default: T
    meaning: str
    read_by: frozenset[str]
    shown: str | None = None  # the default as people should read it, where the value misleads

    @property
    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        if isinstance(self.default, bool):
            return str(self.default).lower()
        return str(self.default)


BOOTSTRAP = Var[str | None](
    "KAFKA_BOOTSTRAP_SERVERS",
    None,
    "Kafka cluster to use (host:port,...)",
    EVERY - {ARCHIVE},
    shown="required; dev: starts a local broker",
)
DEV = Var(
    "KAFSTASH_DEV",
    False,
    "dev mode: the qstash dev users, private destinations allowed",
    EVERY - {ARCHIVE},
)
HOME = Var(
    "KAFSTASH_HOME",
    ".kafstash",
    "state directory, relative to the current folder: broker data (dev), RocksDB tables, "
    "the SQLite Iceberg catalog",
    frozenset({STREAMS, DEV_COMMAND, *_CATALOG}),
)
TOPIC_PREFIX = Var(
    "KAFSTASH_TOPIC_PREFIX",
    defaults.DEFAULT_TOPIC_PREFIX,
    "prefix of every topic and consumer group (and the Iceberg namespace)",
    EVERY | {DEV_COMMAND},
)
PARTITIONS = Var(
    "KAFSTASH_PARTITIONS",
    defaults.DEFAULT_PARTITIONS,
    "partitions per topic",
    frozenset({STREAMS, TOPICS, DEV_COMMAND}),
)
REPLICATION = Var(
    "KAFSTASH_REPLICATION",
    1,
    "replication factor; >= 3 also sets min.insync.replicas=2",
    frozenset({STREAMS, TOPICS}),
)
API_HOST = Var(
    "KAFSTASH_API_HOST", "127.0.0.1", "API listen address", frozenset({API, DEV_COMMAND})
)
API_PORT = Var(
    "KAFSTASH_API_PORT", defaults.DEV_PORT, "API listen port", frozenset({API, DEV_COMMAND})
)
USERS_FILE = Var(
    "KAFSTASH_USERS_FILE",
    "",
    'JSON array of {"userId","token","currentSigningKey","nextSigningKey"}',
    frozenset(ROLES),
    shown="required unless KAFSTASH_USERS is set; dev: the four qstash dev users",
)
USERS = Var(
    "KAFSTASH_USERS",
    "",
    "the same JSON array, inline",
    frozenset(ROLES),
    shown="unset",
)
DEDUP_WINDOW = Var(
    "KAFSTASH_DEDUP_WINDOW",
    defaults.DEDUP_WINDOW_MS // 1000,
    "deduplication window, seconds",
    frozenset({API, STREAMS}),
)
MAX_BODY_BYTES = Var(
    "KAFSTASH_MAX_BODY_BYTES",
    defaults.MAX_BODY_BYTES,
    "largest message body (413 above); at most the default",
    frozenset({API}),
)
ALLOW_PRIVATE_DESTINATIONS = Var(
    "KAFSTASH_ALLOW_PRIVATE_DESTINATIONS",
    False,
    "turn the SSRF guard off: allow loopback, private, link-local, ... destinations",
    frozenset({API, SENDER}),
    shown="false; dev: true",
)
DESTINATION_ALLOWLIST = Var(
    "KAFSTASH_DESTINATION_ALLOWLIST",
    "",
    "comma-separated CIDRs, addresses and host names allowed even though private",
    frozenset({API, SENDER}),
    shown="empty",
)
RATE_LIMIT = Var(
    "KAFSTASH_RATE_LIMIT",
    0.0,
    "requests per second per token; 0 is off",
    frozenset({API}),
)
RATE_BURST = Var(
    "KAFSTASH_RATE_BURST",
    1,
    "token bucket size of the rate limit",
    frozenset({API}),
    shown="the rate rounded up, at least 1",
)
PRODUCE_TIMEOUT = Var(
    "KAFSTASH_PRODUCE_TIMEOUT",
    8.0,
    "seconds the API waits for the broker before answering 503 + Retry-After",
    frozenset({API}),
)
EVENTS_RETENTION = Var(
    "KAFSTASH_EVENTS_RETENTION",
    defaults.EVENTS_RETENTION_MS // 1000,
    "seconds of <prefix>.events the API keeps in memory for GET /v2/events",
    frozenset({API}),
)
EVENTS_HISTORY = Var(
    "KAFSTASH_EVENTS_HISTORY",
    True,
    "answer older events from the Iceberg delivery log (the archiver's catalog settings)",
    frozenset({API}),
)
SENDER_CONCURRENCY = Var(
    "KAFSTASH_SENDER_CONCURRENCY", 256, "concurrent deliveries per sender", frozenset({SENDER})
)
SENDER_CALL_CONCURRENCY = Var(
    "KAFSTASH_SENDER_CALL_CONCURRENCY",
    1024,
    "concurrent workflow context.call requests per sender, apart from the deliveries' slots",
    frozenset({SENDER}),
)
ARCHIVE_INTERVAL = Var(
    "KAFSTASH_ARCHIVE_INTERVAL", 60.0, "archiver flush period, seconds", frozenset({ARCHIVER})
)
ARCHIVE_MAX_ROWS = Var(
    "KAFSTASH_ARCHIVE_MAX_ROWS", 50_000, "archiver flush row threshold", frozenset({ARCHIVER})
)
ARCHIVE_SESSION_TIMEOUT = Var(
    "KAFSTASH_ARCHIVE_SESSION_TIMEOUT",
    30.0,
    "archiver consumer-group session, seconds: how soon a dead archiver's partitions move on",
    frozenset({ARCHIVER}),
)
ARCHIVE_MAINTAIN_EVERY = Var(
    "KAFSTASH_ARCHIVE_MAINTAIN_EVERY",
    0.0,
    "seconds between scheduled compactions; 0 is off",
    frozenset({ARCHIVER}),
)
ARCHIVE_MAINTAIN_MIN_FILES = Var(
    "KAFSTASH_ARCHIVE_MAINTAIN_MIN_FILES",
    8,
    "compact a day once it has this many data files",
    frozenset({ARCHIVER}),
)
ARCHIVE_EXPIRE_AFTER = Var(
    "KAFSTASH_ARCHIVE_EXPIRE_AFTER",
    5 * 24 * 3600.0,
    "seconds of snapshot history scheduled maintenance keeps (never: all)",
    frozenset({ARCHIVER}),
)
ICEBERG_CATALOG_TYPE = Var(
    "KAFSTASH_ICEBERG_CATALOG_TYPE", "sql", "Iceberg catalog: sql or rest", _CATALOG
)
ICEBERG_CATALOG_URI = Var(
    "KAFSTASH_ICEBERG_CATALOG_URI",
    "",
    "catalog URI (postgresql+psycopg2://... or the REST URL)",
    _CATALOG,
    shown="SQLite under KAFSTASH_HOME/iceberg",
)
ICEBERG_WAREHOUSE = Var(
    "KAFSTASH_ICEBERG_WAREHOUSE",
    "",
    "file:///... or s3://bucket/path",
    _CATALOG,
    shown="KAFSTASH_HOME/iceberg/warehouse",
)
ICEBERG_NAMESPACE = Var(
    "KAFSTASH_ICEBERG_NAMESPACE",
    "",
    "Iceberg namespace of the delivery_log table",
    _CATALOG,
    shown="the topic prefix",
)
PYICEBERG = Var(
    "PYICEBERG_CATALOG__KAFSTASH__*",
    "",
    "other pyiceberg catalog properties (S3 endpoint and credentials, REST auth)",
    _CATALOG,
    shown="unset",
)
KAFKA_LIBS = Var(
    "KAFSTASH_KAFKA_LIBS",
    "",
    "where the local broker's Kafka jars are (fetched with Maven when missing)",
    frozenset({DEV_COMMAND}),
    shown="~/.cache/kafstash/kafka-<version>/libs",
)

METRICS_PORT_API, METRICS_PORT_STREAMS, METRICS_PORT_SENDER, METRICS_PORT_ARCHIVER = (
    Var(
        f"KAFSTASH_METRICS_PORT_{role.upper()}",
        0,
        f"port of the {role} role's Prometheus /metrics listener; 0 is off",
        frozenset({role}),
        shown="0 (off); dev: a free port",
    )
    for role in ROLES
)
METRICS_PORTS = {
    API: METRICS_PORT_API,
    STREAMS: METRICS_PORT_STREAMS,
    SENDER: METRICS_PORT_SENDER,
    ARCHIVER: METRICS_PORT_ARCHIVER,
}
METRICS_HOST = Var(
    "KAFSTASH_METRICS_HOST",
    "127.0.0.1",
    "address the /metrics listeners bind (0.0.0.0 for a scraper on another host)",
    frozenset(ROLES),
)
METRICS_MAX_HOSTS = Var(
    "KAFSTASH_METRICS_MAX_HOSTS",
    defaults.DEFAULT_MAX_METRIC_HOSTS,
    "destination hosts the sender's metrics name one by one; the rest share the label other",
    frozenset({SENDER}),
)
LOG_FORMAT = Var(
    "KAFSTASH_LOG_FORMAT",
    "plain",
    "plain, or json: one JSON object per log line (timestamp, level, role, logger, message, ids)",
    EVERY | {DEV_COMMAND},
)

READY_FD = Var[int | None](
    "KAFSTASH_READY_FD",
    None,
    "set by `kafstash dev` for the roles it starts: the pipe a role reports ready on",
    frozenset(ROLES),
    shown="unset (dev sets it)",
)

VARIABLES: tuple[Var[object], ...] = tuple(
    v for v in globals().copy().values() if isinstance(v, Var)
)


def read_by(command: str) -> tuple[Var[object], ...]:
    return tuple(v for v in VARIABLES if command in v.read_by)


def describe(command: str) -> str:
    """The variables ``command`` reads, for its ``--help``."""
    lines = ["environment variables [default]:"]
    for var in read_by(command):
        lines.append(f"  {var.name} [{var.default_text}]")
        lines.extend(
            textwrap.wrap(var.meaning, 88, initial_indent=" " * 6, subsequent_indent=" " * 6)
        )
    return "\n".join(lines)
