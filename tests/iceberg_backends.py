"""Iceberg catalogs and warehouses beyond SQLite, as real local servers for the archiver tests.

Each backend is a context manager (the one start/stop pattern of Stack and Sink) that starts a
real server on a free loopback port and gives the environment a Stack needs to use it
(``env(...)``: the ``KAFSTASH_ICEBERG_*`` and pyiceberg variables, exactly what an operator sets):

- :class:`Postgres`: Debian's PostgreSQL (``initdb``/``postgres`` on PATH or in
  ``/usr/lib/postgresql/*/bin``), a throwaway cluster run as an unprivileged user (postgres
  refuses to run as root); the SQL catalog on ``postgresql+psycopg2://``.
- :class:`RestCatalog`: Apache Iceberg's REST catalog fixture (``RESTCatalogServer``, the main
  class of ``org.apache.iceberg:iceberg-open-api``'s jar on Maven Central), fetched once with mvn
  into ``~/.cache/kafstash/``; its own JDBC catalog on SQLite and a local warehouse.
- :class:`MotoS3`: moto's S3 server as an S3-compatible warehouse (``s3://bucket/...``) under the
  default SQLite catalog, through pyiceberg's ``s3.endpoint`` and credential properties.

Each raises :class:`Unavailable` with the reason when its tools are missing; the fixtures turn
that into a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.stack import free_port

ICEBERG_REST_VERSION = "1.10.0"
ICEBERG_REST_ARTIFACT = f"org.apache.iceberg:iceberg-open-api:{ICEBERG_REST_VERSION}"


class Unavailable(RuntimeError):
    """The backend cannot run on this machine; the message says what is missing."""


def _wait(ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.3)
    raise TimeoutError(f"{what} not ready after 90 s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ================================================================================ PostgreSQL


def postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``postgres``: PATH first, then Debian's layout."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(on_path).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    if on_path:  # Debian links initdb into PATH but not postgres: look beside the target
        target = Path(on_path).resolve().parent
        if (target / "postgres").exists():
            return target
    return None


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1; ``uri`` is SQLAlchemy's, for pyiceberg."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.port = free_port()
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def env(self) -> dict[str, str]:
        return {"KAFSTASH_ICEBERG_CATALOG_URI": self.uri}

    def _as_user(self) -> list[str]:
        """Drop root: postgres refuses to start as root. ``setpriv`` execs, so our pid is its."""
        if os.geteuid() != 0:
            return []
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise Unavailable("running as root and setpriv (util-linux) is missing")
        return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]

    def start(self) -> None:
        if self.bin is None:
            raise Unavailable(
                "PostgreSQL binaries not found (initdb/postgres on PATH or in "
                "/usr/lib/postgresql/*/bin); apt-get install postgresql"
            )
        try:
            import psycopg2  # noqa: F401, PLC0415
        except ImportError as exc:
            raise Unavailable("psycopg2 is not installed (pip install psycopg2-binary)") from exc
        # Not under pytest's tmp_path: its parents are private to root, and the server is not.
        self.dir = Path(tempfile.mkdtemp(prefix="kafstash-pg-"))
        data = self.dir / "data"
        data.mkdir()
        as_user = self._as_user()
        if as_user:
            os.chmod(self.dir, 0o755)  # the unprivileged server must enter it
            shutil.chown(data, "nobody", "nogroup")
        log = self.dir / "postgres.log"
        init = subprocess.run(
            [*as_user, str(self.bin / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.decode(errors='replace')}")
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*as_user, str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", "", "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _wait(self._ready, self.proc, log, "postgres")

    def _ready(self) -> bool:
        import psycopg2  # noqa: PLC0415

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres"
        )
        conn.close()
        return True

    def stop(self) -> None:
        # SIGINT: "fast" shutdown. SIGTERM ("smart") would wait for the SQLAlchemy pools of
        # the test process, which keep their connections open until it exits.
        _stop(self.proc, signal.SIGINT)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Postgres:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# ============================================================================= REST catalog


def rest_jar(cache: Path | None = None) -> Path:
    """The REST fixture's runnable jar (211 MB, its dependencies shaded in), fetched once."""
    cache = cache or Path.home() / ".cache" / "kafstash" / f"iceberg-rest-{ICEBERG_REST_VERSION}"
    jar = cache / f"iceberg-open-api-{ICEBERG_REST_VERSION}.jar"
    if jar.exists():
        return jar
    if shutil.which("java") is None:
        raise Unavailable("java is not on PATH (needed for the Iceberg REST catalog fixture)")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise Unavailable("mvn is not on PATH (needed once to fetch the REST catalog fixture)")
    cache.mkdir(parents=True, exist_ok=True)
    # Into a scratch directory first: an interrupted fetch must not leave a half jar behind.
    scratch = Path(tempfile.mkdtemp(prefix="fetch-", dir=cache))
    try:
        out = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={ICEBERG_REST_ARTIFACT}",
             f"-DoutputDirectory={scratch}"],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        fetched = scratch / jar.name
        if out.returncode != 0 or not fetched.exists():
            raise Unavailable(f"mvn could not fetch {ICEBERG_REST_ARTIFACT}: {out.stdout[-2000:]}")
        fetched.replace(jar)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return jar


class RestCatalog:
    """Iceberg's RESTCatalogServer: a JDBC catalog on SQLite behind the REST API, local files."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"KAFSTASH_ICEBERG_CATALOG_TYPE": "rest", "KAFSTASH_ICEBERG_CATALOG_URI": self.uri}

    def start(self) -> None:
        jar = rest_jar()
        java = shutil.which("java")
        if java is None:
            raise Unavailable("java is not on PATH (needed for the Iceberg REST catalog fixture)")
        warehouse = self.work / "warehouse"
        warehouse.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            # The fixture maps CATALOG_<name> to catalog property <name> ('_' → '.').
            "CATALOG_REST_PORT": str(self.port),
            "CATALOG_WAREHOUSE": warehouse.as_uri(),
            "CATALOG_URI": f"jdbc:sqlite:file:{self.work / 'catalog.db'}",
        }
        log = self.work / "rest.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [java, "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-jar", str(jar)],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _wait(
            lambda: httpx.get(f"{self.uri}/v1/config", timeout=2).status_code == 200,
            self.proc,
            log,
            "Iceberg REST catalog",
        )

    def stop(self) -> None:
        _stop(self.proc, signal.SIGKILL)  # throwaway state; its JVM shutdown takes seconds

    def __enter__(self) -> RestCatalog:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# ================================================================================= S3 (moto)

S3_ACCESS_KEY = "kafstash-test"
S3_SECRET_KEY = "kafstash-test-secret"  # moto accepts any credentials
S3_REGION = "us-east-1"


class MotoS3:
    """moto's S3 on loopback; ``env(bucket)`` makes ``s3://<bucket>/warehouse`` the warehouse."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        try:
            import moto.server  # noqa: F401, PLC0415
        except ImportError as exc:
            raise Unavailable("moto[server] is not installed") from exc
        self.work.mkdir(parents=True, exist_ok=True)
        log = self.work / "moto.log"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _wait(
            lambda: httpx.get(f"{self.endpoint}/moto-api/", timeout=2).status_code == 200,
            self.proc,
            log,
            "moto S3",
        )

    def create_bucket(self) -> str:
        name = f"kafstash-{uuid.uuid4().hex[:12]}"
        r = httpx.put(f"{self.endpoint}/{name}", timeout=10)  # moto needs no signature
        r.raise_for_status()
        return name

    def env(self, bucket: str) -> dict[str, str]:
        """A fresh bucket as the warehouse; S3 settings in pyiceberg's own variables."""
        pyiceberg = "PYICEBERG_CATALOG__KAFSTASH__"
        return {
            "KAFSTASH_ICEBERG_WAREHOUSE": f"s3://{bucket}/warehouse",
            f"{pyiceberg}S3__ENDPOINT": self.endpoint,
            f"{pyiceberg}S3__ACCESS_KEY_ID": S3_ACCESS_KEY,
            f"{pyiceberg}S3__SECRET_ACCESS_KEY": S3_SECRET_KEY,
            f"{pyiceberg}S3__REGION": S3_REGION,
        }

    def stop(self) -> None:
        _stop(self.proc)

    def __enter__(self) -> MotoS3:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
