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
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


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
