"""``kafstash dev``: broker, topics, API, stream workers and senders in one process tree."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kafstash.config import Settings
from kafstash.monitoring import DEV_METRICS_PORTS, dev_metrics_env, metrics_address
from kafstash.provision import ensure_topics
from kafstash.readiness import ReadyPipe

log = logging.getLogger("kafstash.dev")

ROLES = ("streams", "sender", "api", "archiver")


@dataclass
class _Child:
    role: str
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


def role_env(settings: Settings, bootstrap: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        KAFSTASH_DEV="true",
        KAFSTASH_HOME=str(settings.home),
        KAFSTASH_API_PORT=str(settings.api_port),
        KAFSTASH_API_HOST=settings.api_host,
        KAFSTASH_TOPIC_PREFIX=settings.topics.prefix,
        KAFSTASH_PARTITIONS=str(settings.partitions),
    )
    env.update(dev_metrics_env(env))
    return env


def _spawn(role: str, env: dict[str, str], ready: ReadyPipe) -> _Child:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kafstash", role], env={**env, **ready.env()}, pass_fds=(ready.fd,)
    )
    return _Child(role, proc)


def _announce_metrics(env: dict[str, str]) -> None:
    for role in DEV_METRICS_PORTS:
        if (address := metrics_address(role, env)) is not None:
            log.info("%s metrics: %s", role, address.url)


class StartupFailed(Exception):
    """A role exited before it announced itself ready; the message names it and its exit code."""


def wait_until_ready(
    children: list[_Child],
    ready: ReadyPipe,
    stopping: Callable[[], bool],
    *,
    clock: Callable[[], float] = time.monotonic,
    remind_every_s: float = 30.0,
) -> bool:
    """Block until every child's role has announced itself; False if asked to stop first.

    A role that exits during start-up is not restarted: the failure is in its output just
    above, and a banner after it would claim a service that is not there.
    """
    pending = {child.role for child in children}
    remind_at = clock() + remind_every_s
    while pending:
        if stopping():
            return False
        for role in ready.read(timeout_s=0.2):
            pending.discard(role)
        for child in children:
            code = child.proc.poll()
            if code is not None and child.role in pending:
                raise StartupFailed(
                    f"{child.role} exited with code {code} during start-up (its output is above)"
                )
        if pending and clock() >= remind_at:
            log.info("still starting: waiting for %s", ", ".join(sorted(pending)))
            remind_at = clock() + remind_every_s
    return True


def banner(settings: Settings) -> str:
    user = settings.users[0]
    url = f"http://{settings.api_host}:{settings.api_port}"
    return "\n".join(
        [
            "",
            "kafstash dev is running. Point the QStash SDKs here:",
            "",
            f'QSTASH_URL="{url}"',
            f'QSTASH_TOKEN="{user.token}"',
            f'QSTASH_CURRENT_SIGNING_KEY="{user.current_signing_key}"',
            f'QSTASH_NEXT_SIGNING_KEY="{user.next_signing_key}"',
            "",
            f"Console: {url}/console/ (log in with the token). State lives in {settings.home}.",
            "Stop with Ctrl-C.",
            "",
        ]
    )


def _supervise(
    children: list[_Child], env: dict[str, str], ready: ReadyPipe, stopping: Callable[[], bool]
) -> None:
    """Restart any role that exits after start-up, until asked to stop."""
    while not stopping():
        # A restarted role announces again; reading keeps the pipe from filling up.
        ready.read(timeout_s=0.5)
        for i, child in enumerate(children):
            code = child.proc.poll()
            if code is None or stopping():
                continue
            log.warning("%s exited with %s; restarting it", child.role, code)
            if time.monotonic() - child.started < 5:
                time.sleep(2)  # a role that dies at once would otherwise spin
            children[i] = _spawn(child.role, env, ready)


def _stop(children: list[_Child]) -> None:
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()


def run_dev(settings: Settings) -> int:
    """Run everything until SIGINT/SIGTERM (exit 0); 1 if a role fails during start-up."""
    log.info("state in %s (KAFSTASH_HOME)", settings.home)
    broker = None
    bootstrap = settings.bootstrap
    if bootstrap is None:
        from kafstash.infra.kafka import LocalBroker, ensure_jars  # noqa: PLC0415 - only dev starts one

        log.info("checking Kafka's jars (Maven fetches them on first use)")
        ensure_jars()
        broker = LocalBroker(settings.home / "kafka")
        broker.start()
        bootstrap = broker.bootstrap
        log.info("kafka broker ready on %s (pid %s)", bootstrap, broker.pid)
    settings = dataclasses.replace(settings, bootstrap=bootstrap)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children: list[_Child] = []
    ready = ReadyPipe()
    try:
        asyncio.run(ensure_topics(settings))
        log.info("topics ready (prefix %s)", settings.topics.prefix)
        env = role_env(settings, bootstrap)
        children = [_spawn(role, env, ready) for role in ROLES]
        try:
            if not wait_until_ready(children, ready, lambda: stopping):
                return 0
        except StartupFailed as exc:
            log.error("%s; stopping kafstash dev", exc)
            return 1
        _announce_metrics(env)
        print(banner(settings), flush=True)
        _supervise(children, env, ready, lambda: stopping)
        return 0
    finally:
        _stop(children)
        ready.close()
        if broker is not None:
            broker.stop()
        log.info("stopped")
