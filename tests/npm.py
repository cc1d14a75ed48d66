"""Install a tracked Node package of the test-suite (tests/js, tests/wf_js) from its lock file.

Each such folder has a ``package.json`` pinning its SDKs exactly and a committed
``package-lock.json``; :func:`ensure_installed` runs ``npm ci`` there once, under a file lock so
parallel pytest workers install it once between them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["INSTALL_TIMEOUT_S", "NodeUnavailableError", "ensure_installed", "node"]

INSTALL_TIMEOUT_S = 600.0


class NodeUnavailableError(RuntimeError):
    """Node.js or npm is missing, or a package could not be installed."""


def node() -> str:
    found = shutil.which("node")
    if found is None:
        raise NodeUnavailableError(
            "Node.js is not on PATH; the JS SDK tests need Node >= 18 (and npm) installed"
        )
    return found


def _pinned_version(directory: Path, package: str) -> str:
    manifest = json.loads((directory / "package.json").read_text(encoding="utf-8"))
    return str(manifest["dependencies"][package])


def _installed_version(directory: Path, package: str) -> str | None:
    manifest = directory / "node_modules" / package / "package.json"
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed(directory: Path, packages: tuple[str, ...]) -> Path:
    """``npm ci`` in ``directory`` unless each of ``packages`` is installed at its pinned
    version; return ``directory``."""
    node()
    wanted = {package: _pinned_version(directory, package) for package in packages}

    def installed() -> bool:
        return all(_installed_version(directory, p) == v for p, v in wanted.items())

    if installed():
        return directory
    npm = shutil.which("npm")
    if npm is None:
        raise NodeUnavailableError(f"npm is not on PATH; cannot install {wanted} into {directory}")
    # The lock lives outside the tree: `npm ci` deletes node_modules, and the folder is tracked.
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"kafstash-jssdk-{digest}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if installed():  # another process won the race
                return directory
            try:
                done = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund"],
                    cwd=directory,
                    capture_output=True,
                    text=True,
                    timeout=INSTALL_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise NodeUnavailableError(
                    f"`npm ci` in {directory} did not finish in {INSTALL_TIMEOUT_S:.0f} s"
                ) from exc
            if done.returncode != 0:
                raise NodeUnavailableError(
                    f"`npm ci` in {directory} failed with exit code {done.returncode}:\n"
                    f"{done.stdout}{done.stderr}"
                )
            for package, version in wanted.items():
                if (found := _installed_version(directory, package)) != version:
                    raise NodeUnavailableError(
                        f"`npm ci` installed {package}@{found}, expected {version}"
                    )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return directory
