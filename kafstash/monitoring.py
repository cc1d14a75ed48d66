"""Serving a role's Prometheus metrics, and the consumer-lag figures every consuming role adds.

Each role has its own registry (its room's ``metrics.py``) and its own port (``environment.py``:
``METRICS_PORTS``, e.g. ``KAFSTASH_METRICS_PORT_SENDER``; unset or 0 = no listener), on
``KAFSTASH_METRICS_HOST`` (default 127.0.0.1). The API's metrics are on this
separate listener, never on the public QStash port, so they need no token and expose nothing to
the API's callers.

The listener and the lag refresher run in daemon threads, apart from the role's event loop:
faust owns the streams role's loop, and a scrape must never delay a delivery.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kafstash import environment as E
from kafstash.config import ConfigError, Settings
from kafstash.lag import KafkaProbe, Stage, StageLag, read_stages, stages

log = logging.getLogger("kafstash.monitoring")

LAG_REFRESH_S = 5.0


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"


def metrics_address(role: str, env: dict[str, str]) -> Address | None:
    """Where ``role`` serves /metrics, or None when its port is unset or 0."""
    name = E.METRICS_PORTS[role].name
    raw = (env.get(name) or "0").strip()
    try:
        port = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a port number, got {raw!r}") from exc
    if not 0 <= port < 65536:
        raise ConfigError(f"{name} must be a port number, got {raw!r}")
    if port == 0:
        return None
    return Address(env.get(E.METRICS_HOST.name) or E.METRICS_HOST.default, port)


class LagCollector(Collector):
    """The latest lag reading of the role's stage(s), exported at each scrape.

    The refresher replaces ``readings`` whole (one reference assignment), so a scrape in the
    server thread always sees one consistent reading.
    """

    def __init__(self) -> None:
        self.readings: tuple[StageLag, ...] = ()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        records = GaugeMetricFamily(
            "kafstash_consumer_lag_records",
            "Records not yet committed by the stage's group, per topic and partition.",
            labels=["stage", "topic", "partition"],
        )
        seconds = GaugeMetricFamily(
            "kafstash_consumer_lag_seconds",
            "Age of the oldest record the stage's group has not committed (0 when caught up).",
            labels=["stage", "topic", "partition"],
        )
        members = GaugeMetricFamily(
            "kafstash_consumer_group_members",
            "Members of the stage's consumer group.",
            labels=["stage"],
        )
        for reading in self.readings:
            name = reading.stage.name
            members.add_metric([name], len(reading.members))
            for p in reading.partitions:
                labels = [name, p.topic, str(p.partition)]
                records.add_metric(labels, p.records)
                seconds.add_metric(labels, p.seconds)
        yield records
        yield seconds
        yield members


def _refresh_lag(bootstrap: str, wanted: tuple[Stage, ...], into: LagCollector) -> None:
    async def loop() -> None:
        while True:
            try:
                async with KafkaProbe(bootstrap) as probe:
                    while True:
                        into.readings = tuple(await read_stages(probe, wanted))
                        await asyncio.sleep(LAG_REFRESH_S)
            except Exception as exc:  # the broker may be away; the figures just age meanwhile
                log.warning("consumer lag refresh failed, retrying: %r", exc)
                await asyncio.sleep(LAG_REFRESH_S)

    asyncio.run(loop())


def serve(
    role: str,
    registry: CollectorRegistry,
    settings: Settings,
    env: dict[str, str],
    stage_names: Iterable[str] = (),
) -> Address | None:
    """Start ``role``'s /metrics listener (and its lag refresher); None when it has no port."""
    address = metrics_address(role, env)
    if address is None:
        return None
    try:
        server, _thread = start_http_server(address.port, addr=address.host, registry=registry)
    except OSError as exc:
        # Usually a second process of the role on this host with the same port: it still does
        # its work (delivering matters more than being watched), it just serves no metrics.
        log.error("%s metrics: cannot listen on %s (%s); serving none", role, address.url, exc)
        return None
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    wanted = tuple(s for s in stages(settings) if s.name in set(stage_names))
    if wanted:
        lag = LagCollector()
        registry.register(lag)
        threading.Thread(
            target=_refresh_lag,
            args=(settings.require_bootstrap, wanted, lag),
            name=f"kafstash-{role}-lag",
            daemon=True,
        ).start()
    address = Address(address.host, server.server_port)
    log.info("%s metrics on %s", role, address.url)
    return address


# `kafstash dev` gives every role a listener: these ports when free, else any free port.
DEV_METRICS_PORTS = {"api": 9401, "streams": 9402, "sender": 9403, "archiver": 9404}


def dev_metrics_env(env: dict[str, str]) -> dict[str, str]:
    """The roles' metrics port variables ``kafstash dev`` sets where unset."""
    out: dict[str, str] = {}
    host = env.get(E.METRICS_HOST.name) or E.METRICS_HOST.default
    for role, port in DEV_METRICS_PORTS.items():
        name = E.METRICS_PORTS[role].name
        if not env.get(name):
            out[name] = str(_free(host, port))
    return out


def _free(host: str, preferred: int) -> int:
    import socket  # noqa: PLC0415

    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            chosen: int = s.getsockname()[1]
            return chosen
    raise OSError(f"no free port on {host}")
