"""The web console at ``/console``: static files that ship in the package, and their headers.

The console is a client of the public v2 API like any SDK: the page keeps the user's token in
``sessionStorage`` and sends it as ``Authorization: Bearer`` on every call, so it sees exactly
what that token may see and nothing is served here that depends on who asks. The files are
plain HTML, CSS and ES modules (``console/`` beside this module): no build step, no network.

Every console response carries a strict Content-Security-Policy: scripts and styles only from
this origin, no inline script, no framing. Data from the API reaches the DOM through
``textContent``; the policy is the second wall should that ever slip.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROOT = Path(__file__).with_name("console")
PREFIX = "/console"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    # The page is small and changes with every release; a stale module graph is worse.
    (b"cache-control", b"no-cache"),
)


class SecuredStatic:
    """An ASGI app that adds :data:`SECURITY_HEADERS` to every response of ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*kept, *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_secured)


def routes(root: Path = ROOT) -> list[BaseRoute]:
    """``/console/``: the page and its modules (the router redirects ``/console`` there)."""
    return [
        Mount(PREFIX, app=SecuredStatic(StaticFiles(directory=root, html=True)), name="console")
    ]
