"""What `pip install kafstash` puts on a user's path: one top-level name, with its data files, and
a client that does not drag the server's dependencies into the importing process."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("schemas", "views", "producers", "streams", "sinks", "infra")
SERVER_MODULES = ("faust", "mode", "aiokafka", "pyiceberg", "pyarrow", "uvicorn", "starlette")


# What a build of the checkout never reads: setuptools' own leftovers (a stale build/lib would
# otherwise be copied into the wheel), caches, the tests and their node_modules.
NOT_SOURCE = shutil.ignore_patterns(
    "build", "dist", "*.egg-info", ".git", "tests", "node_modules", "__pycache__", ".*_cache",
    ".kafstash", ".venv",
)  # fmt: skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # Built from a copy in a temporary folder: setuptools writes build/ and *.egg-info next to
    # the sources, and would leave them in the checkout (or reuse an old build/lib from there).
    src = tmp_path_factory.mktemp("src") / "kafstash"
    shutil.copytree(ROOT, src, symlinks=True, ignore=NOT_SOURCE)
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: the build backend (setuptools) is already installed with the test extra.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), "--quiet"],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    (path,) = out.glob("kafstash-*.whl")
    return zipfile.ZipFile(path)


def _record(wheel: zipfile.ZipFile) -> list[str]:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")]
    return [row[0] for row in csv.reader(io.StringIO(wheel.read(name).decode()))]


def test_wheel_installs_only_the_kafstash_name(wheel: zipfile.ZipFile) -> None:
    top = {path.split("/", 1)[0] for path in _record(wheel)}
    assert {t for t in top if not t.endswith(".dist-info")} == {"kafstash"}


def test_wheel_carries_every_room_and_its_data(wheel: zipfile.ZipFile) -> None:
    files = set(_record(wheel))
    for room in ROOMS:
        assert f"kafstash/{room}/__init__.py" in files, room
    for data in (
        "kafstash/infra/kafka/pom.xml",
        "kafstash/infra/kafka/log4j2.yaml",
        "kafstash/schemas/json/publish-request.v1.schema.json",
        "kafstash/producers/api/openapi.yaml",
    ):
        assert data in files, data
    # The web console's static files (producers/api/console/), every one of them.
    console = ROOT / "producers" / "api" / "console"
    shipped = [p for p in console.rglob("*") if p.is_file()]
    assert any(p.name == "index.html" for p in shipped)
    for static in shipped:
        assert f"kafstash/{static.relative_to(ROOT).as_posix()}" in files, static
    # Every module of the checkout is in the wheel under kafstash/<room>/.
    for room in ROOMS:
        for py in (ROOT / room).rglob("*.py"):
            assert f"kafstash/{py.relative_to(ROOT).as_posix()}" in files, py
    # And nothing else: every file of the wheel is one of the checkout's (kafstash/<room> links to
    # <room>/), so no module deleted or renamed since an earlier build is shipped.
    stale = sorted(f for f in files if f.startswith("kafstash/") and not (ROOT / f).is_file())
    assert stale == []


def _imported_after(code: str, cwd: Path) -> set[str]:
    probe = code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))\n"
    r = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=60,
        check=True,
    )  # fmt: skip
    return set(r.stdout.split())


def test_the_client_imports_without_the_server(tmp_path: Path) -> None:
    loaded = _imported_after(
        "import kafstash\nfrom kafstash import Client, AsyncClient, Receiver\n"
        "Client('token', base_url='http://127.0.0.1:1')",
        tmp_path,
    )
    assert "kafstash.producers.client" in loaded  # the probe did import the client
    heavy = sorted(m for m in loaded if m.split(".")[0] in SERVER_MODULES)
    assert heavy == []


def test_the_rooms_are_not_top_level_modules(tmp_path: Path) -> None:
    # Run outside the checkout, where only the installed distribution is on the path.
    probe = f"import importlib.util as u, sys; sys.exit(any(u.find_spec(n) for n in {ROOMS!r}))"
    r = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, timeout=60, check=False)
    assert r.returncode == 0
