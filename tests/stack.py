"""A running kafstash (api, streams, sender) on the session's real broker, one process per role.

Each Stack has its own topic prefix, consumer groups, state directory and API port, so stacks
never see each other's records. Roles can be killed (SIGKILL) and restarted for crash tests.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from kafstash.config import Settings
from kafstash.provision import ensure_topics
from kafstash.schemas.users import DEV_USERS

ROLES = ("streams", "sender", "api")
# Every role a Stack may run (start_role("archiver") adds the fourth), each with a metrics port.
ALL_ROLES = (*ROLES, "archiver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Stack:
    def __init__(
        self, bootstrap: str, home: Path, *, partitions: int = 2, env: dict[str, str] | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.home = home
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        self.api_port = free_port()
        self.second_api_port = free_port()
        self.metrics_ports = {role: free_port() for role in ALL_ROLES}
        self.user = DEV_USERS[0]
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFSTASH_DEV": "true",
            "KAFSTASH_HOME": str(home),
            "KAFSTASH_TOPIC_PREFIX": self.prefix,
            "KAFSTASH_PARTITIONS": str(partitions),
            "KAFSTASH_API_PORT": str(self.api_port),
            **{
                f"KAFSTASH_METRICS_PORT_{role.upper()}": str(port)
                for role, port in self.metrics_ports.items()
            },
            **(env or {}),
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def metrics_url(self, role: str) -> str:
        return f"http://127.0.0.1:{self.metrics_ports[role]}/metrics"

    @property
    def token(self) -> str:
        return self.user.token

    def start(self, timeout: float = 60) -> None:
        settings = Settings.from_env(self.env)
        asyncio.run(ensure_topics(settings))
        for role in ROLES:
            self.start_role(role)
        self.wait_api(timeout)

    def start_role(self, role: str) -> None:
        log_path = self.home / f"{role}.log"
        self.logs[role] = log_path
        with log_path.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.procs[role] = subprocess.Popen(
                [sys.executable, "-m", "kafstash", role],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_second(self, role: str) -> str:
        """A second process of ``role`` in the same groups: its own folder (a stream worker
        locks its stores), its own API port, no metrics listener. Returns its name in ``procs``
        and ``logs`` (``<role>2``); ``second_api_url`` is the second API's address."""
        name = f"{role}2"
        log_path = self.home / f"{name}.log"
        self.logs[name] = log_path
        home = self.home / name
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **self.env,
            "KAFSTASH_HOME": str(home),
            f"KAFSTASH_METRICS_PORT_{role.upper()}": "0",
            "KAFSTASH_API_PORT": str(self.second_api_port),
        }
        with log_path.open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "kafstash", role],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return name

    @property
    def second_api_url(self) -> str:
        return f"http://127.0.0.1:{self.second_api_port}"

    def wait_api(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for role, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{role} exited with {proc.returncode}:\n{self.tail(role)}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"API not ready after {timeout}s:\n{self.tail('api')}")

    def wait_log(self, role: str, text: str, timeout: float = 90) -> None:
        """Until ``role``'s log has a line containing ``text`` (e.g. its ready line): the API
        answers before the stream workers have recovered their tables, seconds later on a busy
        machine, and a test that times a delay against them must not start before."""
        deadline = time.monotonic() + timeout
        while text not in self.logs[role].read_text(errors="replace"):
            proc = self.procs[role]
            if proc.poll() is not None:
                raise RuntimeError(f"{role} exited with {proc.returncode}:\n{self.tail(role)}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no {text!r} in {role}'s log after {timeout}s:\n{self.tail(role)}"
                )
            time.sleep(0.1)

    def kill(self, role: str) -> None:
        proc = self.procs[role]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def restart(self, role: str) -> None:
        if self.procs[role].poll() is None:
            self.kill(role)
        self.start_role(role)
        if role == "api":
            self.wait_api()

    def stop(self, *, graceful: bool = True) -> None:
        """SIGTERM every role and wait for its clean drain; ``graceful=False`` SIGKILLs instead.

        A fixture's teardown needs no drain (nothing reads the stack afterwards) and a faust
        worker's takes seconds, once per stack; a test that checks a clean stop calls ``stop()``.
        """
        sig = signal.SIGTERM if graceful else signal.SIGKILL
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(sig)
        for role, proc in self.procs.items():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            del role

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop(graceful=False)

    def tail(self, role: str, lines: int = 40) -> str:
        path = self.logs.get(role)
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
