"""The runnable roles (api, streams, sender, archiver), wired from Settings; one per process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import uvicorn

from kafstash import environment as E
from kafstash import log_format, monitoring, readiness
from kafstash.config import ConfigError, Settings, archive_maintenance
from kafstash.producers.api.app import create_app
from kafstash.producers.api.context import ApiConfig
from kafstash.producers.api.publish import PublishLimits
from kafstash.schemas.history import EventHistory
from kafstash.sinks.http.sender import Sender, SenderConfig
from kafstash.streams.app import StreamsConfig
from kafstash.streams.app import create_app as create_streams_app

if TYPE_CHECKING:
    from kafstash.sinks.iceberg.archiver import ArchiverConfig

log = logging.getLogger("kafstash")


def _secrets(settings: Settings) -> list[str]:
    """What a JSON log line must never show: every configured token and signing key."""
    return [
        s for u in settings.users for s in (u.token, u.current_signing_key, u.next_signing_key) if s
    ]


def _logs(settings: Settings, role: str) -> str:
    """Reconfigure the root handler now the users (and so the secrets to scrub) are known."""
    fmt = log_format.log_format(dict(os.environ))
    log_format.configure(fmt, role, _secrets(settings))
    return fmt


def run_api(settings: Settings) -> None:
    _logs(settings, "api")
    config = ApiConfig(
        bootstrap=settings.require_bootstrap,
        topics=settings.topics,
        users=settings.users,
        limits=PublishLimits(
            max_body_bytes=settings.max_body_bytes, dedup_window_ms=settings.dedup_window_ms
        ),
        allow_private_destinations=settings.allow_private_destinations,
        produce_timeout_s=settings.produce_timeout_s,
        destination_allowlist=settings.destination_allowlist,
        rate_limit=settings.rate_limit,
        rate_burst=settings.rate_burst,
        events_retention_ms=settings.events_retention_ms,
        history=events_history(settings),
    )
    from kafstash.producers.api import metrics  # noqa: PLC0415

    monitoring.serve("api", metrics.REGISTRY, settings, dict(os.environ))
    server = _ApiServer(
        uvicorn.Config(
            create_app(config),
            host=settings.api_host,
            port=settings.api_port,
            log_level="warning",
            log_config=None,  # uvicorn's own lines go through our root handler (and format)
            access_log=False,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
    )
    server.run()
    if not server.started:
        sys.exit(_UVICORN_STARTUP_FAILURE)  # as uvicorn.run does


_UVICORN_STARTUP_FAILURE = 3


class _ApiServer(uvicorn.Server):
    """uvicorn binds the port only after the app's lifespan has started (the views caught up):
    the API is ready once both are done, and a busy port fails the start before it."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            log.info("api listening on http://%s:%d", self.config.host, self.config.port)
            readiness.announce("api")


def run_streams(settings: Settings) -> None:
    import faust  # noqa: PLC0415 - faust patches logging at import; only this role needs it

    fmt = _logs(settings, "streams")
    # faust makes its data folder but not the folders above it: a fresh KAFSTASH_HOME failed.
    data_dir = settings.home / "streams"
    data_dir.mkdir(parents=True, exist_ok=True)

    app = create_streams_app(
        StreamsConfig(
            bootstrap=settings.require_bootstrap,
            topics=settings.topics,
            app_id=settings.streams_app_id,
            data_dir=data_dir,
            partitions=settings.partitions,
            replication=settings.replication,
            dedup_window_ms=settings.dedup_window_ms,
        )
    )
    import uvloop  # noqa: PLC0415

    from kafstash.streams import metrics  # noqa: PLC0415

    monitoring.serve("streams", metrics.REGISTRY, settings, dict(os.environ), ["intake", "streams"])
    # faust's worker creates its own loop; the policy makes it uvloop, as in the other roles.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    class Worker(faust.Worker):
        async def on_startup_finished(self) -> None:
            # faust calls this once the tables are recovered and the agents run: the same
            # moment its own (quietened) "Ready" line marks.
            await super().on_startup_finished()
            log.info("streams ready (app %s): tables recovered, agents running", app.conf.id)
            readiness.announce("streams")

    worker = Worker(
        app, loglevel="INFO", quiet=True, logging_config=_faust_logging(fmt, _secrets(settings))
    )
    worker.spinner = None  # its terminal escape codes garble `kafstash dev`'s shared console
    worker.execute_from_commandline()


def _faust_logging(fmt: str, secrets: list[str]) -> dict[str, object]:
    """faust applies this with dictConfig: our lines at INFO in the CLI's format (plain or
    JSON), faust's own at WARNING."""
    formatter: dict[str, object] = (
        {"()": log_format.JsonFormatter, "role": "streams", "secrets": secrets}
        if fmt == "json"
        else {"format": log_format.PLAIN, "datefmt": log_format.PLAIN_DATEFMT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default"}},
        "root": {"level": "INFO", "handlers": ["default"]},
        "loggers": {name: {"level": "WARNING"} for name in ("faust", "mode", "aiokafka")},
    }


def _run_until_signal(run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``run(stop)`` on uvloop; SIGINT/SIGTERM set ``stop`` for a clean drain.

    ``run`` builds its role inside the loop: aiokafka clients bind to the running loop.
    """
    import uvloop  # noqa: PLC0415

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await run(stop)

    uvloop.run(main())


def run_sender(settings: Settings) -> None:
    _logs(settings, "sender")
    cfg = SenderConfig(
        bootstrap=settings.require_bootstrap,
        topics=settings.topics,
        group_id=settings.sender_group,
        users=settings.users,
        concurrency=settings.sender_concurrency,
        call_concurrency=settings.sender_call_concurrency,
        allow_private_destinations=settings.allow_private_destinations,
        destination_allowlist=settings.destination_allowlist,
        on_ready=lambda: readiness.announce("sender"),
        max_metric_hosts=_max_metric_hosts(dict(os.environ)),
    )
    from kafstash.sinks.http import metrics  # noqa: PLC0415

    monitoring.serve("sender", metrics.REGISTRY, settings, dict(os.environ), ["sender"])
    _run_until_signal(lambda stop: Sender(cfg).run(stop))


def _max_metric_hosts(env: dict[str, str]) -> int:
    raw = env.get(E.METRICS_MAX_HOSTS.name) or str(E.METRICS_MAX_HOSTS.default)
    try:
        return max(0, int(raw))
    except ValueError as exc:
        raise ConfigError(f"{E.METRICS_MAX_HOSTS.name} must be an integer, got {raw!r}") from exc


def events_history(settings: Settings, env: dict[str, str] | None = None) -> EventHistory | None:
    """The delivery log behind GET /v2/events past the hot view (KAFSTASH_EVENTS_HISTORY=false
    turns it off): the archiver's catalog, read lazily, so an API without a table answers none."""

    from kafstash.sinks.iceberg.history import IcebergHistory  # noqa: PLC0415 - pyiceberg loads lazily
    from kafstash.sinks.iceberg.table import CatalogConfig  # noqa: PLC0415

    env = dict(os.environ if env is None else env)
    if (env.get(E.EVENTS_HISTORY.name) or "true").strip().lower() in {
        "0",
        "false",
        "no",
        "off",
    }:
        return None
    try:
        catalog = CatalogConfig.from_env(env, home=settings.home, namespace=settings.topics.prefix)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return IcebergHistory(catalog)


def archiver_config(
    settings: Settings, env: dict[str, str] | None = None, *, create_dirs: bool = True
) -> ArchiverConfig:
    """Archiver settings: KAFSTASH_ARCHIVE_INTERVAL (s), _MAX_ROWS, _SESSION_TIMEOUT (s), catalog.

    ``create_dirs=False`` for the read commands, which must not leave state behind."""

    from kafstash.sinks.iceberg.archiver import (  # noqa: PLC0415 - pyiceberg loads only in this role
        ArchiverConfig,
    )
    from kafstash.sinks.iceberg.table import CatalogConfig  # noqa: PLC0415

    env = dict(os.environ if env is None else env)
    if not settings.bootstrap:  # the archive commands read the table only
        settings = dataclasses.replace(settings, bootstrap="-")
    try:
        interval = float(env.get(E.ARCHIVE_INTERVAL.name) or E.ARCHIVE_INTERVAL.default)
        max_rows = int(env.get(E.ARCHIVE_MAX_ROWS.name) or E.ARCHIVE_MAX_ROWS.default)
        session = float(
            env.get(E.ARCHIVE_SESSION_TIMEOUT.name) or E.ARCHIVE_SESSION_TIMEOUT.default
        )
    except ValueError as exc:
        raise ConfigError(
            f"KAFSTASH_ARCHIVE_INTERVAL / _MAX_ROWS / _SESSION_TIMEOUT: {exc}"
        ) from exc
    if session <= 0:
        raise ConfigError(f"{E.ARCHIVE_SESSION_TIMEOUT.name} must be positive, not {session:g}")
    try:
        catalog = CatalogConfig.from_env(
            env, home=settings.home, namespace=settings.topics.prefix, create_dirs=create_dirs
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return ArchiverConfig(
        bootstrap=settings.require_bootstrap,
        topics=settings.topics,
        group_id=settings.archiver_group,
        catalog=catalog,
        interval_s=interval,
        max_rows=max_rows,
        session_timeout_s=session,
        maintenance=archive_maintenance(env),
    )


def run_archiver(settings: Settings) -> None:
    _logs(settings, "archiver")

    from kafstash.sinks.iceberg import metrics  # noqa: PLC0415
    from kafstash.sinks.iceberg.archiver import Archiver  # noqa: PLC0415

    cfg = dataclasses.replace(
        archiver_config(settings), on_ready=lambda: readiness.announce("archiver")
    )
    monitoring.serve("archiver", metrics.REGISTRY, settings, dict(os.environ), ["archiver"])
    _run_until_signal(lambda stop: Archiver(cfg).run(stop))


def run_archive_command(settings: Settings, args: argparse.Namespace) -> str:
    """``kafstash archive maintain`` and ``kafstash logs query|report``: their output.

    They work on the table the archiver made; with none they raise NoDeliveryLog, creating nothing.
    """
    from datetime import UTC, date, datetime, timedelta  # noqa: PLC0415

    from kafstash.sinks.iceberg import analytics  # noqa: PLC0415
    from kafstash.sinks.iceberg.maintain import maintain  # noqa: PLC0415
    from kafstash.sinks.iceberg.table import open_existing_table  # noqa: PLC0415

    table = open_existing_table(archiver_config(settings, create_dirs=False).catalog)
    if args.command == "archive":
        hours = args.expire_older_than_hours
        report = maintain(
            table,
            day=date.fromisoformat(args.day) if args.day else None,
            expire_older_than=None if hours is None else timedelta(hours=hours),
            now=datetime.now(UTC),
        )
        return str(report)
    if args.logs_command == "query":
        result = analytics.query(table, args.sql)
    else:
        result = analytics.report(table, args.name)
    return analytics.render(result, args.format)
