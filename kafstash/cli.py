"""The ``kafstash`` command: ``dev`` for one machine, one role per process in production."""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap

from kafstash import __version__, environment
from kafstash.config import ConfigError, Settings

DESCRIPTION = """\
Self-hosted, QStash-compatible HTTP messaging on Apache Kafka.

`kafstash dev` runs everything on this machine (like `qstash dev`); in production run one role
per process (api, streams, sender, archiver) against your Kafka cluster.
`kafstash <command> --help` says what a command does and which environment variables it reads."""

ROLE_HELP = {
    "api": (
        "serve the QStash v2 HTTP API",
        "Serve the QStash v2 HTTP API (publish, enqueue, batch, schedules, queues, URL groups, "
        "DLQ, events). Each write is answered after the broker acknowledged it.",
    ),
    "streams": (
        "run the stream workers (dedup, delay, cron and gates tables)",
        "Run the stream workers: deduplication, delays and retries, cron schedules and the "
        "gates (queues, flow control), as RocksDB tables under KAFSTASH_HOME/streams rebuilt "
        "from their changelog topics.",
    ),
    "sender": (
        "deliver due messages over HTTP",
        "Deliver due messages over HTTP: sign each request, classify the answer, schedule the "
        "retry, send callbacks and dead-letter what is out of retries.",
    ),
    "archiver": (
        "append the delivery log to the Iceberg table",
        "Append every message event to the Iceberg delivery_log table, exactly once (the "
        "archive behind `kafstash logs` and older GET /v2/events); with "
        "KAFSTASH_ARCHIVE_MAINTAIN_EVERY set it also compacts and expires it.",
    ),
}


def _logging(role: str) -> None:
    """KAFSTASH_LOG_FORMAT=plain|json (kafstash/log_format.py); roles add their secrets later."""
    import os  # noqa: PLC0415

    from kafstash.log_format import configure, log_format  # noqa: PLC0415

    configure(log_format(dict(os.environ)), role)


def _kafka_command(settings: Settings, args: argparse.Namespace) -> int:
    """``kafstash status`` and ``kafstash topics create``: they talk to Kafka only."""
    if args.command == "status":
        from kafstash.status import run_status  # noqa: PLC0415

        return run_status(settings, watch=args.watch, interval_s=args.interval)
    from kafstash.provision import ensure_topics  # noqa: PLC0415

    asyncio.run(ensure_topics(settings))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kafstash", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"kafstash {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser(
        "dev",
        help="broker + API + workers on this machine (like `qstash dev`)",
        description=textwrap.fill(
            "Start a local Kafka broker, create the topics and run every role, with the four "
            "fixed `qstash dev` users; state lives in --home (default ./.kafstash, in the "
            "current folder, as with `qstash dev`).",
            92,
        ),
        epilog=environment.describe(environment.DEV_COMMAND)
        + "\n\nThe roles it starts read their own variables too (see `kafstash api --help`, ...).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dev.add_argument("--port", type=int, default=None, help="API port (default 8080)")
    dev.add_argument("--home", default=None, help="state directory (default .kafstash)")
    for role, (summary, description) in ROLE_HELP.items():
        sub.add_parser(
            role,
            help=summary,
            description=textwrap.fill(description, 92),
            epilog=environment.describe(role),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    status = sub.add_parser(
        "status",
        help="groups, members, lag, DLQ and archive of a running deployment",
        description=textwrap.fill(
            "Every stage's consumer group, its members and lag per topic (records, and the age of "
            "the oldest waiting one), the DLQ's size and the archive's last commit, read from "
            "Kafka and the Iceberg catalog. Exit status 1 when a stage has no member.",
            92,
        ),
    )
    status.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    topics = sub.add_parser(
        "topics",
        help="manage topics",
        description="Create every topic kafstash uses (idempotent).",
        epilog=environment.describe(environment.TOPICS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    topics.add_argument("action", choices=["create"])
    archive = sub.add_parser(
        "archive",
        help="maintain the Iceberg delivery log",
        description="Compact the delivery log's small files and expire old snapshots.",
        epilog=environment.describe(environment.ARCHIVE),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    archive.add_argument("action", choices=["maintain"])
    archive.add_argument("--day", default=None, help="rewrite this UTC day's files (YYYY-MM-DD)")
    archive.add_argument("--expire-older-than-hours", type=float, default=None)
    logs = sub.add_parser(
        "logs",
        help="SQL and reports over the delivery log (DuckDB)",
        description=textwrap.fill(
            "Read the delivery log (the archiver's Iceberg table) with DuckDB. A missing catalog "
            "or table is an error (exit 1); these commands never create state.",
            92,
        ),
        epilog=environment.describe(environment.ARCHIVE),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    logs_sub = logs.add_subparsers(dest="logs_command", required=True)
    logs_query = logs_sub.add_parser("query", help="run SQL over the view delivery_log")
    logs_query.add_argument("sql")
    logs_report = logs_sub.add_parser("report", help="a ready report")
    logs_report.add_argument("name", choices=["success-rate", "failures", "retries", "dlq"])
    for p in (logs_query, logs_report):
        p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    args = parser.parse_args(argv)
    try:
        _logging(args.command)
        if args.command == "dev":
            import os  # noqa: PLC0415

            if args.home:
                os.environ["KAFSTASH_HOME"] = args.home
            if args.port:
                os.environ["KAFSTASH_API_PORT"] = str(args.port)
            from kafstash.dev import run_dev  # noqa: PLC0415

            return run_dev(Settings.from_env(dev=True))
        # The archive and logs commands read the table only, status reads Kafka: no users needed.
        readonly = args.command in ("archive", "logs", "status")
        settings = Settings.from_env(dev=True if readonly else None)
        if args.command in ("status", "topics"):
            return _kafka_command(settings, args)
        from kafstash import roles  # noqa: PLC0415

        if args.command in ("archive", "logs"):
            from kafstash.sinks.iceberg.table import NoDeliveryLog  # noqa: PLC0415 - pyiceberg

            try:
                print(roles.run_archive_command(settings, args))
            except NoDeliveryLog as exc:
                print(f"kafstash: {exc}", file=sys.stderr)
                return 1
            return 0
        {
            "api": roles.run_api,
            "streams": roles.run_streams,
            "sender": roles.run_sender,
            "archiver": roles.run_archiver,
        }[args.command](settings)
        return 0
    except ConfigError as exc:
        print(f"kafstash: configuration error: {exc}", file=sys.stderr)
        return 2
