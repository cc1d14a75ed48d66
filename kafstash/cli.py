"""The ``kafstash`` command: ``dev`` for one machine, one role per process in production."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from kafstash.config import ConfigError, Settings


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Client libraries are chatty at INFO (every connection, every rebalance step).
    for noisy in ("aiokafka", "faust", "mode", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kafstash", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="broker + API + workers on this machine (like `qstash dev`)")
    dev.add_argument("--port", type=int, default=None, help="API port (default 8080)")
    dev.add_argument("--home", default=None, help="state directory (default .kafstash)")
    sub.add_parser("api", help="serve the QStash v2 HTTP API")
    sub.add_parser("streams", help="run the stream workers (dedup and delay tables)")
    sub.add_parser("sender", help="deliver due messages over HTTP")
    sub.add_parser("archiver", help="append the delivery log to the Iceberg table")
    topics = sub.add_parser("topics", help="manage topics")
    topics.add_argument("action", choices=["create"])
    archive = sub.add_parser("archive", help="maintain the Iceberg delivery log")
    archive.add_argument("action", choices=["maintain"])
    archive.add_argument("--day", default=None, help="rewrite this UTC day's files (YYYY-MM-DD)")
    archive.add_argument("--expire-older-than-hours", type=float, default=None)
    logs = sub.add_parser("logs", help="SQL and reports over the delivery log (DuckDB)")
    logs_sub = logs.add_subparsers(dest="logs_command", required=True)
    logs_query = logs_sub.add_parser("query", help="run SQL over the view delivery_log")
    logs_query.add_argument("sql")
    logs_report = logs_sub.add_parser("report", help="a ready report")
    logs_report.add_argument("name", choices=["success-rate", "failures", "retries", "dlq"])
    for p in (logs_query, logs_report):
        p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    args = parser.parse_args(argv)
    _logging()
    try:
        if args.command == "dev":
            import os  # noqa: PLC0415

            if args.home:
                os.environ["KAFSTASH_HOME"] = args.home
            if args.port:
                os.environ["KAFSTASH_API_PORT"] = str(args.port)
            from kafstash.dev import run_dev  # noqa: PLC0415

            return run_dev(Settings.from_env(dev=True))
        # The archive and logs commands read the table only: no users needed.
        settings = Settings.from_env(dev=True if args.command in ("archive", "logs") else None)
        if args.command == "topics":
            from kafstash.provision import ensure_topics  # noqa: PLC0415

            asyncio.run(ensure_topics(settings))
            return 0
        from kafstash import roles  # noqa: PLC0415

        if args.command in ("archive", "logs"):
            print(roles.run_archive_command(settings, args))
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
