"""The soak's delivery sink, run as its own process: ``python -m benchmarks.soak.sink FD``.

Every POST is answered 200 at once. The body starts with the publisher's nonce and a space; the
sink keeps, per nonce, the first arrival (``time.monotonic_ns()``, a system-wide clock on Linux,
so the generator can compare it with its own intended send times) and how many times it came.
``GET /_count`` gives ``{"total": n, "distinct": {first letter of the nonce: n}}`` (one letter
per phase), ``GET /_arrivals`` gives ``{nonce: [first_ns, count]}``. It listens on a socket the
parent bound and passes as FD.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from benchmarks.servers import _lifespan, _read_body

_OK = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
_arrivals: dict[str, list[int]] = {}  # nonce -> [first arrival ns, count]
_total = 0
_distinct: dict[str, int] = {}  # first letter of the nonce (one per phase) -> distinct nonces


async def _json(send: Any, payload: object) -> None:
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _total  # noqa: PLW0603 - one counter per process, read by /_count
    if scope["type"] != "http":
        await _lifespan(receive, send)
        return
    body = await _read_body(receive)
    now = time.monotonic_ns()
    path: str = scope["path"]
    if path == "/_count":
        await _json(send, {"total": _total, "distinct": _distinct})
        return
    if path == "/_arrivals":
        await _json(send, _arrivals)
        return
    _total += 1
    nonce = body[:64].split(b" ", 1)[0].decode("ascii", "replace")
    seen = _arrivals.get(nonce)
    if seen is None:
        _arrivals[nonce] = [now, 1]
        _distinct[nonce[:1]] = _distinct.get(nonce[:1], 0) + 1
    else:
        seen[1] += 1
    await send({"type": "http.response.start", "status": 200, "headers": _OK})
    await send({"type": "http.response.body", "body": b"ok"})


def main() -> None:
    import socket  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    # Not uvicorn's fd= option: it wraps the descriptor as AF_UNIX and skips TCP_NODELAY
    # (see benchmarks/servers.py).
    sock = socket.socket(fileno=int(sys.argv[1]))
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
