"""The benchmark's own HTTP servers, each run as a separate process by ``benchmarks.run``.

``python benchmarks/servers.py hello FD`` serves a hello-world ASGI app; ``... sink FD`` serves the
delivery sink. Both run under uvicorn (uvloop + httptools, no access log, one process) on a
listening socket the parent bound on 127.0.0.1 and passed as file descriptor FD, so there is no
race for the port.

The sink answers every request 200 and counts it by the first path segment
(``/bp/...`` → ``bp``), remembering the first and last arrival (``time.monotonic_ns()``, a
system-wide clock on Linux, so the parent can compare it with its own). For paths under ``/e2e/``
it also records the arrival time of the nonce that starts the body (monotonic and wall clock,
the latter to compare with Kafka record timestamps). Every body's nonce (up to the first space)
is counted per prefix, so duplicates show. ``GET /_stats`` returns the counters, ``GET /_e2e``
the nonce arrivals and ``GET /_receipts`` ``{prefix: [receipts, distinct nonces]}``, as JSON;
``/_`` paths are not counted.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

_OK_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"2")]


async def _read_body(receive: Any) -> bytes:
    body = b""
    more = True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    return body


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        await _lifespan(receive, send)
        return
    await _read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": _OK_HEADERS})
    await send({"type": "http.response.body", "body": b"ok"})


# prefix -> [count, first arrival ns, last arrival ns]
_counts: dict[str, list[int]] = {}
_e2e: dict[str, list[int]] = {}  # nonce -> [monotonic ns, wall-clock ns]
_nonces: dict[str, dict[str, int]] = {}  # prefix -> nonce -> receipts


async def sink(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        await _lifespan(receive, send)
        return
    body = await _read_body(receive)
    now = time.monotonic_ns()
    path: str = scope["path"]
    if path.startswith("/_"):
        payload: object = _e2e
        if path == "/_stats":
            payload = _counts
        elif path == "/_receipts":
            payload = {p: [sum(n.values()), len(n)] for p, n in _nonces.items()}
        data = json.dumps(payload).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})
        return
    prefix = path[1:].split("/", 1)[0]
    entry = _counts.get(prefix)
    if entry is None:
        _counts[prefix] = [1, now, now]
    else:
        entry[0] += 1
        entry[2] = now
    nonce = body[:64].split(b" ", 1)[0].decode("ascii", "replace")
    seen = _nonces.setdefault(prefix, {})
    seen[nonce] = seen.get(nonce, 0) + 1
    if prefix == "e2e" and nonce not in _e2e:  # the first receipt is the end-to-end time
        _e2e[nonce] = [now, time.time_ns()]
    await send({"type": "http.response.start", "status": 200, "headers": _OK_HEADERS})
    await send({"type": "http.response.body", "body": b"ok"})


def main() -> None:
    import socket  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    kind, fd = sys.argv[1], int(sys.argv[2])
    app = {"hello": hello, "sink": sink}[kind]
    # uvicorn's own ``fd=`` option wraps the descriptor as AF_UNIX, so the event loop would skip
    # TCP_NODELAY and every response would wait for a delayed ACK (~40 ms on loopback).
    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
