"""Drive the official JS SDK ``@upstash/qstash`` (pinned to 2.12.0) from Python tests.

Each call spawns ``node tests/js/driver.mjs``, writes one JSON command to its stdin and
reads one JSON line back; see the header of ``driver.mjs`` for the protocol and the ops.
Batch several calls into one process with :meth:`JsSdk.seq` to save Node's start-up time.

Errors:

- :class:`JsSdkError`: the SDK raised (an HTTP error from our server, a network failure, ...).
- :class:`JsSdkDriverError`: the driver itself failed (bad command, crash, timeout).
- :class:`JsSdkUnavailableError`: Node/npm are missing or ``npm ci`` failed.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "JS_DIR",
    "SDK_PACKAGE",
    "JsSdk",
    "JsSdkDriverError",
    "JsSdkError",
    "JsSdkUnavailableError",
    "ensure_installed",
]

JS_DIR = Path(__file__).resolve().parent / "js"
SDK_PACKAGE = "@upstash/qstash"
DRIVER = JS_DIR / "driver.mjs"
TIMEOUT_S = 60.0
INSTALL_TIMEOUT_S = 600.0

# Variables that would make the SDK ignore the baseUrl/token/keys we hand it.
_SCRUBBED_ENV = ("QSTASH_DEV", "QSTASH_REGION", "UPSTASH_DISABLE_TELEMETRY")


class JsSdkError(Exception):
    """The JS SDK call failed; ``status`` is the HTTP status when the SDK error carries one."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        *,
        name: str | None = None,
        cause: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.name = name
        self.cause = cause

    def __str__(self) -> str:
        where = f" (HTTP {self.status})" if self.status is not None else ""
        why = f" [cause: {self.cause}]" if self.cause else ""
        return f"{self.name or 'Error'}{where}: {self.message}{why}"


class JsSdkDriverError(RuntimeError):
    """driver.mjs could not run the command: malformed command, crash or timeout."""


class JsSdkUnavailableError(RuntimeError):
    """Node.js or npm is missing, or the SDK could not be installed."""


def _pinned_version() -> str:
    manifest = json.loads((JS_DIR / "package.json").read_text(encoding="utf-8"))
    return str(manifest["dependencies"][SDK_PACKAGE])


def _installed_version() -> str | None:
    manifest = JS_DIR / "node_modules" / SDK_PACKAGE / "package.json"
    try:
        return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise JsSdkUnavailableError(
            "Node.js is not on PATH; the JS SDK tests need Node >= 18 (and npm) installed"
        )
    return node


def ensure_installed() -> Path:
    """Install the pinned SDK into tests/js/node_modules if needed; return tests/js.

    Safe to call from parallel test processes: the install runs under an exclusive file lock.
    """
    _node()
    wanted = _pinned_version()
    if _installed_version() == wanted:
        return JS_DIR
    npm = shutil.which("npm")
    if npm is None:
        raise JsSdkUnavailableError(
            f"npm is not on PATH; cannot install {SDK_PACKAGE}@{wanted} into {JS_DIR}"
        )
    # The lock lives outside the tree: `npm ci` deletes node_modules, and tests/js is tracked.
    digest = hashlib.sha256(str(JS_DIR).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"kafstash-jssdk-{digest}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _installed_version() == wanted:  # another process won the race
                return JS_DIR
            try:
                done = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund"],
                    cwd=JS_DIR,
                    capture_output=True,
                    text=True,
                    timeout=INSTALL_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise JsSdkUnavailableError(
                    f"`npm ci` in {JS_DIR} did not finish in {INSTALL_TIMEOUT_S:.0f} s"
                ) from exc
            if done.returncode != 0:
                raise JsSdkUnavailableError(
                    f"`npm ci` in {JS_DIR} failed with exit code {done.returncode}:\n"
                    f"{done.stdout}{done.stderr}"
                )
            if (found := _installed_version()) != wanted:
                raise JsSdkUnavailableError(
                    f"`npm ci` installed {SDK_PACKAGE}@{found}, expected {wanted}"
                )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return JS_DIR


def _driver_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.setdefault("NODE_NO_WARNINGS", "1")
    return env


def _error_from(envelope: Mapping[str, Any]) -> JsSdkError:
    status = envelope.get("status")
    return JsSdkError(
        str(envelope.get("error", "")),
        status if isinstance(status, int) else None,
        name=envelope.get("name"),
        cause=envelope.get("cause"),
    )


def _encode_items(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Accept ``body`` (bytes or str) as a convenience for ``bodyBase64``."""
    encoded = []
    for item in items:
        out = dict(item)
        if "body" in out:
            body = out.pop("body")
            raw = body.encode() if isinstance(body, str) else bytes(body)
            out["bodyBase64"] = base64.b64encode(raw).decode("ascii")
        encoded.append(out)
    return encoded


class JsSdk:
    """A ``@upstash/qstash`` ``Client`` pointed at ``base_url`` with ``token``.

    ``client_options`` are extra JSON-safe ``ClientConfig`` fields (``headers``,
    ``retry: False``, ``enableTelemetry: True``); by default telemetry is off.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        client_options: Mapping[str, Any] | None = None,
        timeout: float = TIMEOUT_S,
    ) -> None:
        self.base_url = base_url
        self.token = token
        self.client_options = dict(client_options or {})
        self.timeout = timeout

    def command(self, op: str, /, **args: Any) -> dict[str, Any]:
        """The JSON command for ``op``, as driver.mjs reads it."""
        command: dict[str, Any] = {
            "op": op,
            "baseUrl": self.base_url,
            "token": self.token,
            "args": args,
        }
        if self.client_options:
            command["client"] = self.client_options
        return command

    def run_envelope(self, command: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``command`` to a fresh driver process; return its raw ``{"ok": ...}`` reply."""
        cwd = ensure_installed()
        try:
            done = subprocess.run(
                [_node(), str(DRIVER)],
                cwd=cwd,
                input=json.dumps(command),
                capture_output=True,
                text=True,
                encoding="utf-8",
                timeout=self.timeout,
                env=_driver_env(),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            stderr = exc.stderr or ""
            if isinstance(stderr, bytes):  # TimeoutExpired keeps raw bytes even with text=True
                stderr = stderr.decode("utf-8", "replace")
            raise JsSdkDriverError(
                f"driver.mjs did not answer {command.get('op')!r} within {self.timeout:.0f} s; "
                f"stderr:\n{stderr}"
            ) from exc
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise JsSdkDriverError(
                f"driver.mjs exited with {done.returncode} for {command.get('op')!r}; "
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            )
        try:
            envelope = json.loads(lines[-1])
        except ValueError as exc:
            raise JsSdkDriverError(f"driver.mjs printed no JSON line:\n{done.stdout}") from exc
        if not isinstance(envelope, dict) or "ok" not in envelope:
            raise JsSdkDriverError(f"driver.mjs printed an unexpected reply: {envelope!r}")
        return envelope

    def run(self, op: str, /, **args: Any) -> Any:
        """Run one SDK op (e.g. ``run("publish", url=..., body=...)``) and return its result.

        Raises :class:`JsSdkError` when the SDK call fails.
        """
        envelope = self.run_envelope(self.command(op, **args))
        if not envelope["ok"]:
            raise _error_from(envelope)
        return envelope.get("result")

    def seq_envelopes(self, steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Run ``steps`` (``{"op": ..., "args": {...}}``) in one Node process.

        Returns one ``{"ok": ...}`` envelope per step; a failing step does not stop the rest.
        """
        result: list[dict[str, Any]] = self.run("seq", steps=list(steps))
        return result

    def seq(self, steps: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Like :meth:`seq_envelopes`, but return the results and raise the first failure."""
        results = []
        for index, envelope in enumerate(self.seq_envelopes(steps)):
            if not envelope["ok"]:
                error = _error_from(envelope)
                error.add_note(f"in step {index}: {steps[index].get('op')}")
                raise error
            results.append(envelope.get("result"))
        return results

    def verify(
        self,
        current_key: str,
        next_key: str,
        items: Iterable[Mapping[str, Any]],
    ) -> list[dict[str, Any]]:
        """Check signatures with the JS ``Receiver``; one ``{"valid": bool, "error"?}`` per item.

        Each item has ``signature``, ``bodyBase64`` (or ``body`` as bytes/str), and optionally
        ``url`` and ``clockTolerance``.
        """
        result: list[dict[str, Any]] = self.run(
            "verify",
            currentSigningKey=current_key,
            nextSigningKey=next_key,
            items=_encode_items(items),
        )
        return result
