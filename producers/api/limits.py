"""Request header limits: how many headers a caller may forward, how big headers may get.

uvicorn's httptools parser (the one kafstash runs) has no header limit of its own, so the API
enforces one before routing: more than ``MAX_FORWARD_HEADERS`` ``Upstash-Forward-*`` headers or
more than ``MAX_HEADER_BYTES`` of header lines (``name: value\\r\\n``) answer 431 with QStash's
``{"error": ...}``. Batch items carry their headers in JSON, where CR, LF and NUL *can* appear;
:func:`header_pairs_problem` refuses those (400) before anything is stored or delivered.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from kafstash.producers.api.errors import error_response
from kafstash.schemas import defaults
from kafstash.schemas import headers as h

_FORWARD = h.FORWARD_PREFIX.encode()
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_LINE_OVERHEAD = 4  # ": " and CRLF around each header line


def headers_problem(
    headers: Iterable[tuple[bytes, bytes]],
    *,
    max_forward: int = defaults.MAX_FORWARD_HEADERS,
    max_bytes: int = defaults.MAX_HEADER_BYTES,
) -> str | None:
    """Why these request headers (ASGI form) exceed the limits, or None."""
    forwarded = 0
    size = 0
    for name, value in headers:
        size += len(name) + len(value) + _LINE_OVERHEAD
        if name.lower().startswith(_FORWARD):
            forwarded += 1
    if forwarded > max_forward:
        return f"too many Upstash-Forward-* headers: {forwarded}, at most {max_forward}"
    if size > max_bytes:
        return f"request headers too large: {size} bytes, at most {max_bytes}"
    return None


def header_pairs_problem(
    pairs: Iterable[tuple[str, str]],
    *,
    max_forward: int = defaults.MAX_FORWARD_HEADERS,
    max_bytes: int = defaults.MAX_HEADER_BYTES,
) -> str | None:
    """Why headers given as JSON (a batch item's) are unusable, or None.

    Names must be RFC 9110 tokens and values free of CR, LF and NUL (no header injection at the
    destination); counts and sizes follow the same limits as real request headers.
    """
    encoded: list[tuple[bytes, bytes]] = []
    for name, value in pairs:
        if not name or not set(name) <= _TOKEN_CHARS:
            return f"invalid header name {name!r}"
        if any(c in value for c in "\r\n\x00"):
            return f"invalid value of header {name}: contains CR, LF or NUL"
        encoded.append((name.encode(), value.encode()))
    return headers_problem(encoded, max_forward=max_forward, max_bytes=max_bytes)


class HeaderLimits:
    """ASGI middleware answering 431 before routing when request headers break the limits."""

    def __init__(
        self,
        app: ASGIApp,
        max_forward: int = defaults.MAX_FORWARD_HEADERS,
        max_bytes: int = defaults.MAX_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.max_forward = max_forward
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = headers_problem(
                scope["headers"], max_forward=self.max_forward, max_bytes=self.max_bytes
            )
            if problem is not None:
                await error_response(431, problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)
