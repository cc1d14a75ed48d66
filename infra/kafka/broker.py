"""A single-node Apache Kafka 4.x broker (KRaft, combined broker + controller) run from Maven jars.

Kafka's jars are fetched once with Maven (``pom.xml`` beside this module) into a cache directory,
then the broker runs as a plain ``java`` subprocess: no Docker and no Kafka tarball needed. The
test session fixture and ``python -m kafstash.infra.kafka`` use this.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
POM_PATH = Path(__file__).resolve().with_name("pom.xml")
LOG4J2_CONFIG = Path(__file__).resolve().with_name("log4j2.yaml")

_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_MARKER_NAME = ".kafstash-jars-complete"
_HOST = "127.0.0.1"
_LOG_TAIL_LINES = 60
_PROBE_TIMEOUT = 5.0
_POLL_INTERVAL = 0.2


class BrokerError(RuntimeError):
    """The Kafka jars could not be fetched, or the broker could not be started."""


class _PortInUse(BrokerError):
    """The JVM could not bind a port: the free-port probe is racy, so another process got it."""

    def __init__(self, message: str, port: int | None) -> None:
        super().__init__(message)
        self.port = port


# --------------------------------------------------------------------------------------- jars


def _default_libs_dir() -> Path:
    env = os.environ.get("KAFSTASH_KAFKA_LIBS")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "kafstash" / f"kafka-{KAFKA_VERSION}" / "libs"


def _pom_digest() -> str:
    # Stamping the marker with the POM's hash makes an edited POM (new version, extra artifact)
    # trigger a fresh download instead of silently reusing a stale classpath.
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()


def _marker_ok(marker: Path, digest: str) -> bool:
    try:
        return marker.read_text().strip() == digest
    except OSError:
        return False


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def ensure_jars(cache_dir: Path | None = None) -> Path:
    """Return a directory holding the broker's runtime classpath, downloading it once with Maven.

    ``cache_dir`` defaults to ``$KAFSTASH_KAFKA_LIBS``, else ``~/.cache/kafstash/kafka-4.1.1/libs``.
    Concurrent callers (e.g. pytest-xdist workers) serialise on a file lock, so only one runs mvn.
    """
    libs = (cache_dir if cache_dir is not None else _default_libs_dir()).expanduser().resolve()
    if not POM_PATH.is_file():
        raise BrokerError(
            f"{POM_PATH} is missing; kafstash.infra.kafka must be installed with its data"
        )
    digest = _pom_digest()
    marker = libs / _MARKER_NAME
    if _marker_ok(marker, digest):
        return libs
    libs.mkdir(parents=True, exist_ok=True)
    with _file_lock(libs / ".lock"):
        # Whoever held the lock before us may have just finished the download.
        if _marker_ok(marker, digest):
            return libs
        _download_jars(libs)
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(digest + "\n")
        tmp.replace(marker)
    return libs


def _download_jars(libs: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven ('mvn') is not on PATH; it is needed once to fetch the Kafka jars into "
            f"{libs}. Install it (e.g. apt-get install maven); later runs reuse the cached jars."
        )
    # A run killed half-way can leave truncated jars, which copy-dependencies would then keep
    # because it skips files that look up to date.
    for jar in libs.glob("*.jar"):
        jar.unlink()
    cmd = [
        mvn, "-q", "-B", "-f", str(POM_PATH),
        f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={libs}",
    ]  # fmt: skip
    log.info("Fetching Kafka %s jars with Maven into %s", KAFKA_VERSION, libs)
    began = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1800, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"mvn did not finish fetching the Kafka jars in {exc.timeout}s") from exc
    if proc.returncode != 0:
        output = _tail(proc.stdout + proc.stderr, 40)
        raise BrokerError(
            f"mvn failed (exit {proc.returncode}) fetching the Kafka jars:\n"
            f"{' '.join(cmd)}\n{output}"
        )
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"mvn succeeded but left no kafka_2.13 jar in {libs}")
    log.info(
        "Fetched %d jars in %.1fs", sum(1 for _ in libs.glob("*.jar")), time.monotonic() - began
    )


# ------------------------------------------------------------------------------------- broker


def _free_ports(count: int) -> list[int]:
    # Holding every socket open until all are bound keeps the ports distinct from each other.
    # The kernel may still hand a port to someone else before the JVM binds it; start() retries.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((_HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def _new_cluster_id() -> str:
    # Same encoding as Kafka's Uuid.randomUuid(); an id starting with '-' would be read by the
    # storage tool's argument parser as an option.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


async def _probe_metadata(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="kafstash-readiness-probe",
        request_timeout_ms=int(_PROBE_TIMEOUT * 1000),
    )
    try:
        await asyncio.wait_for(admin.start(), _PROBE_TIMEOUT)
        cluster = await asyncio.wait_for(admin.describe_cluster(), _PROBE_TIMEOUT)
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()
    # A broker appears in metadata only once it is registered and unfenced, i.e. it can serve.
    return bool(cluster.get("brokers"))


def _metadata_ready(bootstrap: str) -> bool:
    # A fresh thread owns its own event loop, so this works even when start() is called from a
    # coroutine (where asyncio.run() would refuse to nest).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-ready") as pool:
        return pool.submit(lambda: asyncio.run(_probe_metadata(bootstrap))).result()


_running: set[LocalBroker] = set()


@atexit.register
def _stop_leftovers() -> None:
    # The JVM runs in its own session, so a terminal's Ctrl-C reaches only Python, which then
    # stops the broker in order. The price: a broker whose owner never called stop() would
    # outlive the interpreter.
    for broker in list(_running):
        broker.stop(timeout=10)


class LocalBroker:
    """One Kafka 4.x process acting as both KRaft controller and broker, bound to 127.0.0.1.

    Everything lives under ``data_dir``: ``server.properties``, the Kafka log dirs (``data/``),
    log4j output (``logs/server.log``) and the JVM's stdout/stderr (``console.log``). Starting
    again on a formatted ``data_dir`` keeps its topics and records.

    ``extra_properties`` override or add server.properties entries. For example crash tests
    may lower ``broker.session.timeout.ms`` (default 9000): after a SIGKILL the restarted
    broker cannot register until its previous incarnation's session expires.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "512m",
        extra_properties: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.heap = heap
        self.extra_properties = dict(extra_properties or {})
        self._requested_ports = (port, controller_port)
        self._port = port
        self._controller_port = controller_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None
        self._log_offsets: dict[Path, int] = {}
        self.startup_seconds: float | None = None
        """Seconds the last successful start() took, from call to ready (format included)."""

    # -- paths and properties

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "data"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def console_path(self) -> Path:
        return self.data_dir / "console.log"

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("the broker has not been started, so it has no port yet")
        return self._port

    @property
    def controller_port(self) -> int:
        if self._controller_port is None:
            raise BrokerError("the broker has not been started, so it has no port yet")
        return self._controller_port

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` for clients' ``bootstrap_servers``."""
        return f"{_HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The JVM's pid while it runs, else None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"LocalBroker({str(self.data_dir)!r}, port={self._port}, {state})"

    # -- lifecycle

    def start(self, timeout: float = 90) -> None:
        """Start the broker and block until it serves metadata; raise BrokerError otherwise."""
        if self.is_running():
            raise BrokerError(f"{self!r} is already running")
        began = time.monotonic()
        deadline = began + timeout
        java = shutil.which("java")
        if java is None:
            raise BrokerError("'java' (17+) is not on PATH; Kafka 4.x needs it")
        libs = ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        repicks_left = 1
        while True:
            fresh = not self._formatted()
            if fresh:
                self._pick_missing_ports()
                self._write_properties()
                self._format(java, libs)
            else:
                self._adopt_previous_ports()
                self._write_properties()
            try:
                self._launch(java, libs)
                self._wait_ready(deadline, timeout)
            except _PortInUse as exc:
                self._reap()
                picked = {self._port, self._controller_port} - set(self._requested_ports)
                ours = exc.port in picked if exc.port is not None else bool(picked)
                if not (fresh and ours and repicks_left):
                    raise
                repicks_left -= 1
                # The quorum's controller endpoint is recorded at format time, so new ports mean
                # a new format; the store was created moments ago and holds nothing yet.
                log.warning("Kafka lost the race for port %s; retrying on new ports", exc.port)
                shutil.rmtree(self.log_dirs, ignore_errors=True)
                self._port, self._controller_port = self._requested_ports
                continue
            except BaseException:
                self._reap()
                raise
            break
        self.startup_seconds = time.monotonic() - began
        log.info(
            "Kafka %s ready at %s (pid %s) in %.1fs",
            KAFKA_VERSION,
            self.bootstrap,
            self.pid,
            self.startup_seconds,
        )

    def stop(self, timeout: float = 30) -> None:
        """Controlled shutdown (SIGTERM); SIGKILL if it takes longer than ``timeout`` seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("Kafka pid %s ignored SIGTERM for %ss; killing it", proc.pid, timeout)
        self._reap()
        log.info("Kafka at %s stopped", self.bootstrap)

    def kill(self) -> None:
        """SIGKILL the broker at once, as a crash would: no flush, no controlled shutdown."""
        if self._proc is not None:
            log.info("Killing Kafka pid %s", self._proc.pid)
        self._reap()

    def restart(self, timeout: float = 90) -> None:
        """Start again on the same ports and ``data_dir``, stopping it first if still running."""
        self.stop()
        self.start(timeout)

    def __enter__(self) -> Self:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals

    def _formatted(self) -> bool:
        return (self.log_dirs / "meta.properties").is_file()

    def _pick_missing_ports(self) -> None:
        taken = (self._port, self._controller_port)
        candidates = [port for port in _free_ports(3) if port not in taken]
        if self._port is None:
            self._port = candidates.pop()
        if self._controller_port is None:
            self._controller_port = candidates.pop()

    def _adopt_previous_ports(self) -> None:
        # A formatted store remembers its controller endpoint, so a new LocalBroker (e.g. in a
        # later process) on the same data_dir must reuse the ports from the previous run.
        if self._port is not None and self._controller_port is not None:
            return
        previous = {}
        with contextlib.suppress(OSError):
            text = self.properties_path.read_text()
            previous = dict(re.findall(r"(PLAINTEXT|CONTROLLER)://[^:,\s]+:(\d+)", text))
        if self._port is None and "PLAINTEXT" in previous:
            self._port = int(previous["PLAINTEXT"])
        if self._controller_port is None and "CONTROLLER" in previous:
            self._controller_port = int(previous["CONTROLLER"])
        if self._port is None or self._controller_port is None:
            log.warning("No previous ports recorded in %s; picking new ones", self.data_dir)
            self._pick_missing_ports()

    def _write_properties(self) -> None:
        text = "".join(f"{key}={value}\n" for key, value in self._properties().items())
        self.properties_path.write_text("# Written by kafstash.infra.kafka.LocalBroker\n" + text)

    def _properties(self) -> dict[str, str]:
        """server.properties as a dict; infra.kafka.cluster overrides the quorum entries."""
        port, cport = self.port, self.controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            # Dynamic (KIP-853) quorum: the voter set comes from `format --standalone`.
            "controller.quorum.bootstrap.servers": f"{_HOST}:{cport}",
            "listeners": f"PLAINTEXT://{_HOST}:{port},CONTROLLER://{_HOST}:{cport}",
            "advertised.listeners": f"PLAINTEXT://{_HOST}:{port},CONTROLLER://{_HOST}:{cport}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            # Topics are part of the contract; a typo'd name must fail, not create a topic.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "log.retention.hours": "168",
            # One node cannot hold more than one replica of the internal topics.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # The defaults (50 partitions each, 3 s join delay) make the first group join or
            # transaction slow on a small machine, for no benefit on one node.
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
        }
        return props | self.extra_properties

    def _classpath(self, libs: Path) -> str:
        return f"{libs}/*"

    def _format(self, java: str, libs: Path) -> None:
        began = time.monotonic()
        cmd = [
            java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp", self._classpath(libs),
            "kafka.tools.StorageTool", "format", *self._format_args(),
            "-c", str(self.properties_path),
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                cwd=self.data_dir,
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"formatting Kafka storage did not finish in {exc.timeout}s") from exc
        if proc.returncode != 0:
            output = _tail(proc.stdout + proc.stderr, _LOG_TAIL_LINES)
            raise BrokerError(f"Kafka storage format failed (exit {proc.returncode}):\n{output}")
        log.debug("Formatted %s in %.1fs", self.log_dirs, time.monotonic() - began)

    def _format_args(self) -> list[str]:
        """The storage tool's quorum and cluster-id arguments: a fresh single-node quorum."""
        return ["--standalone", "-t", _new_cluster_id()]

    def _launch(self, java: str, libs: Path) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        server_log = self.logs_dir / "server.log"
        # Logs are appended across restarts; remembering where this run begins lets failure
        # reports and the port-clash check look at this run only.
        self._log_offsets = {
            path: path.stat().st_size if path.exists() else 0
            for path in (server_log, self.console_path)
        }
        cmd = [
            java, f"-Xms{self.heap}", f"-Xmx{self.heap}",
            "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.logs_dir}",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            "-cp", self._classpath(libs),
            "kafka.Kafka", str(self.properties_path),
        ]  # fmt: skip
        self._console = self.console_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._console,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        except BaseException:
            self._console.close()
            self._console = None
            raise
        _running.add(self)
        log.debug("Launched Kafka pid %s: %s", self._proc.pid, " ".join(cmd))

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        while True:
            code = proc.poll()
            if code is not None:
                logs = self._recent_logs()
                if "Address already in use" in logs:
                    clash = re.search(r"failed to bind to [^\s:]+:(\d+)", logs)
                    raise _PortInUse(
                        f"Kafka could not bind a port (already in use):\n{logs}",
                        int(clash.group(1)) if clash else None,
                    )
                raise BrokerError(f"Kafka exited with code {code} while starting:\n{logs}")
            if _port_open(self.port) and _metadata_ready(self.bootstrap):
                return
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"Kafka at {self.bootstrap} was not ready within {timeout}s:\n"
                    f"{self._recent_logs()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _recent_logs(self) -> str:
        parts = []
        for path, offset in self._log_offsets.items():
            try:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    data = handle.read().decode("utf-8", "replace")
            except OSError:
                continue
            lines = deque(data.splitlines(), maxlen=_LOG_TAIL_LINES)
            parts.append(f"--- last {len(lines)} lines of {path} ---\n" + "\n".join(lines))
        return "\n".join(parts) or "(no log output)"

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        # start_new_session made the JVM a process-group leader, so its pid is the group id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)

    def _reap(self) -> None:
        """Make sure the JVM is gone and release what this run held."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._signal(signal.SIGKILL)
            self._proc.wait()
            self._proc = None
        if self._console is not None:
            self._console.close()
            self._console = None
        _running.discard(self)
