"""The runnable roles (api, streams, sender), each wired from Settings. One process per role."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvicorn

from kafstash.config import Settings
from producers.api.app import ApiConfig, create_app
from producers.api.publish import PublishLimits
from sinks.http.sender import Sender, SenderConfig
from streams.app import StreamsConfig
from streams.app import create_app as create_streams_app

log = logging.getLogger("kafstash")


def run_api(settings: Settings) -> None:
    config = ApiConfig(
        bootstrap=settings.require_bootstrap,
        topics=settings.topics,
        users=settings.users,
        limits=PublishLimits(
            max_body_bytes=settings.max_body_bytes, dedup_window_ms=settings.dedup_window_ms
        ),
        allow_private_destinations=settings.allow_private_destinations,
        produce_timeout_s=settings.produce_timeout_s,
    )
    uvicorn.run(
        create_app(config),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


def run_streams(settings: Settings) -> None:
    import faust  # noqa: PLC0415 - faust patches logging at import; only this role needs it

    app = create_streams_app(
        StreamsConfig(
            bootstrap=settings.require_bootstrap,
            topics=settings.topics,
            app_id=settings.streams_app_id,
            data_dir=settings.home / "streams",
            partitions=settings.partitions,
            replication=settings.replication,
            dedup_window_ms=settings.dedup_window_ms,
        )
    )
    worker = faust.Worker(app, loglevel="INFO", quiet=True, logging_config=_FAUST_LOGGING)
    worker.spinner = None  # its terminal escape codes garble `kafstash dev`'s shared console
    worker.execute_from_commandline()


# faust applies this with dictConfig: our lines at INFO in the CLI's format, faust's own at WARNING.
_FAUST_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s",
            "datefmt": "%H:%M:%S",
        }
    },
    "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"level": "INFO", "handlers": ["default"]},
    "loggers": {name: {"level": "WARNING"} for name in ("faust", "mode", "aiokafka")},
}


def run_sender(settings: Settings) -> None:
    import uvloop  # noqa: PLC0415

    cfg = SenderConfig(
        bootstrap=settings.require_bootstrap,
        topics=settings.topics,
        group_id=settings.sender_group,
        users=settings.users,
        concurrency=settings.sender_concurrency,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await Sender(cfg).run(stop)

    uvloop.run(main())
