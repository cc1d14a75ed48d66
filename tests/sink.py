"""A real HTTP destination on 127.0.0.1 for end-to-end tests.

It runs an aiohttp server on its own event loop in a thread, records every request, answers by
route, and verifies every signature with the official Python SDK's Receiver. Routes:

- ``/ok/...``: 200
- ``/status/{code}/...``: that status
- ``/fail/{n}/...``: 500 for the first n attempts of each message id, then 200
- ``/slow/{ms}/...``: 200 after ``ms`` milliseconds
- ``/retry-after/{s}/...``: 503 with ``Retry-After: s`` on the first attempt, then 200
- ``/nonretryable/...``: 489 with ``Upstash-NonRetryable-Error: true``
- ``/set-cookie/...``: 200 with ``Set-Cookie: sink-session=<message id>``
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from qstash import Receiver

SESSION_COOKIE = "sink-session"  # what ``/set-cookie/`` routes set


@dataclass(frozen=True)
class Receipt:
    path: str  # path and query, as received
    method: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() at receipt
    answered: int
    signature_ok: bool
    signature_error: str | None

    @property
    def message_id(self) -> str:
        return self.headers.get("Upstash-Message-Id", "")

    @property
    def retried(self) -> int:
        return int(self.headers.get("Upstash-Retried", "-1"))


@dataclass
class Sink:
    current_key: str
    next_key: str
    receipts: list[Receipt] = field(default_factory=list)
    # (path, time) of every request as it arrives, before any /slow/ wait: what is in flight.
    arrivals: list[tuple[str, float]] = field(default_factory=list)
    port: int = 0
    _attempts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # -- server ------------------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def boot() -> None:
            app = web.Application(client_max_size=4 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(boot())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="sink", daemon=True)
        self._thread.start()
        assert ready.wait(10), "sink did not start"

    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Sink:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        with self._lock:
            self.arrivals.append((request.path_qs, time.time()))
        body = await request.read()
        headers = dict(request.headers)
        url = f"http://127.0.0.1:{self.port}{request.path_qs}"
        ok, err = self._verify(headers.get("Upstash-Signature", ""), body, url)
        parts = request.path.strip("/").split("/")
        route = parts[0] if parts else ""
        mid = headers.get("Upstash-Message-Id", "")
        with self._lock:
            self._attempts[f"{route}:{mid}"] += 1
            attempt = self._attempts[f"{route}:{mid}"]
        status, extra = 200, {}
        if route == "status":
            status = int(parts[1])
        elif route == "fail" and attempt <= int(parts[1]):
            status = 500
        elif route == "slow":
            await asyncio.sleep(int(parts[1]) / 1000)
        elif route == "retry-after" and attempt == 1:
            status, extra = 503, {"Retry-After": parts[1]}
        elif route == "nonretryable":
            status, extra = 489, {"Upstash-NonRetryable-Error": "true"}
        elif route == "set-cookie":
            extra = {"Set-Cookie": f"{SESSION_COOKIE}={mid}; Path=/"}
        receipt = Receipt(
            path=request.path_qs,
            method=request.method,
            headers=headers,
            body=body,
            at=time.time(),
            answered=status,
            signature_ok=ok,
            signature_error=err,
        )
        with self._lock:
            self.receipts.append(receipt)
        return web.Response(status=status, text=f"answer {status}", headers=extra)

    def _verify(self, signature: str, body: bytes, url: str) -> tuple[bool, str | None]:
        # The official Receiver takes the body as text and hashes its UTF-8 encoding, so it can
        # only verify UTF-8 bodies; binary bodies need kafstash's own Receiver.
        try:
            Receiver(current_signing_key=self.current_key, next_signing_key=self.next_key).verify(
                signature=signature, body=body.decode("utf-8", "replace"), url=url
            )
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, None

    # -- queries -----------------------------------------------------------------------------

    def received(self, prefix: str) -> list[Receipt]:
        with self._lock:
            return [r for r in self.receipts if r.path.startswith(prefix)]

    def wait_for(
        self, prefix: str, predicate: Callable[[list[Receipt]], bool], timeout: float = 30
    ) -> list[Receipt]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.received(prefix)
            if predicate(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting at {prefix}; got {len(got)}: "
                    + ", ".join(f"{r.path} retried={r.retried} -> {r.answered}" for r in got[:20])
                )
            time.sleep(0.05)

    def wait_count(self, prefix: str, n: int, timeout: float = 30) -> list[Receipt]:
        return self.wait_for(prefix, lambda got: len(got) >= n, timeout)
