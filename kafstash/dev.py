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
from dataclasses import dataclass, field

from kafstash.config import Settings
from kafstash.provision import ensure_topics

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
    return env


def _spawn(role: str, env: dict[str, str]) -> _Child:
    proc = subprocess.Popen([sys.executable, "-m", "kafstash", role], env=env)
    return _Child(role, proc)


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
            f"State lives in {settings.home}. Stop with Ctrl-C.",
            "",
        ]
    )


def run_dev(settings: Settings) -> int:
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
    try:
        asyncio.run(ensure_topics(settings))
        log.info("topics ready (prefix %s)", settings.topics.prefix)
        env = role_env(settings, bootstrap)
        children = [_spawn(role, env) for role in ROLES]
        print(banner(settings), flush=True)
        while not stopping:
            time.sleep(0.5)
            for i, child in enumerate(children):
                code = child.proc.poll()
                if code is None or stopping:
                    continue
                log.warning("%s exited with %s; restarting it", child.role, code)
                if time.monotonic() - child.started < 5:
                    time.sleep(2)  # a role that dies at once would otherwise spin
                children[i] = _spawn(child.role, env)
        return 0
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
        if broker is not None:
            broker.stop()
        log.info("stopped")
