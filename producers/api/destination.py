"""The destination of a publish: rebuilt from the raw request URI and checked before acceptance.

The SDKs send the destination URL unencoded in the path (``/v2/publish/https://h/p?x=1``), so the
destination is everything after the route prefix plus the raw query string. Routers that clean
``//`` would break ``https://``; we read ASGI's ``raw_path`` and repair ``https:/h`` anyway.

That repair is deliberate, QStash-compatible behaviour (the wire contract, §1 "Paths"): proxies,
path normalisers and Go's ``ServeMux`` collapse ``//``, so ``http:/h/x`` reaching the server
means ``http://h/x``, and it is delivered there. Only the scheme's slash is repaired; the rest of
the path travels as sent.

:func:`validate_url` is the one check every URL kafstash will call goes through: publish,
enqueue, batch items, schedules, URL-group endpoints and callback / failure-callback URLs.
"""

import re
import socket
from urllib.parse import unquote, urlsplit

from kafstash.producers.api.errors import ApiError
from kafstash.schemas.addresses import Allowlist, check_host, wire_host

_SCHEME_FIX = re.compile(r"^(https?):/(?!/)")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_MAX_URL = 2048
_NO_ALLOWLIST = Allowlist()


def rebuild(raw_path: bytes, prefix: str, query_string: bytes) -> str:
    path = raw_path.decode("latin-1").split("?", 1)[0]
    dest = path[len(prefix) :]
    if "://" not in dest and "%3A" in dest.upper():
        # Some clients percent-encode the whole URL; QStash accepts that form too.
        dest = unquote(dest)
    dest = _SCHEME_FIX.sub(r"\1://", dest)
    query = _without_token(query_string)
    if query:
        # A fully percent-encoded destination may carry its own query: append, do not add a 2nd "?".
        dest += ("&" if "?" in dest else "?") + query.decode("latin-1")
    return dest


def _without_token(query_string: bytes) -> bytes:
    """The request's query minus ``qstash_token``: the caller's credential, never the message's.

    Without this, a publish authenticated by ``?qstash_token=`` would store the token in the
    destination URL and send it to the destination with every attempt.
    """
    kept = [
        part
        for part in query_string.split(b"&")
        if unquote(part.split(b"=", 1)[0].decode("latin-1")) != _TOKEN_PARAM
    ]
    return b"&".join(kept)


_TOKEN_PARAM = "qstash_token"  # noqa: S105 - the parameter name, not a secret


def is_url(destination: str) -> bool:
    return destination.startswith(("http://", "https://"))


def validate_url(url: str, *, allow_private: bool, allowlist: Allowlist = _NO_ALLOWLIST) -> str:
    """Return ``url`` if kafstash may deliver to it, else raise ApiError(400) with the reason."""
    if len(url) > _MAX_URL:
        raise ApiError(f"invalid destination url: longer than {_MAX_URL} characters")
    if _CONTROL.search(url):
        raise ApiError("invalid destination url: contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ApiError(f"invalid destination url: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise ApiError(
            "invalid destination url: endpoint has invalid scheme, use http:// or https://"
        )
    if not parts.hostname:
        raise ApiError("invalid destination url: missing host")
    if parts.username or parts.password:
        raise ApiError("invalid destination url: credentials in the URL are not allowed")
    try:
        # What the sender will resolve and connect to; a URL whose host is not one would be
        # accepted only to fail every attempt and land in the DLQ.
        host = wire_host(parts.hostname)
    except ValueError as exc:
        raise ApiError(f"invalid destination url: {exc}") from None
    if not allow_private and not allowlist.allows_host(host):
        _refuse_private(host, port or (443 if parts.scheme == "https" else 80), allowlist)
    return url


def _refuse_private(host: str, port: int, allowlist: Allowlist) -> None:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise ApiError(f"invalid destination url: unable to resolve host {host}") from exc
    # The same rules the sender applies at every attempt (schemas/addresses.py).
    addresses = [str(info[4][0]) for info in infos]
    reason = check_host(host, addresses, allow_private=False, allowlist=allowlist)
    if reason is not None:
        raise ApiError(
            f"invalid destination url: endpoint resolves to a private or loopback address "
            f"({reason}; set KAFSTASH_ALLOW_PRIVATE_DESTINATIONS=true or "
            f"KAFSTASH_DESTINATION_ALLOWLIST to allow)"
        )
