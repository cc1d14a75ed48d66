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
import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from tests import npm
from tests.npm import NodeUnavailableError, node

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


JsSdkUnavailableError = NodeUnavailableError
"""Node.js or npm is missing, or the SDK could not be installed (tests/npm.py)."""


def _node() -> str:
    return node()


def ensure_installed() -> Path:
    """Install the pinned SDK into tests/js/node_modules if needed; return tests/js.

    Safe to call from parallel test processes: the install runs under an exclusive file lock.
    """
    return npm.ensure_installed(JS_DIR, (SDK_PACKAGE,))


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

    # A subclass drives another script of the same protocol from another package folder.
    driver: ClassVar[Path] = DRIVER

    def install(self) -> Path:
        """Install the driver's package if needed; return the folder to run it in."""
        return ensure_installed()

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
        cwd = self.install()
        name = self.driver.name
        try:
            done = subprocess.run(
                [_node(), str(self.driver)],
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
                f"{name} did not answer {command.get('op')!r} within {self.timeout:.0f} s; "
                f"stderr:\n{stderr}"
            ) from exc
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise JsSdkDriverError(
                f"{name} exited with {done.returncode} for {command.get('op')!r}; "
                f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            )
        try:
            envelope = json.loads(lines[-1])
        except ValueError as exc:
            raise JsSdkDriverError(f"{name} printed no JSON line:\n{done.stdout}") from exc
        if not isinstance(envelope, dict) or "ok" not in envelope:
            raise JsSdkDriverError(f"{name} printed an unexpected reply: {envelope!r}")
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
