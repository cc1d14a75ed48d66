"""The console's static files: served with their security headers, and written so that API data
can only ever become text (no inline script, no innerHTML, nothing fetched from elsewhere)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from kafstash.producers.api import console

FILES = sorted(p for p in console.ROOT.rglob("*") if p.is_file())


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=console.routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as c:
        yield c


async def test_the_page_and_its_modules_are_served_with_security_headers(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/console/", "/console/js/main.js", "/console/console.css"):
        r = await client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
    dlq = await client.get("/console/js/views/dlq.js")
    assert "javascript" in dlq.headers["content-type"]


async def test_console_without_slash_redirects_to_the_page(client: httpx.AsyncClient) -> None:
    r = await client.get("/console", follow_redirects=False)
    assert r.status_code in (307, 308)
    assert httpx.URL(r.headers["location"]).path == "/console/"


async def test_unknown_file_is_404_and_nothing_outside_the_folder_is_served(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/console/nope.js")).status_code == 404
    assert (await client.get("/console/%2e%2e/app.py")).status_code == 404
    assert (await client.get("/console/js/..%2f..%2fapp.py")).status_code == 404


def test_every_module_the_page_imports_exists() -> None:
    for js in console.ROOT.rglob("*.js"):
        for target in re.findall(r'from "(\.[^"]+)"', js.read_text()):
            assert (js.parent / target).resolve().is_file(), (js, target)


def test_no_inline_script_and_no_markup_from_strings() -> None:
    html = (console.ROOT / "index.html").read_text()
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, tag  # an inline script would need 'unsafe-inline'
    assert not re.search(r"\son[a-z]+=", html)  # nor inline event handlers
    for js in console.ROOT.rglob("*.js"):
        text = js.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, (js, sink)


def test_nothing_is_loaded_from_another_origin() -> None:
    # The console must work without network access: no CDN, no font service.
    for path in FILES:
        text = path.read_text()
        for url in re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"')]*", text):
            assert url == "//www.w3.org/2000/svg" or url.endswith("www.w3.org/2000/svg"), (
                path,
                url,
            )
